//! Lost acknowledgements and the idempotent producer: without `enable.idempotence` librdkafka's
//! retry (after `request.timeout.ms`) appends a duplicate; with it the broker drops the retried
//! duplicate, but only within one producer session; idempotence requires `acks=all`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use effectively_once::history::{HistoryEvent, RecordPosition};
use effectively_once::{Anchor, Fault, FaultSchedule, Operation, Simulation};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use effectively_once::KafkaProducer;

use crate::support::*;

#[test]
fn without_idempotence_a_lost_ack_makes_librdkafka_retry_and_append_a_duplicate() {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1)
        .faults(FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::LoseAck));
    let run = produce(
        &b,
        producer_config(&[]),
        vec![Out::to(TOPIC, "a").key("k"), Out::to(TOPIC, "b").key("k")],
    );
    assert!(run.outcome.unfired_faults().is_empty());
    // The application saw success; the delivery report is the retry's: the second copy.
    assert_eq!((run.delivery(0).partition, run.delivery(0).offset), (0, 1));
    assert_eq!((run.delivery(1).partition, run.delivery(1).offset), (0, 2));
    assert_eq!(payloads(&run.outcome, TOPIC, 0), ["a", "a", "b"]);
    let records = run.outcome.cluster().records(TOPIC, 0);
    assert_eq!(records[0].key, records[1].key);
    assert_eq!(
        produced(&run.outcome),
        vec![
            (pos(TOPIC, 0, 0), false),
            (pos(TOPIC, 0, 1), true),
            (pos(TOPIC, 0, 2), false),
        ]
    );
    assert!(!run.outcome.history().events().any(|e| matches!(
        e,
        HistoryEvent::DuplicateDropped { .. } | HistoryEvent::ProduceFailed { .. }
    )));
}

#[test]
fn a_lost_ack_is_only_noticed_after_request_timeout_ms() {
    // librdkafka cannot tell a lost acknowledgement from a slow one: the request stays in the
    // broker's wait-response queue until `request.timeout.ms` (default 30000) expires, fails
    // with _TIMED_OUT and is retried after `retry.backoff.ms`. The send therefore takes at
    // least request.timeout.ms, and the duplicate is appended no earlier.
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1)
        .faults(FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::LoseAck));
    let took = Arc::new(Mutex::new(Duration::ZERO));
    let outcome = {
        let took = took.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let took = took.clone();
                async move {
                    let producer = ctx
                        .create_producer(&producer_config(&[("request.timeout.ms", "5000")]))
                        .unwrap();
                    let start = tokio::time::Instant::now();
                    producer
                        .send(
                            FutureRecord::<str, str>::to(TOPIC).payload("a"),
                            Timeout::Never,
                        )
                        .await
                        .unwrap();
                    *took.lock().unwrap() = start.elapsed();
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert!(
        *took.lock().unwrap() >= Duration::from_millis(5000),
        "send returned after {:?}",
        took.lock().unwrap()
    );
    let at: Vec<Duration> = outcome
        .history()
        .entries()
        .iter()
        .filter(|e| matches!(e.event, HistoryEvent::RecordProduced { .. }))
        .map(|e| e.at)
        .collect();
    assert_eq!(at.len(), 2);
    assert!(at[1] - at[0] >= Duration::from_millis(5000), "{at:?}");
}

#[test]
fn with_idempotence_the_broker_drops_the_retried_duplicate_and_the_application_sees_success() {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1).faults(
        FaultSchedule::new()
            .with(Anchor::on(Operation::Send), Fault::LoseAck)
            .with(Anchor::on(Operation::Send).occurrence(3), Fault::LoseAck),
    );
    let run = produce(
        &b,
        producer_config(&[("enable.idempotence", "true")]),
        vec![
            Out::to(TOPIC, "a"),
            Out::to(TOPIC, "b"),
            Out::to(TOPIC, "c"),
        ],
    );
    assert!(run.outcome.unfired_faults().is_empty());
    assert_eq!(payloads(&run.outcome, TOPIC, 0), ["a", "b", "c"]);
    // The retry's report: the original offset, or RD_KAFKA_OFFSET_INVALID, which librdkafka
    // documents for retried messages of an idempotent producer.
    for (i, original) in [(0, 0), (2, 2)] {
        let d = run.delivery(i);
        assert_eq!(d.partition, 0);
        assert!(
            d.offset == original || d.offset == OFFSET_INVALID,
            "send {i}: {d:?}"
        );
    }
    assert_eq!(run.delivery(1).offset, 1);
    let dropped: Vec<(RecordPosition, i32)> = run
        .outcome
        .history()
        .events()
        .filter_map(|e| match e {
            HistoryEvent::DuplicateDropped {
                original, sequence, ..
            } => Some((original.clone(), *sequence)),
            _ => None,
        })
        .collect();
    // Per-partition sequence numbers count batches from 0: a=0, b=1, c=2.
    assert_eq!(dropped, vec![(pos(TOPIC, 0, 0), 0), (pos(TOPIC, 0, 2), 2)]);
    assert_eq!(
        produced(&run.outcome),
        vec![
            (pos(TOPIC, 0, 0), false),
            (pos(TOPIC, 0, 1), false),
            (pos(TOPIC, 0, 2), false),
        ]
    );
    let producer_ids: Vec<i64> = run
        .outcome
        .history()
        .events()
        .filter_map(|e| match e {
            HistoryEvent::DuplicateDropped { producer_id, .. } => Some(*producer_id),
            _ => None,
        })
        .collect();
    assert_eq!(producer_ids[0], producer_ids[1], "one producer, one id");
    assert!(producer_ids[0] >= 0);
}

#[test]
fn idempotence_with_acks_other_than_all_is_a_client_creation_error_as_in_librdkafka() {
    for acks in ["1", "0"] {
        let pairs = [("enable.idempotence", "true"), ("acks", acks)];
        // librdkafka itself refuses the configuration when the client is created.
        let real = producer_config(&pairs)
            .create::<rdkafka::producer::FutureProducer>()
            .err()
            .expect("librdkafka refuses it");
        assert!(matches!(real, KafkaError::ClientCreation(_)), "{real}");
        let mut b = Simulation::builder();
        b.topic(TOPIC, 1);
        let run = produce(&b, producer_config(&pairs), vec![]);
        let err = run.creation.expect("the simulator refuses it");
        assert!(matches!(err, KafkaError::ClientCreation(_)), "{err}");
        assert_eq!(err.to_string(), real.to_string(), "acks={acks}");
    }
    // acks=all is fine.
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1);
    let run = produce(
        &b,
        producer_config(&[("enable.idempotence", "true"), ("acks", "all")]),
        vec![Out::to(TOPIC, "a")],
    );
    assert!(run.creation.is_none());
    assert_eq!(run.delivery(0).offset, 0);
}

#[test]
fn idempotence_does_not_deduplicate_across_producer_sessions() {
    // A restarted process creates a new producer, which gets a new producer id: the broker
    // cannot tell its resend from a new record (only transactions fence across sessions).
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1)
        .faults(FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::CrashAfter));
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| async move {
            let producer =
                ctx.create_producer(&producer_config(&[("enable.idempotence", "true")]))?;
            producer
                .send(
                    FutureRecord::<str, str>::to(TOPIC).key("k").payload("a"),
                    Timeout::Never,
                )
                .await
                .map_err(|(e, _)| e)?;
            Ok::<(), KafkaError>(())
        })
        .unwrap();
    show(&outcome);
    assert_eq!(payloads(&outcome, TOPIC, 0), ["a", "a"]);
    assert!(
        !outcome
            .history()
            .events()
            .any(|e| matches!(e, HistoryEvent::DuplicateDropped { .. }))
    );
}
