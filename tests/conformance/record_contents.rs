//! What a consumer gets of a produced record: key, payload, headers and timestamp intact, and a
//! tombstone (a key without a payload).

use effectively_once::Simulation;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use effectively_once::KafkaProducer;

use crate::support::*;

#[test]
fn records_a_producer_sends_reach_a_consumer_with_key_payload_headers_and_timestamp_intact() {
    use rdkafka::message::{Header, Headers, OwnedHeaders};
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1).instances(2);
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    if ctx.instance().0 == 0 {
                        let producer = ctx.create_producer(&producer_config(&[]))?;
                        let headers = OwnedHeaders::new()
                            .insert(Header {
                                key: "trace",
                                value: Some("abc"),
                            })
                            .insert(Header {
                                key: "empty",
                                value: None::<&str>,
                            });
                        producer
                            .send(
                                FutureRecord::to(TOPIC)
                                    .key("k1")
                                    .payload("p1")
                                    .headers(headers)
                                    .timestamp(1_700_000_000_000),
                                Timeout::Never,
                            )
                            .await
                            .map_err(|(e, _)| e)?;
                        // A tombstone: a key and no payload.
                        producer
                            .send(
                                FutureRecord::<str, str>::to(TOPIC).key("k1"),
                                Timeout::Never,
                            )
                            .await
                            .map_err(|(e, _)| e)?;
                        return Ok::<(), Box<dyn std::error::Error + Send + Sync>>(());
                    }
                    let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
                    use effectively_once::{ConsumerHandle, KafkaConsumer};
                    consumer.subscribe(&[TOPIC])?;
                    for _ in 0..2 {
                        let m = consumer.recv().await?;
                        let headers: Vec<String> = m
                            .headers()
                            .map(|h| {
                                h.iter()
                                    .map(|h| format!("{}={:?}", h.key, h.value))
                                    .collect()
                            })
                            .unwrap_or_default();
                        notes.push(format!(
                            "@{} key={:?} payload={:?} headers={headers:?} ts={:?}",
                            m.offset(),
                            m.key(),
                            m.payload(),
                            if m.offset() == 0 {
                                Some(m.timestamp())
                            } else {
                                None
                            }
                        ));
                        consumer.commit_message(&m, rdkafka::consumer::CommitMode::Sync)?;
                    }
                    Ok(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert_eq!(
        notes.all(),
        vec![
            format!(
                "@0 key={:?} payload={:?} headers={:?} ts={:?}",
                Some(&b"k1"[..]),
                Some(&b"p1"[..]),
                vec![
                    format!("trace={:?}", Some(&b"abc"[..])),
                    format!("empty={:?}", None::<&[u8]>)
                ],
                Some(rdkafka::message::Timestamp::CreateTime(1_700_000_000_000))
            ),
            format!(
                "@1 key={:?} payload={:?} headers={:?} ts={:?}",
                Some(&b"k1"[..]),
                None::<&[u8]>,
                Vec::<String>::new(),
                None::<rdkafka::message::Timestamp>
            ),
        ]
    );
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(2));
}

/// A generic consumer can log the message it got with `{:?}`, as one written against
/// rdkafka's `BorrowedMessage` does.
#[test]
fn a_generic_consumer_can_debug_print_its_message() {
    use effectively_once::{ConsumerHandle, KafkaConsumer};

    async fn describe_next<C: KafkaConsumer>(consumer: &C) -> String {
        let message = consumer.recv().await.expect("a record");
        format!("{message:?}")
    }
    let notes = Notes::default();
    let seen = notes.clone();
    builder(1, 1)
        .build()
        .unwrap()
        .run(move |ctx| {
            let notes = seen.clone();
            async move {
                let consumer = ctx.create_consumer(&manual_commit(GROUP)).unwrap();
                consumer.subscribe(&[TOPIC]).unwrap();
                notes.push(describe_next(&consumer).await);
            }
        })
        .unwrap();
    let described = notes.all();
    assert!(
        described[0].contains("topic: \"events\"") && described[0].contains("offset: 0"),
        "{described:?}"
    );
}
