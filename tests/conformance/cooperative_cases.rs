//! `partition.assignment.strategy=cooperative-sticky` (KIP-429, incremental rebalancing): what
//! the rebalance callbacks of two members see when the second joins and later leaves. Shared by
//! the conformance tests (the simulator) and the broker tests (librdkafka on its mock cluster,
//! where each expectation was measured).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::{
    ConsumerHandle, InputRecord, InstanceContext, KafkaConsumer, RebalanceHandler, Simulation,
};
use rdkafka::consumer::{CommitMode, Rebalance, RebalanceProtocol};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, TopicPartitionList};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Each instance's callbacks, in order: `assign 4 (0 -> 4)`, `revoke 2 (4 -> 2)`: how many
/// partitions the callback lists, and how many the consumer owned before and after it.
#[derive(Clone, Default)]
pub struct Callbacks(Arc<Mutex<BTreeMap<u32, Vec<String>>>>);

impl Callbacks {
    pub fn of(&self, instance: u32) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .get(&instance)
            .cloned()
            .unwrap_or_default()
    }
}

struct Recorder {
    instance: u32,
    callbacks: Callbacks,
    /// The partitions owned when the last `pre_rebalance` ran.
    before: Mutex<usize>,
}

fn owned(consumer: &dyn ConsumerHandle) -> usize {
    consumer.assignment().map_or(0, |a| a.count())
}

fn listed(rebalance: &Rebalance<'_>) -> (&'static str, usize) {
    let count = |l: &TopicPartitionList| l.count();
    match rebalance {
        Rebalance::Assign(l) => ("assign", count(l)),
        Rebalance::Revoke(l) => ("revoke", count(l)),
        Rebalance::Error(_) => ("error", 0),
    }
}

impl RebalanceHandler for Recorder {
    fn pre_rebalance(&self, consumer: &dyn ConsumerHandle, _: &Rebalance<'_>) {
        *self.before.lock().unwrap() = owned(consumer);
    }

    fn post_rebalance(&self, consumer: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
        let (what, n) = listed(rebalance);
        let before = *self.before.lock().unwrap();
        let mut note = format!("{what} {n} ({before} -> {})", owned(consumer));
        // Asked in the assign callbacks: in the revoke of a close librdkafka's answer depends on
        // how far its close got (seen both Cooperative and not on the mock cluster).
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        if what == "assign" && !cooperative {
            note.push_str(" NOT COOPERATIVE");
        }
        self.callbacks
            .0
            .lock()
            .unwrap()
            .entry(self.instance)
            .or_default()
            .push(note);
    }
}

/// Four partitions of `t`, two records each; the second instance starts at 2 s.
pub fn simulation() -> Simulation {
    let mut b = Simulation::builder();
    b.topic("t", 4)
        .instances(2)
        .start_at(1, Duration::from_secs(2));
    for p in 0..4 {
        for n in 0..2 {
            b.produce(
                InputRecord::new("t")
                    .partition(p)
                    .payload(format!("p{p}-{n}")),
            );
        }
    }
    b.time_limit(Duration::from_secs(120)).build().unwrap()
}

fn config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("group.id", "cooperative")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000");
    config
}

/// Instance 0 consumes and commits nothing until it has been given back the partitions it
/// revoked (so that the run, which ends once everything is committed, waits for the second
/// member's whole life, also on a real broker whose rebalances it cannot see coming), then
/// commits what it consumed; instance 1 commits each record, and closes once it has owned
/// partitions for 2 s.
async fn member(ctx: InstanceContext, callbacks: Callbacks) -> Result<(), BoxError> {
    let instance = ctx.instance().0;
    let consumer = ctx.create_consumer_with_handler(
        &config(),
        Recorder {
            instance,
            callbacks: callbacks.clone(),
            before: Mutex::new(0),
        },
    )?;
    consumer.subscribe(&["t"])?;
    let mut owning_since = None;
    let mut committing = instance == 1;
    loop {
        if instance == 1 {
            if owned(&consumer) == 0 {
                owning_since = None;
            } else if owning_since.is_none() {
                owning_since = Some(tokio::time::Instant::now());
            }
            if owning_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(2)) {
                return Ok(());
            }
        } else if !committing && callbacks.of(0).iter().any(|c| c == FIRST[2]) {
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(())
                | Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(e) => return Err(e.into()),
            }
            committing = true;
        }
        match tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await {
            Ok(message) => {
                let message = message?;
                if committing {
                    consumer.commit_message(&message, CommitMode::Sync)?;
                }
            }
            Err(_) => continue,
        }
    }
}

/// Runs the case on the simulator (`None`) or on `provider`: each instance's callbacks.
pub fn join_then_leave(provider: Option<&BrokerProvider>) -> (Vec<String>, Vec<String>) {
    let sim = simulation();
    let callbacks = Callbacks::default();
    let seen = callbacks.clone();
    let f = move |ctx| member(ctx, seen.clone());
    let outcome = match provider {
        None => sim.run(f),
        Some(p) => sim.run_on(p, f),
    }
    .unwrap();
    let (first, second) = (callbacks.of(0), callbacks.of(1));
    println!(
        "--- {}:\n{first:#?}\n{second:#?}\n{}",
        provider.map_or("simulator".into(), |p| p.to_string()),
        outcome.history()
    );
    (first, second)
}

/// The callbacks without the empty assignments: librdkafka serves an `Assign` callback for
/// every generation a member takes up, with nothing in it when nothing was added (how many
/// generations a rebalance takes differs between brokers).
pub fn changes(callbacks: &[String]) -> Vec<String> {
    callbacks
        .iter()
        .filter(|c| !c.starts_with("assign 0"))
        .cloned()
        .collect()
}

/// Measured on the mock cluster: the first member takes all four partitions; when the second
/// joins it revokes only the two that move and keeps consuming the others; when the second
/// leaves it is handed the two back without revoking anything.
pub const FIRST: [&str; 3] = [
    "assign 4 (0 -> 4)",
    "revoke 2 (4 -> 2)",
    "assign 2 (2 -> 4)",
];
/// The second member is first handed an empty assignment (the partitions that move are
/// withheld until their owner revoked them), then the two; its close revokes them.
pub const SECOND: [&str; 2] = ["assign 2 (0 -> 2)", "revoke 2 (2 -> 0)"];
/// The second member's first callback.
pub const SECOND_FIRST: &str = "assign 0 (0 -> 0)";
