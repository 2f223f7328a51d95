//! Helpers shared by the conformance tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use effectively_once::history::{
    HistoryEntry, HistoryEvent, Incarnation, InstanceId, RecordPosition, TopicPartition,
};
use effectively_once::{
    EffectSink, InputRecord, KafkaConsumer, KafkaProducer, Outcome, Simulation, SimulationBuilder,
};
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureRecord;
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The topic most tests consume.
pub const TOPIC: &str = "events";
/// The group most tests consume in.
pub const GROUP: &str = "conformance";

/// A simulation with `TOPIC` of `partitions` partitions holding `per_partition` records in
/// each partition (payload `p{partition}-{n}`, no key).
pub fn builder(partitions: i32, per_partition: usize) -> SimulationBuilder {
    let mut b = Simulation::builder();
    b.topic(TOPIC, partitions);
    for p in 0..partitions {
        for n in 0..per_partition {
            b.produce(
                InputRecord::new(TOPIC)
                    .partition(p)
                    .payload(format!("p{p}-{n}")),
            );
        }
    }
    b
}

/// A manual-commit consumer config: `enable.auto.commit=false`, `auto.offset.reset=earliest`,
/// `session.timeout.ms=6000` (the broker's minimum).
pub fn manual_commit(group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000");
    c
}

pub use crate::notes::Notes;

/// Prints the timeline (visible with `--nocapture` or when the test fails).
pub fn show(outcome: &Outcome) {
    println!("{}", outcome.history());
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ----- running consumers -----

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A wall-time bound for runs of virtual hours or minutes: generous, they take milliseconds;
/// only real sleeping would come near this.
pub const WALL_BOUND: Duration = Duration::from_secs(5);

pub fn payload(m: &impl Message) -> String {
    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
}

pub fn tpl(offsets: &[(&str, i32, i64)]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (t, p, o) in offsets {
        list.add_partition_offset(t, *p, Offset::Offset(*o))
            .expect("valid offset");
    }
    list
}

pub fn inc(instance: u32, number: u32) -> Option<Incarnation> {
    Some(Incarnation {
        instance: InstanceId(instance),
        number,
    })
}

pub fn entries_where(outcome: &Outcome, f: impl Fn(&HistoryEvent) -> bool) -> Vec<&HistoryEntry> {
    outcome
        .history()
        .entries()
        .iter()
        .filter(|e| f(&e.event))
        .collect()
}

/// Process, then commit: the plain at-least-once loop.
pub async fn commit_after_each<C: KafkaConsumer>(
    consumer: &C,
    sink: &EffectSink,
) -> Result<(), BoxError> {
    consumer.subscribe(&[TOPIC])?;
    loop {
        let m = consumer.recv().await?;
        sink.perform(&payload(&m)).await?;
        consumer.commit_message(&m, CommitMode::Sync)?;
    }
}

// ----- producing -----

/// librdkafka's `RD_KAFKA_OFFSET_INVALID`.
pub const OFFSET_INVALID: i64 = rdkafka::bindings::RD_KAFKA_OFFSET_INVALID as i64;

/// The partition librdkafka's `consistent` partitioner (the keyed half of the default
/// `consistent_random`) picks, computed by librdkafka itself.
pub fn librdkafka_consistent(key: &[u8], partition_cnt: i32) -> i32 {
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

/// One record an instance's producer sends.
#[derive(Clone, Debug)]
pub struct Out {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl Out {
    pub fn to(topic: &str, payload: &str) -> Self {
        Out {
            topic: topic.to_string(),
            partition: None,
            key: None,
            payload: payload.as_bytes().to_vec(),
        }
    }

    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// What the producer's instance saw: the creation error, or each send's delivery result.
pub struct Produced {
    pub outcome: Outcome,
    pub creation: Option<KafkaError>,
    pub results: Vec<OwnedDeliveryResult>,
}

impl Produced {
    pub fn delivery(&self, i: usize) -> &Delivery {
        match &self.results[i] {
            Ok(d) => d,
            Err((e, _)) => panic!("send {i} failed: {e}"),
        }
    }

    pub fn error(&self, i: usize) -> &(KafkaError, OwnedMessage) {
        match &self.results[i] {
            Ok(d) => panic!("send {i} succeeded: {d:?}"),
            Err(e) => e,
        }
    }
}

/// Runs one instance that creates a producer from `config`, makes `sends` one after the other
/// and exits.
pub fn produce(builder: &SimulationBuilder, config: ClientConfig, sends: Vec<Out>) -> Produced {
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

pub fn producer_config(pairs: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", "kafka:9092");
    for (k, v) in pairs {
        c.set(*k, *v);
    }
    c
}

pub fn payloads(outcome: &Outcome, topic: &str, partition: i32) -> Vec<String> {
    outcome
        .cluster()
        .records(topic, partition)
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// The `RecordProduced` events of the history: (position, retry).
pub fn produced(outcome: &Outcome) -> Vec<(RecordPosition, bool)> {
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

pub fn pos(topic: &str, partition: i32, offset: i64) -> RecordPosition {
    TopicPartition::new(topic, partition).at(offset)
}
