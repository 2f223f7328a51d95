//! BaseProducer and ThreadedProducer: delivery callbacks, poll, flush, a full queue, lost
//! acknowledgements and failed deliveries, shared by the conformance tests (the simulator)
//! and the broker tests (librdkafka on its mock cluster, where each expectation was
//! measured). Each case notes what the application saw, in order.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::clients::{DeliveryHandler, DeliveryReport, KafkaBaseProducer};
use effectively_once::{Anchor, Fault, FaultSchedule, InstanceContext, Operation, Simulation};
use rdkafka::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use crate::notes::Notes;

/// Notes each delivery report: `#opaque out/partition@offset payload` or the error.
#[derive(Clone)]
pub struct Reports(pub Notes);

impl DeliveryHandler for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, report: &DeliveryReport, opaque: usize) {
        let (m, error) = match report {
            Ok(m) => (m, String::new()),
            Err((e, m)) => (m, format!(" {e}")),
        };
        let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        self.0.push(format!(
            "#{opaque} {}/{}@{} {payload}{error}",
            m.topic(),
            m.partition(),
            m.offset()
        ));
    }
}

/// A topic `out` of two partitions, nothing in it; `faults` on the producer's calls.
pub fn simulation(faults: FaultSchedule) -> Simulation {
    let mut b = Simulation::builder();
    b.topic("out", 2)
        .faults(faults)
        .time_limit(Duration::from_secs(60));
    b.build().unwrap()
}

/// Runs `case` on the simulator (`None`) or on `provider`: the notes.
pub fn run<F, Fut>(sim: &Simulation, provider: Option<&BrokerProvider>, case: F) -> Vec<String>
where
    F: Fn(InstanceContext, Notes) -> Fut + Clone + 'static,
    Fut: Future<Output = Result<(), BoxError>> + 'static,
{
    let notes = Notes::default();
    let seen = notes.clone();
    let f = move |ctx| case(ctx, seen.clone());
    let outcome = match provider {
        None => sim.run(f),
        Some(p) => sim.run_on(p, f),
    }
    .unwrap();
    let notes = notes.all();
    println!(
        "--- {}:\n{notes:#?}\n{}",
        provider.map_or("simulator".into(), |p| p.to_string()),
        outcome.history()
    );
    notes
}

fn config(extra: &[(&str, &str)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("linger.ms", "0");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config
}

fn record(payload: &str, opaque: usize, partition: i32) -> BaseRecord<'_, (), str, usize> {
    BaseRecord::with_opaque_to("out", opaque)
        .payload(payload)
        .partition(partition)
}

/// Sends and notes a refusal.
fn send<P: KafkaBaseProducer<DeliveryOpaque = usize>>(
    producer: &P,
    notes: &Notes,
    payload: &str,
    opaque: usize,
    partition: i32,
) {
    if let Err((e, back)) = producer.send(record(payload, opaque, partition)) {
        notes.push(format!("send #{} refused: {e}", back.delivery_opaque));
    }
}

/// Reports come only from `poll`: none while the application waits without polling, then
/// each with its partition and offset, in send order per partition.
pub async fn served_by_poll(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let reports = Notes::default();
    let producer = ctx.create_base_producer(&config(&[]), Reports(reports.clone()))?;
    for (i, p) in [0, 0, 1, 0].into_iter().enumerate() {
        send(&producer, &notes, &format!("r{i}"), i, p);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    notes.push(format!("after 1s without poll: {} reports", reports.len()));
    // librdkafka's poll(0) serves at most one event: poll for a while.
    producer.poll(Duration::from_millis(100));
    // Partitions are delivered independently: their order is per partition.
    let mut served = reports.all();
    served.sort_by_key(|r| r.split(' ').nth(1).map(|tp| tp[..5].to_string()));
    for r in served {
        notes.push(r);
    }
    producer.flush(Duration::from_secs(10))?;
    notes.push(format!("in flight: {}", producer.in_flight_count()));
    Ok(())
}

pub const SERVED_BY_POLL: &[&str] = &[
    "after 1s without poll: 0 reports",
    "#0 out/0@0 r0",
    "#1 out/0@1 r1",
    "#3 out/0@2 r3",
    "#2 out/1@0 r2",
    "in flight: 0",
];

/// `queue.buffering.max.messages` counts records until their reports are served: a full
/// queue refuses (handing the record back) even once they were delivered, until `poll`.
pub async fn queue_full(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let cfg = config(&[("queue.buffering.max.messages", "2")]);
    let producer = ctx.create_base_producer(&cfg, Reports(notes.clone()))?;
    for i in 0..3 {
        send(&producer, &notes, &format!("r{i}"), i, 0);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    send(&producer, &notes, "r3", 3, 0);
    producer.poll(Duration::from_millis(100));
    send(&producer, &notes, "r4", 4, 0);
    producer.flush(Duration::from_secs(10))?;
    notes.push("flushed");
    Ok(())
}

pub const QUEUE_FULL: &[&str] = &[
    "send #2 refused: Message production error: QueueFull (Local: Queue full)",
    "send #3 refused: Message production error: QueueFull (Local: Queue full)",
    "#0 out/0@0 r0",
    "#1 out/0@1 r1",
    "#4 out/0@2 r4",
    "flushed",
];

/// `flush` returns once every report was served; once the producer knows the topic, an
/// unknown partition is refused at `send`.
pub async fn flush_serves_all(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let producer = ctx.create_base_producer(&config(&[]), Reports(notes.clone()))?;
    for i in 0..3 {
        send(&producer, &notes, &format!("r{i}"), i, 1);
    }
    producer.flush(Duration::from_secs(10))?;
    notes.push(format!(
        "flushed, in flight: {}",
        producer.in_flight_count()
    ));
    send(&producer, &notes, "r3", 3, 7);
    Ok(())
}

pub const FLUSH_SERVES_ALL: &[&str] = &[
    "#0 out/1@0 r0",
    "#1 out/1@1 r1",
    "#2 out/1@2 r2",
    "flushed, in flight: 0",
    "send #3 refused: Message production error: UnknownPartition (Local: Unknown partition)",
];

/// A ThreadedProducer's reports come from its background thread, without poll.
pub async fn threaded(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let producer = ctx.create_threaded_producer(&config(&[]), Reports(notes.clone()))?;
    send(&producer, &notes, "r0", 0, 0);
    send(&producer, &notes, "r1", 1, 0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    notes.push("after 1s");
    producer.flush(Duration::from_secs(10))?;
    Ok(())
}

pub const THREADED: &[&str] = &["#0 out/0@0 r0", "#1 out/0@1 r1", "after 1s"];

/// Dropped without a flush right after `send`: the record is purged, its report served by
/// the drop.
pub async fn dropped(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let producer = ctx.create_base_producer(&config(&[]), Reports(notes.clone()))?;
    send(&producer, &notes, "r0", 0, 0);
    drop(producer);
    notes.push("dropped");
    Ok(())
}

pub const DROPPED: &[&str] = &[
    "#0 out/0@-1001 r0 Message production error: PurgeQueue (Local: Purged in queue)",
    "dropped",
];

/// Two records with `config`, then one more: their reports (the first send is the faulty one).
fn sends(extra: &'static [(&'static str, &'static str)]) -> impl AsyncCase {
    move |ctx: InstanceContext, notes: Notes| async move {
        let producer = ctx.create_base_producer(&config(extra), Reports(notes.clone()))?;
        send(&producer, &notes, "r0", 0, 0);
        producer.flush(Duration::from_secs(10))?;
        send(&producer, &notes, "r1", 1, 0);
        producer.flush(Duration::from_secs(10))?;
        Ok(())
    }
}

/// A case the runner takes.
pub trait AsyncCase: Fn(InstanceContext, Notes) -> Self::Fut + Clone + 'static {
    type Fut: Future<Output = Result<(), BoxError>> + 'static;
}

impl<F, Fut> AsyncCase for F
where
    F: Fn(InstanceContext, Notes) -> Fut + Clone + 'static,
    Fut: Future<Output = Result<(), BoxError>> + 'static,
{
    type Fut = Fut;
}

pub fn lost_ack_faults() -> FaultSchedule {
    FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::LoseAck)
}

pub fn failed_faults() -> FaultSchedule {
    FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::Fail)
}

/// A lost acknowledgement without idempotence: the retry appended a second copy, and the
/// report carries the retry's offset.
pub fn lost_ack() -> impl AsyncCase {
    sends(&[])
}

pub const LOST_ACK: &[&str] = &["#0 out/0@1 r0", "#1 out/0@2 r1"];

/// With idempotence the broker drops the retry.
pub fn lost_ack_idempotent() -> impl AsyncCase {
    sends(&[("enable.idempotence", "true")])
}

pub const LOST_ACK_IDEMPOTENT: &[&str] = &["#0 out/0@0 r0", "#1 out/0@1 r1"];

/// A failed delivery (the message timed out) reaches the callback with the error and the
/// record.
pub fn failed() -> impl AsyncCase {
    sends(&[])
}

pub const FAILED: &[&str] = &[
    "#0 out/0@-1001 r0 Message production error: MessageTimedOut (Local: Message timed out)",
    "#1 out/0@0 r1",
];
