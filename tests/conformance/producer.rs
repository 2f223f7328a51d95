//! Producing: partitions and dense offsets, librdkafka's partitioners (checked against
//! librdkafka's own C functions), `acks`, the retry after a lost acknowledgement with and
//! without `enable.idempotence`, and failed or ambiguous sends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use effectively_once::{
    Anchor, Fault, FaultSchedule, HistoryEvent, InputRecord, Operation, Outcome, RecordPosition,
    Simulation, SimulationBuilder, TopicPartition,
};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use effectively_once::KafkaProducer;

use crate::support::*;

/// librdkafka's `RD_KAFKA_OFFSET_INVALID`.
const OFFSET_INVALID: i64 = rdkafka::bindings::RD_KAFKA_OFFSET_INVALID as i64;

/// The partition librdkafka's `consistent` partitioner (the keyed half of the default
/// `consistent_random`) picks, computed by librdkafka itself.
fn librdkafka_consistent(key: &[u8], partition_cnt: i32) -> i32 {
    // SAFETY: the partitioner only reads `keylen` bytes of `key` and ignores the topic and
    // opaque pointers.
    unsafe {
        rdkafka::bindings::rd_kafka_msg_partitioner_consistent(
            std::ptr::null(),
            key.as_ptr() as *const _,
            key.len(),
            partition_cnt,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// The partition librdkafka's `murmur2` partitioner (the keyed half of `murmur2_random`)
/// picks, computed by librdkafka itself.
fn librdkafka_murmur2(key: &[u8], partition_cnt: i32) -> i32 {
    // SAFETY: as above.
    unsafe {
        rdkafka::bindings::rd_kafka_msg_partitioner_murmur2(
            std::ptr::null(),
            key.as_ptr() as *const _,
            key.len(),
            partition_cnt,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// Keys of many shapes and lengths (every tail length of the hash loops, binary bytes, UTF-8).
fn keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for i in 0..40 {
        keys.push(format!("user-{i}").into_bytes());
    }
    for len in 1..=13 {
        keys.push((0..len).map(|b| b"abcdefghijklm"[b]).collect());
    }
    for b in [0u8, 1, 0x7f, 0x80, 0xfe, 0xff] {
        keys.push(vec![b]);
        keys.push(vec![b, b, 0, b, 0xff]);
    }
    keys.push("ключ-😀".as_bytes().to_vec());
    keys.push(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8".to_vec());
    keys.push(vec![0x5a; 300]);
    keys
}

/// Partition counts to check the partitioners with.
const PARTITION_COUNTS: [i32; 17] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 31, 64, 97];

fn topic_with(partitions: i32) -> String {
    format!("t{partitions}")
}

/// One record an instance's producer sends.
#[derive(Clone, Debug)]
struct Out {
    topic: String,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

impl Out {
    fn to(topic: &str, payload: &str) -> Self {
        Out {
            topic: topic.to_string(),
            partition: None,
            key: None,
            payload: payload.as_bytes().to_vec(),
        }
    }

    fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// What the producer's instance saw: the creation error, or each send's delivery result.
struct Produced {
    outcome: Outcome,
    creation: Option<KafkaError>,
    results: Vec<OwnedDeliveryResult>,
}

impl Produced {
    fn delivery(&self, i: usize) -> &Delivery {
        match &self.results[i] {
            Ok(d) => d,
            Err((e, _)) => panic!("send {i} failed: {e}"),
        }
    }

    fn error(&self, i: usize) -> &(KafkaError, OwnedMessage) {
        match &self.results[i] {
            Ok(d) => panic!("send {i} succeeded: {d:?}"),
            Err(e) => e,
        }
    }
}

/// Runs one instance that creates a producer from `config`, makes `sends` one after the other
/// and exits.
fn produce(builder: &SimulationBuilder, config: ClientConfig, sends: Vec<Out>) -> Produced {
    let results = Arc::new(Mutex::new(Vec::new()));
    let creation = Arc::new(Mutex::new(None));
    let outcome = {
        let (results, creation) = (results.clone(), creation.clone());
        builder
            .build()
            .expect("valid simulation")
            .run(move |ctx| {
                let (config, sends) = (config.clone(), sends.clone());
                let (results, creation) = (results.clone(), creation.clone());
                async move {
                    let producer = match ctx.create_producer(&config) {
                        Ok(p) => p,
                        Err(e) => {
                            *creation.lock().unwrap() = Some(e);
                            return;
                        }
                    };
                    for s in &sends {
                        let mut record =
                            FutureRecord::<[u8], [u8]>::to(&s.topic).payload(&s.payload[..]);
                        if let Some(k) = &s.key {
                            record = record.key(&k[..]);
                        }
                        if let Some(p) = s.partition {
                            record = record.partition(p);
                        }
                        let result = producer.send(record, Timeout::Never).await;
                        results.lock().unwrap().push(result);
                    }
                }
            })
            .expect("run completes")
    };
    show(&outcome);
    assert!(
        matches!(
            outcome.history().end(),
            Some(HistoryEvent::AllInstancesStopped { .. })
        ),
        "the producing instance exited and the run ended"
    );
    let results = std::mem::take(&mut *results.lock().unwrap());
    let creation = creation.lock().unwrap().take();
    Produced {
        outcome,
        creation,
        results,
    }
}

fn producer_config(pairs: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", "kafka:9092");
    for (k, v) in pairs {
        c.set(*k, *v);
    }
    c
}

fn payloads(outcome: &Outcome, topic: &str, partition: i32) -> Vec<String> {
    outcome
        .cluster()
        .records(topic, partition)
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

fn offsets(outcome: &Outcome, topic: &str, partition: i32) -> Vec<i64> {
    outcome
        .cluster()
        .records(topic, partition)
        .iter()
        .map(|r| r.offset)
        .collect()
}

/// The `RecordProduced` events of the history: (position, retry).
fn produced(outcome: &Outcome) -> Vec<(RecordPosition, bool)> {
    outcome
        .history()
        .events()
        .filter_map(|e| match e {
            HistoryEvent::RecordProduced {
                position, retry, ..
            } => Some((position.clone(), *retry)),
            _ => None,
        })
        .collect()
}

fn pos(topic: &str, partition: i32, offset: i64) -> RecordPosition {
    TopicPartition::new(topic, partition).at(offset)
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

// ----- partitioners, against librdkafka itself -----

#[test]
fn input_record_keys_land_where_librdkafkas_default_consistent_random_partitioner_puts_them() {
    let mut b = Simulation::builder();
    for n in PARTITION_COUNTS {
        b.topic(topic_with(n), n);
        for key in keys() {
            b.produce(InputRecord::new(topic_with(n)).key(key).payload("x"));
        }
    }
    let outcome = b.build().unwrap().run(|_ctx| async {}).unwrap();
    let mut checked = 0;
    for n in PARTITION_COUNTS {
        for p in 0..n {
            for r in outcome.cluster().records(&topic_with(n), p) {
                let key = r.key.as_deref().expect("keyed");
                assert_eq!(
                    p,
                    librdkafka_consistent(key, n),
                    "key {key:?} with {n} partitions"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(
        checked,
        keys().len() * PARTITION_COUNTS.len(),
        "no record lost"
    );
}

/// Sends every key to every topic and checks the partition each delivery and the log report
/// against `librdkafka_partition`.
fn check_producer_partitioner(config: ClientConfig, librdkafka_partition: fn(&[u8], i32) -> i32) {
    let mut b = Simulation::builder();
    let mut sends = Vec::new();
    for n in PARTITION_COUNTS {
        b.topic(topic_with(n), n);
        for key in keys() {
            sends.push(Out::to(&topic_with(n), "x").key(key));
        }
    }
    b.latency(Duration::ZERO, Duration::ZERO);
    let run = produce(&b, config, sends.clone());
    assert_eq!(run.results.len(), sends.len());
    for (i, send) in sends.iter().enumerate() {
        let key = send.key.as_deref().unwrap();
        let partitions: i32 = send.topic[1..].parse().unwrap();
        let d = run.delivery(i);
        assert_eq!(
            d.partition,
            librdkafka_partition(key, partitions),
            "key {key:?} with {partitions} partitions"
        );
        let logged = &run.outcome.cluster().records(&send.topic, d.partition)[d.offset as usize];
        assert_eq!(logged.key.as_deref(), Some(key));
    }
}

#[test]
fn producer_keys_land_where_librdkafkas_default_consistent_random_partitioner_puts_them() {
    check_producer_partitioner(producer_config(&[]), librdkafka_consistent);
    check_producer_partitioner(
        producer_config(&[("partitioner", "consistent_random")]),
        librdkafka_consistent,
    );
}

#[test]
fn producer_keys_land_where_librdkafkas_murmur2_random_partitioner_puts_them() {
    check_producer_partitioner(
        producer_config(&[("partitioner", "murmur2_random")]),
        librdkafka_murmur2,
    );
}

#[test]
fn producer_keys_land_where_librdkafkas_consistent_and_murmur2_partitioners_put_them() {
    check_producer_partitioner(
        producer_config(&[("partitioner", "consistent")]),
        librdkafka_consistent,
    );
    check_producer_partitioner(
        producer_config(&[("partitioner", "murmur2")]),
        librdkafka_murmur2,
    );
}

#[test]
fn empty_keys_are_hashed_by_consistent_and_murmur2_random_like_librdkafka() {
    // `consistent` hashes every key, the empty one included; `murmur2_random` randomises only
    // NULL keys, so an empty (non-NULL) key is hashed too.
    for (partitioner, librdkafka_partition) in [
        ("consistent", librdkafka_consistent as fn(&[u8], i32) -> i32),
        ("murmur2_random", librdkafka_murmur2),
    ] {
        let mut b = Simulation::builder();
        let mut sends = Vec::new();
        for n in PARTITION_COUNTS {
            b.topic(topic_with(n), n);
            for _ in 0..4 {
                sends.push(Out::to(&topic_with(n), "x").key(Vec::new()));
            }
        }
        let run = produce(
            &b,
            producer_config(&[("partitioner", partitioner)]),
            sends.clone(),
        );
        for (i, send) in sends.iter().enumerate() {
            let partitions: i32 = send.topic[1..].parse().unwrap();
            assert_eq!(
                run.delivery(i).partition,
                librdkafka_partition(&[], partitions),
                "{partitioner}: empty key with {partitions} partitions"
            );
        }
    }
}

#[test]
fn the_same_key_always_maps_to_the_same_partition() {
    const KEY: &str = "order-42";
    let mut b = Simulation::builder();
    b.topic(TOPIC, 7);
    let expected = librdkafka_consistent(KEY.as_bytes(), 7);
    let mut sends = Vec::new();
    for n in 0..10 {
        b.produce(InputRecord::new(TOPIC).key(KEY).payload(format!("in-{n}")));
        b.produce(
            InputRecord::new(TOPIC)
                .key(format!("other-{n}"))
                .payload("other"),
        );
        sends.push(Out::to(TOPIC, &format!("out-{n}")).key(KEY));
        sends.push(Out::to(TOPIC, "other").key(format!("noise-{n}")));
    }
    for seed in [0, 1, 99] {
        b.seed(seed);
        let run = produce(&b, producer_config(&[]), sends.clone());
        for (i, send) in sends.iter().enumerate() {
            if send.key.as_deref() == Some(KEY.as_bytes()) {
                assert_eq!(run.delivery(i).partition, expected, "seed {seed}, send {i}");
            }
        }
        for p in 0..7 {
            let with_key = run
                .outcome
                .cluster()
                .records(TOPIC, p)
                .iter()
                .filter(|r| r.key.as_deref() == Some(KEY.as_bytes()))
                .count();
            assert_eq!(with_key, if p == expected { 20 } else { 0 }, "seed {seed}");
        }
        let same: Vec<String> = payloads(&run.outcome, TOPIC, expected)
            .into_iter()
            .filter(|p| p.starts_with("in-") || p.starts_with("out-"))
            .collect();
        let mut order: Vec<String> = (0..10).map(|n| format!("in-{n}")).collect();
        order.extend((0..10).map(|n| format!("out-{n}")));
        assert_eq!(same, order, "records of one key stay in production order");
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

// ----- lost acknowledgements and the idempotent producer -----

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

// ----- failed and ambiguous sends -----

#[test]
fn a_failed_send_returns_message_timed_out_and_appends_nothing() {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1)
        .faults(FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::Fail));
    let run = produce(
        &b,
        producer_config(&[]),
        vec![Out::to(TOPIC, "a").key("ka"), Out::to(TOPIC, "b").key("kb")],
    );
    assert!(run.outcome.unfired_faults().is_empty());
    let (error, message) = run.error(0);
    assert_eq!(
        *error,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    );
    // rdkafka hands the undelivered message back.
    assert_eq!(message.payload(), Some(&b"a"[..]));
    assert_eq!(message.key(), Some(&b"ka"[..]));
    assert_eq!(message.topic(), TOPIC);
    // Nothing was appended: the next record takes offset 0.
    assert_eq!(run.delivery(1).offset, 0);
    assert_eq!(payloads(&run.outcome, TOPIC, 0), ["b"]);
    assert!(run.outcome.history().events().any(|e| matches!(
        e,
        HistoryEvent::ProduceFailed { appended: false, partition, .. }
            if *partition == TopicPartition::new(TOPIC, 0)
    )));
}

#[test]
fn an_ambiguous_send_returns_message_timed_out_but_the_record_is_appended() {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1)
        .faults(FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::Ambiguous));
    let run = produce(
        &b,
        producer_config(&[]),
        vec![
            Out::to(TOPIC, "a"),
            // The application retries what it believes failed: a duplicate.
            Out::to(TOPIC, "a"),
        ],
    );
    assert!(run.outcome.unfired_faults().is_empty());
    let (error, message) = run.error(0);
    assert_eq!(
        *error,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    );
    assert_eq!(message.payload(), Some(&b"a"[..]));
    assert_eq!(run.delivery(1).offset, 1);
    assert_eq!(payloads(&run.outcome, TOPIC, 0), ["a", "a"]);
    assert!(
        run.outcome
            .history()
            .events()
            .any(|e| matches!(e, HistoryEvent::ProduceFailed { appended: true, .. }))
    );
}

#[test]
fn sending_to_a_partition_the_topic_does_not_have_fails_with_unknown_partition() {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 2);
    let run = produce(
        &b,
        producer_config(&[]),
        vec![Out::to(TOPIC, "a").partition(2), Out::to(TOPIC, "b")],
    );
    assert_eq!(
        run.error(0).0,
        KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition)
    );
    assert!(run.delivery(1).offset == 0);
    assert_eq!(
        run.outcome.cluster().records(TOPIC, 0).len()
            + run.outcome.cluster().records(TOPIC, 1).len(),
        1
    );
}

#[test]
fn sending_to_a_topic_that_does_not_exist_fails_with_unknown_topic_or_partition() {
    // The simulated cluster does not auto-create topics: librdkafka fails the message with the
    // metadata error, UNKNOWN_TOPIC_OR_PART (rdkafka_topic.c, rd_kafka_topic_assign_uas).
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1);
    let run = produce(
        &b,
        producer_config(&[]),
        vec![Out::to("no-such-topic", "a"), Out::to(TOPIC, "b")],
    );
    assert_eq!(
        run.error(0).0,
        KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    assert_eq!(run.delivery(1).offset, 0);
}

// ----- crashes around a send -----

/// Incarnation 1 sends `a`, incarnation 2 sends `b`; both with `config`.
fn send_a_then_b_after_restart(config: ClientConfig, faults: FaultSchedule) -> Outcome {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1).faults(faults);
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let config = config.clone();
            async move {
                let producer = ctx.create_producer(&config)?;
                let payload = if ctx.incarnation().number == 1 {
                    "a"
                } else {
                    "b"
                };
                producer
                    .send(
                        FutureRecord::<str, str>::to(TOPIC)
                            .key("k")
                            .payload(payload),
                        Timeout::Never,
                    )
                    .await
                    .map_err(|(e, _)| e)?;
                Ok::<(), KafkaError>(())
            }
        })
        .unwrap();
    show(&outcome);
    assert!(outcome.unfired_faults().is_empty());
    outcome
}

#[test]
fn a_crash_before_a_send_appends_nothing_and_a_crash_after_it_keeps_the_record() {
    let before = send_a_then_b_after_restart(
        producer_config(&[]),
        FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::CrashBefore),
    );
    assert_eq!(payloads(&before, TOPIC, 0), ["b"]);
    let after = send_a_then_b_after_restart(
        producer_config(&[]),
        FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::CrashAfter),
    );
    assert_eq!(payloads(&after, TOPIC, 0), ["a", "b"]);
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

// ----- what consumers see of produced records -----

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
