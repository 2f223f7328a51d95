//! Where produced records land and what the delivery report says: records get dense offsets
//! from 0 in each partition, a send's delivery report gives the record's partition and offset,
//! and with `acks=0` librdkafka reports `RD_KAFKA_OFFSET_INVALID` though the record is appended
//! (checked against a real producer on librdkafka's mock cluster).

use std::time::Duration;

use effectively_once::history::RecordPosition;
use effectively_once::{InputRecord, Outcome, Simulation};
use rdkafka::ClientConfig;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use crate::support::*;

fn offsets(outcome: &Outcome, topic: &str, partition: i32) -> Vec<i64> {
    outcome
        .cluster()
        .records(topic, partition)
        .iter()
        .map(|r| r.offset)
        .collect()
}

// ----- partitions and dense offsets -----

#[test]
fn input_records_get_dense_offsets_from_zero_in_each_partition() {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 3);
    // Interleaved across partitions: each partition's offsets still count 0, 1, 2, ...
    let order = [2, 0, 0, 1, 2, 2, 0, 1, 2, 0];
    for (n, p) in order.iter().enumerate() {
        b.produce(
            InputRecord::new(TOPIC)
                .partition(*p)
                .payload(format!("r{n}")),
        );
    }
    b.produce_at(
        secs(5),
        InputRecord::new(TOPIC).partition(1).payload("late"),
    );
    let outcome = b.build().unwrap().run(|_ctx| async {}).unwrap();
    show(&outcome);
    assert_eq!(offsets(&outcome, TOPIC, 0), vec![0, 1, 2, 3]);
    assert_eq!(offsets(&outcome, TOPIC, 1), vec![0, 1, 2]);
    assert_eq!(offsets(&outcome, TOPIC, 2), vec![0, 1, 2, 3]);
    assert_eq!(payloads(&outcome, TOPIC, 0), ["r1", "r2", "r6", "r9"]);
    assert_eq!(payloads(&outcome, TOPIC, 1), ["r3", "r7", "late"]);
    assert_eq!(payloads(&outcome, TOPIC, 2), ["r0", "r4", "r5", "r8"]);
    assert_eq!(outcome.cluster().end_offset(TOPIC, 0), Some(4));
    assert_eq!(outcome.cluster().end_offset(TOPIC, 1), Some(3));
    assert_eq!(outcome.cluster().end_offset(TOPIC, 2), Some(4));
    assert_eq!(outcome.cluster().end_offset(TOPIC, 3), None);
    assert!(outcome.cluster().records(TOPIC, 3).is_empty());
    let expected: Vec<(RecordPosition, bool)> = [
        (2, 0),
        (0, 0),
        (0, 1),
        (1, 0),
        (2, 1),
        (2, 2),
        (0, 2),
        (1, 1),
        (2, 3),
        (0, 3),
        (1, 2),
    ]
    .iter()
    .map(|(p, o)| (pos(TOPIC, *p, *o), false))
    .collect();
    assert_eq!(produced(&outcome), expected);
    assert!(
        outcome
            .cluster()
            .records(TOPIC, 0)
            .iter()
            .all(|r| !r.control && r.key.is_none())
    );
}

#[test]
fn producer_sends_get_the_next_dense_offsets_and_the_delivery_reports_where_the_record_landed() {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 4);
    // Two records already in each partition: the producer's continue at offset 2.
    for p in 0..4 {
        for n in 0..2 {
            b.produce(
                InputRecord::new(TOPIC)
                    .partition(p)
                    .payload(format!("in-{p}-{n}")),
            );
        }
    }
    let pattern = [3, 1, 1, 0, 3, 3, 1, 2, 0, 3];
    let mut sends: Vec<Out> = pattern
        .iter()
        .enumerate()
        .map(|(n, p)| Out::to(TOPIC, &format!("s{n}")).partition(*p))
        .collect();
    for n in 0..6 {
        sends.push(Out::to(TOPIC, &format!("k{n}")).key(format!("key-{n}")));
    }
    let run = produce(&b, producer_config(&[]), sends.clone());
    assert!(run.creation.is_none());
    assert_eq!(run.results.len(), sends.len());
    let mut next = [2i64; 4];
    for (i, send) in sends.iter().enumerate() {
        let d = run.delivery(i);
        let expected_partition = send
            .partition
            .unwrap_or_else(|| librdkafka_consistent(send.key.as_deref().unwrap(), 4));
        assert_eq!(d.partition, expected_partition, "send {i}");
        assert_eq!(
            d.offset, next[d.partition as usize],
            "send {i}: the next offset of partition {}",
            d.partition
        );
        next[d.partition as usize] += 1;
        let logged = &run.outcome.cluster().records(TOPIC, d.partition)[d.offset as usize];
        assert_eq!(logged.offset, d.offset);
        assert_eq!(logged.payload.as_deref(), Some(&send.payload[..]));
        assert_eq!(logged.key, send.key);
    }
    for p in 0..4 {
        let n = next[p as usize];
        assert_eq!(offsets(&run.outcome, TOPIC, p), (0..n).collect::<Vec<_>>());
        assert_eq!(run.outcome.cluster().end_offset(TOPIC, p), Some(n));
    }
}

// ----- acks -----

#[test]
fn with_acks_all_or_1_the_delivery_offset_is_the_records_offset() {
    for acks in [None, Some("all"), Some("-1"), Some("1")] {
        let mut b = Simulation::builder();
        b.topic(TOPIC, 1);
        b.produce(InputRecord::new(TOPIC).payload("existing"));
        let config = match acks {
            None => producer_config(&[]),
            Some(a) => producer_config(&[("acks", a)]),
        };
        let run = produce(
            &b,
            config,
            vec![Out::to(TOPIC, "a"), Out::to(TOPIC, "b").partition(0)],
        );
        assert_eq!(
            (run.delivery(0).partition, run.delivery(0).offset),
            (0, 1),
            "acks={acks:?}"
        );
        assert_eq!(
            (run.delivery(1).partition, run.delivery(1).offset),
            (0, 2),
            "acks={acks:?}"
        );
        assert_eq!(payloads(&run.outcome, TOPIC, 0), ["existing", "a", "b"]);
    }
}

#[test]
fn with_acks_0_librdkafka_reports_offset_invalid_but_the_record_is_appended() {
    // librdkafka gets no ProduceResponse with acks=0 and reports the offset its produce result
    // starts with: RD_KAFKA_OFFSET_INVALID (rdkafka_request.c, rd_kafka_handle_Produce). A real
    // FutureProducer against librdkafka's mock cluster reports `offset: -1001` (see
    // `reference_librdkafka_reports_offset_invalid_with_acks_0`).
    let mut b = Simulation::builder();
    b.topic(TOPIC, 2);
    let run = produce(
        &b,
        producer_config(&[("acks", "0")]),
        vec![
            Out::to(TOPIC, "a").partition(1),
            Out::to(TOPIC, "b").partition(1),
        ],
    );
    for i in 0..2 {
        assert_eq!(run.delivery(i).partition, 1);
        assert_eq!(run.delivery(i).offset, OFFSET_INVALID, "send {i}");
    }
    assert_eq!(payloads(&run.outcome, TOPIC, 1), ["a", "b"]);
}

#[test]
fn reference_librdkafka_reports_offset_invalid_with_acks_0() {
    // Ground truth for the acks=0 test: a real rdkafka FutureProducer against librdkafka's
    // built-in mock cluster.
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::FutureProducer;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mock = MockCluster::new(1).expect("mock cluster");
        mock.create_topic(TOPIC, 1, 1).expect("topic");
        // The acks=0 records are appended too: acks=all continues at offset 2.
        for (acks, expected) in [("0", [OFFSET_INVALID; 2]), ("all", [2, 3])] {
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", mock.bootstrap_servers())
                .set("acks", acks)
                .create()
                .expect("producer");
            let mut got = Vec::new();
            for payload in ["a", "b"] {
                let d = producer
                    .send(
                        FutureRecord::<str, str>::to(TOPIC).payload(payload),
                        Timeout::After(Duration::from_secs(10)),
                    )
                    .await
                    .expect("delivered");
                got.push(d.offset);
            }
            assert_eq!(got, expected, "acks={acks}");
        }
    });
}
