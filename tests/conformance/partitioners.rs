//! librdkafka's partitioners, checked against librdkafka's own C functions: where keyed input
//! records and producer sends land under `consistent_random` (the default), `murmur2_random`,
//! `consistent` and `murmur2`, empty keys included, and that one key always maps to one
//! partition, in production order.

use std::time::Duration;

use effectively_once::{InputRecord, Simulation};
use rdkafka::ClientConfig;

use crate::support::*;

/// The partition librdkafka's `murmur2` partitioner (the keyed half of `murmur2_random`)
/// picks, computed by librdkafka itself.
fn librdkafka_murmur2(key: &[u8], partition_cnt: i32) -> i32 {
    // SAFETY: as for `librdkafka_consistent` (support.rs): the partitioner only reads `keylen`
    // bytes of `key` and ignores the topic and opaque pointers.
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
