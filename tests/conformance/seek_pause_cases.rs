//! seek, pause, resume and committed_offsets: consumers and what they see, shared by the
//! conformance tests (the simulator) and the broker tests (librdkafka on its mock cluster,
//! where each expectation was measured). Each case notes what the application saw, in order.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::{
    ConsumerHandle, InputRecord, InstanceContext, KafkaConsumer, RebalanceHandler, Simulation,
};
use rdkafka::consumer::{CommitMode, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use crate::notes::Notes;

/// `[t/0@3,u/1@-]`: each partition with its offset (`-` for `Offset::Invalid`).
pub fn list(l: &TopicPartitionList) -> String {
    let entries: Vec<String> = l
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o.to_string(),
                Offset::Invalid => "-".into(),
                other => format!("{other:?}"),
            };
            match e.error() {
                Ok(()) => format!("{}/{}@{offset}", e.topic(), e.partition()),
                Err(err) => format!("{}/{}@{offset} ({err})", e.topic(), e.partition()),
            }
        })
        .collect();
    format!("[{}]", entries.join(","))
}

fn outcome<T>(result: KafkaResult<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

fn timeout() -> rdkafka::util::Timeout {
    Duration::from_secs(10).into()
}

fn tp(topic: &str, partition: i32) -> TopicPartitionList {
    let mut l = TopicPartitionList::new();
    l.add_partition(topic, partition);
    l
}

/// Manual commits, from the earliest offset.
pub fn consumer_config(group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    config
}

/// Topic `t` of `partitions` partitions with `records` records in each (payload
/// `p{partition}-{n}`), and an empty topic `u`.
pub fn simulation(partitions: i32, records: usize) -> Simulation {
    let mut b = Simulation::builder();
    b.topic("t", partitions).topic("u", 1);
    for p in 0..partitions {
        for n in 0..records {
            b.produce(
                InputRecord::new("t")
                    .partition(p)
                    .payload(format!("p{p}-{n}")),
            );
        }
    }
    b.time_limit(Duration::from_secs(60)).build().unwrap()
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

/// Waits for the next record, at most `secs` seconds; notes what came (or `nothing`).
async fn next<C: KafkaConsumer>(consumer: &C, secs: u64, notes: &Notes) {
    match tokio::time::timeout(Duration::from_secs(secs), consumer.recv()).await {
        Ok(Ok(m)) => notes.push(format!(
            "got {}/{}@{}",
            m.topic(),
            m.partition(),
            m.offset()
        )),
        Ok(Err(e)) => notes.push(format!("recv error {e}")),
        Err(_) => notes.push("nothing"),
    }
}

/// Receives `n` records.
async fn take<C: KafkaConsumer>(consumer: &C, n: usize, notes: &Notes) {
    for _ in 0..n {
        next(consumer, 10, notes).await;
    }
}

fn seek_note(
    consumer: &dyn ConsumerHandle,
    topic: &str,
    partition: i32,
    offset: Offset,
    notes: &Notes,
) {
    notes.push(format!(
        "seek {topic}/{partition} to {offset:?}: {}",
        outcome(consumer.seek(topic, partition, offset, timeout()))
    ));
}

fn position_note(consumer: &dyn ConsumerHandle, notes: &Notes) {
    match consumer.position() {
        Ok(p) => notes.push(format!("position {}", list(&p))),
        Err(e) => notes.push(format!("position: {e}")),
    }
}

// ----- the cases -----

/// A seek back within the consumed range delivers the records after it again, in order
/// (the ones librdkafka had prefetched are not handed out); the position right after the
/// seek is the seek's offset.
pub async fn rewind(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&consumer_config("g"))?;
    consumer.subscribe(&["t"])?;
    take(&consumer, 3, &notes).await;
    // Give librdkafka time to prefetch the rest of the partition.
    tokio::time::sleep(Duration::from_millis(500)).await;
    seek_note(&consumer, "t", 0, Offset::Offset(1), &notes);
    position_note(&consumer, &notes);
    take(&consumer, 5, &notes).await;
    next(&consumer, 2, &notes).await;
    Ok(())
}

/// A seek ahead within the log skips the records in between.
pub async fn skip(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&consumer_config("g"))?;
    consumer.subscribe(&["t"])?;
    take(&consumer, 1, &notes).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    seek_note(&consumer, "t", 0, Offset::Offset(4), &notes);
    position_note(&consumer, &notes);
    take(&consumer, 2, &notes).await;
    next(&consumer, 2, &notes).await;
    Ok(())
}

/// Logical offsets: `Beginning`, `OffsetTail(n)`, `End`.
pub async fn logical(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&consumer_config("g"))?;
    consumer.subscribe(&["t"])?;
    take(&consumer, 3, &notes).await;
    seek_note(&consumer, "t", 0, Offset::Beginning, &notes);
    position_note(&consumer, &notes);
    take(&consumer, 1, &notes).await;
    seek_note(&consumer, "t", 0, Offset::OffsetTail(2), &notes);
    position_note(&consumer, &notes);
    take(&consumer, 2, &notes).await;
    seek_note(&consumer, "t", 0, Offset::End, &notes);
    position_note(&consumer, &notes);
    next(&consumer, 2, &notes).await;
    position_note(&consumer, &notes);
    Ok(())
}

/// A seek beyond the high watermark, with `auto.offset.reset` `reset`: the fetch there is
/// out of range and the reset policy applies. (A first consumer commits offset 2, so that the
/// one under test starts there whatever its reset policy.)
pub fn beyond_end(
    reset: &'static str,
) -> impl Fn(InstanceContext, Notes) -> std::pin::Pin<Box<dyn Future<Output = Result<(), BoxError>>>>
+ Clone {
    move |ctx, notes| {
        Box::pin(async move {
            let first = ctx.create_consumer(&consumer_config("g"))?;
            first.subscribe(&["t"])?;
            take(&first, 2, &notes).await;
            first.commit_consumer_state(CommitMode::Sync)?;
            drop(first);
            let mut config = consumer_config("g");
            config.set("auto.offset.reset", reset);
            let consumer = ctx.create_consumer(&config)?;
            consumer.subscribe(&["t"])?;
            take(&consumer, 1, &notes).await;
            seek_note(&consumer, "t", 0, Offset::Offset(10), &notes);
            position_note(&consumer, &notes);
            for _ in 0..3 {
                next(&consumer, 3, &notes).await;
            }
            position_note(&consumer, &notes);
            Ok(())
        })
    }
}

/// Seeks on partitions the consumer does not have: before any assignment, one of a topic it
/// does not consume, one that does not exist; `seek_partitions` with a mix.
pub async fn not_assigned(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&consumer_config("g"))?;
    seek_note(&consumer, "t", 0, Offset::Offset(1), &notes);
    consumer.subscribe(&["t"])?;
    take(&consumer, 1, &notes).await;
    seek_note(&consumer, "u", 0, Offset::Offset(0), &notes);
    seek_note(&consumer, "t", 7, Offset::Offset(0), &notes);
    seek_note(&consumer, "nope", 0, Offset::Offset(0), &notes);
    let mut l = TopicPartitionList::new();
    l.add_partition_offset("t", 0, Offset::Offset(3))?;
    l.add_partition_offset("u", 0, Offset::Offset(0))?;
    match consumer.seek_partitions(l, timeout()) {
        Ok(l) => notes.push(format!("seek_partitions: {}", list(&l))),
        Err(e) => notes.push(format!("seek_partitions: {e}")),
    }
    take(&consumer, 1, &notes).await;
    Ok(())
}

/// With `enable.auto.offset.store`, a seek back does not move the stored offset: a state
/// commit right after it commits what was stored before (the consumed position), and the
/// stored offset follows the records handed out after the seek.
pub async fn stored_offset(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&consumer_config("g"))?;
    consumer.subscribe(&["t"])?;
    take(&consumer, 4, &notes).await;
    seek_note(&consumer, "t", 0, Offset::Offset(1), &notes);
    notes.push(format!(
        "state commit: {}",
        outcome(consumer.commit_consumer_state(CommitMode::Sync))
    ));
    notes.push(format!(
        "committed {}",
        list(&consumer.committed(timeout())?)
    ));
    take(&consumer, 1, &notes).await;
    notes.push(format!(
        "state commit: {}",
        outcome(consumer.commit_consumer_state(CommitMode::Sync))
    ));
    notes.push(format!(
        "committed {}",
        list(&consumer.committed(timeout())?)
    ));
    seek_note(&consumer, "t", 0, Offset::Offset(5), &notes);
    notes.push(format!(
        "state commit: {}",
        outcome(consumer.commit_consumer_state(CommitMode::Sync))
    ));
    notes.push(format!(
        "committed {}",
        list(&consumer.committed(timeout())?)
    ));
    Ok(())
}

/// Pausing a partition stops its records (those prefetched too) while the other flows;
/// resuming continues where it stopped.
pub async fn pause_resume(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&consumer_config("g"))?;
    consumer.subscribe(&["t"])?;
    // Until a record of t/0 came.
    let mut last0 = None;
    for _ in 0..6 {
        let m = consumer.recv().await?;
        if m.partition() == 0 {
            last0 = Some(m.offset());
            break;
        }
    }
    notes.push(format!("last of t/0 before the pause: {last0:?}"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    notes.push(format!("pause: {}", outcome(consumer.pause(&tp("t", 0)))));
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
            Ok(Ok(m)) => seen.push(m.partition()),
            Ok(Err(e)) => notes.push(format!("recv error {e}")),
            Err(_) => break,
        }
    }
    notes.push(format!(
        "paused: t/0 delivered {} times",
        seen.iter().filter(|p| **p == 0).count()
    ));
    position_note(&consumer, &notes);
    notes.push(format!("resume: {}", outcome(consumer.resume(&tp("t", 0)))));
    let mut offsets = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
            Ok(Ok(m)) => offsets.push(format!("{}@{}", m.partition(), m.offset())),
            Ok(Err(e)) => notes.push(format!("recv error {e}")),
            Err(_) => break,
        }
    }
    notes.push(format!("resumed: {offsets:?}"));
    notes.push(format!(
        "pause a partition not assigned: {}",
        outcome(consumer.pause(&tp("u", 0)))
    ));
    notes.push(format!(
        "resume a partition not paused: {}",
        outcome(consumer.resume(&tp("t", 1)))
    ));
    Ok(())
}

/// Notes the assign and revoke callbacks.
pub struct Noting(pub Notes);

impl RebalanceHandler for Noting {
    fn pre_rebalance(&self, _: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(l) => self.0.push(format!("assign {}", list(l))),
            Rebalance::Revoke(l) => self.0.push(format!("revoke {}", list(l))),
            Rebalance::Error(e) => self.0.push(format!("rebalance error {e}")),
        }
    }
}

/// A paused partition revoked and assigned again by an eager rebalance (the subscription
/// changes): paused or not afterwards?
pub async fn pause_across_rebalance(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer =
        ctx.create_consumer_with_handler(&consumer_config("g"), Noting(notes.clone()))?;
    consumer.subscribe(&["t"])?;
    take(&consumer, 1, &notes).await;
    notes.push(format!("pause: {}", outcome(consumer.pause(&tp("t", 0)))));
    next(&consumer, 2, &notes).await;
    consumer.subscribe(&["t", "u"])?;
    for _ in 0..3 {
        next(&consumer, 3, &notes).await;
    }
    Ok(())
}

/// `committed_offsets` for partitions not assigned: the group's offset where there is one,
/// `Invalid` elsewhere.
pub async fn committed_unassigned(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&consumer_config("g"))?;
    consumer.subscribe(&["t"])?;
    consumer.recv().await?;
    let mut l = TopicPartitionList::new();
    l.add_partition_offset("t", 0, Offset::Offset(2))?;
    consumer.commit(&l, CommitMode::Sync)?;
    drop(consumer);
    let other = ctx.create_consumer(&consumer_config("g"))?;
    let mut asked = TopicPartitionList::new();
    asked.add_partition("t", 0);
    asked.add_partition("t", 1);
    asked.add_partition("u", 0);
    match other.committed_offsets(asked, timeout()) {
        Ok(l) => notes.push(format!("committed_offsets {}", list(&l))),
        Err(e) => notes.push(format!("committed_offsets: {e}")),
    }
    notes.push(format!(
        "committed (nothing assigned) {}",
        list(&other.committed(timeout())?)
    ));
    Ok(())
}

// ----- what librdkafka's mock cluster showed (`tests/brokers/seek_pause.rs`) -----

/// [`rewind`] on `simulation(1, 6)`.
pub const REWIND: &[&str] = &[
    "got t/0@0",
    "got t/0@1",
    "got t/0@2",
    "seek t/0 to Offset(1): ok",
    "position [t/0@-]",
    "got t/0@1",
    "got t/0@2",
    "got t/0@3",
    "got t/0@4",
    "got t/0@5",
    "nothing",
];

/// [`skip`] on `simulation(1, 6)`.
pub const SKIP: &[&str] = &[
    "got t/0@0",
    "seek t/0 to Offset(4): ok",
    "position [t/0@-]",
    "got t/0@4",
    "got t/0@5",
    "nothing",
];

/// [`logical`] on `simulation(1, 6)`.
pub const LOGICAL: &[&str] = &[
    "got t/0@0",
    "got t/0@1",
    "got t/0@2",
    "seek t/0 to Beginning: ok",
    "position [t/0@-]",
    "got t/0@0",
    "seek t/0 to OffsetTail(2): ok",
    "position [t/0@-]",
    "got t/0@4",
    "got t/0@5",
    "seek t/0 to End: ok",
    "position [t/0@-]",
    "nothing",
    "position [t/0@-]",
];

const BEFORE_BEYOND: [&str; 5] = [
    "got t/0@0",
    "got t/0@1",
    "got t/0@2",
    "seek t/0 to Offset(10): ok",
    "position [t/0@-]",
];

/// [`beyond_end`] on `simulation(1, 6)`, for `earliest`, `latest` and `error`.
pub fn beyond_end_expected(reset: &str) -> Vec<String> {
    let after: &[&str] = match reset {
        "earliest" => &["got t/0@0", "got t/0@1", "got t/0@2", "position [t/0@3]"],
        "latest" => &["nothing", "nothing", "nothing", "position [t/0@-]"],
        _ => &[
            "recv error Message consumption error: AutoOffsetReset (Local: No offset to \
             automatically reset to)",
            "nothing",
            "nothing",
            "position [t/0@-]",
        ],
    };
    BEFORE_BEYOND
        .iter()
        .chain(after)
        .map(|s| s.to_string())
        .collect()
}

/// [`not_assigned`] on `simulation(1, 6)`.
pub const NOT_ASSIGNED: &[&str] = &[
    "seek t/0 to Offset(1): Seek error: Local: Unknown partition",
    "got t/0@0",
    "seek u/0 to Offset(0): Seek error: Local: Unknown partition",
    "seek t/7 to Offset(0): Seek error: Local: Unknown partition",
    "seek nope/0 to Offset(0): Seek error: Local: Unknown partition",
    "seek_partitions: [t/0@3,u/0@0 (Offset fetch error: State (Local: Erroneous state))]",
    "got t/0@3",
];

/// [`stored_offset`] on `simulation(1, 6)`.
pub const STORED_OFFSET: &[&str] = &[
    "got t/0@0",
    "got t/0@1",
    "got t/0@2",
    "got t/0@3",
    "seek t/0 to Offset(1): ok",
    "state commit: ok",
    "committed [t/0@4]",
    "got t/0@1",
    "state commit: Consumer commit error: NoOffset (Local: No offset stored)",
    "committed [t/0@4]",
    "seek t/0 to Offset(5): ok",
    "state commit: Consumer commit error: NoOffset (Local: No offset stored)",
    "committed [t/0@4]",
];

/// [`pause_resume`] on `simulation(2, 4)`.
pub const PAUSE_RESUME: &[&str] = &[
    "last of t/0 before the pause: Some(0)",
    "pause: ok",
    "paused: t/0 delivered 0 times",
    "position [t/0@1,t/1@4]",
    "resume: ok",
    r#"resumed: ["0@1", "0@2", "0@3"]"#,
    "pause a partition not assigned: ok",
    "resume a partition not paused: ok",
];

/// [`pause_across_rebalance`] on `simulation(1, 4)`: the partition stays paused.
pub const PAUSE_ACROSS_REBALANCE: &[&str] = &[
    "assign [t/0@-]",
    "got t/0@0",
    "pause: ok",
    "nothing",
    "revoke [t/0@-]",
    "assign [t/0@-,u/0@-]",
    "nothing",
    "nothing",
    "nothing",
    "revoke [t/0@-,u/0@-]",
];

/// [`committed_unassigned`] on `simulation(2, 4)`.
pub const COMMITTED_UNASSIGNED: &[&str] = &[
    "committed_offsets [t/0@2,t/1@-,u/0@-]",
    "committed (nothing assigned) []",
];
