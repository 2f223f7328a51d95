//! Static group membership (`group.instance.id`, KIP-345): a member whose process crashes and
//! restarts within its session keeps its partitions, and the other members see no rebalance.
//! Shared by the conformance tests (the simulator) and the broker tests (librdkafka on the
//! Tansu container, where the expectation was measured; librdkafka's mock cluster does not
//! implement KIP-345: a restart there is a new member and a rebalance).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::history::InstanceId;
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, InputRecord, InstanceContext, KafkaConsumer,
    Operation, Outcome, RebalanceHandler, Simulation,
};
use rdkafka::consumer::{CommitMode, Rebalance};
use rdkafka::{ClientConfig, TopicPartitionList};

use crate::notes::Notes;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Two records in each of the four partitions.
pub const RECORDS: usize = 8;

/// Notes each rebalance callback as `i<instance>.<incarnation> assign 0,2`, until every record
/// was committed (the kit's closing of the consumers at the end of the run is not noted).
struct Recorder {
    label: String,
    notes: Notes,
    committed: Arc<Mutex<usize>>,
}

fn partitions(list: &TopicPartitionList) -> String {
    let mut partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
    partitions.sort();
    let listed: Vec<String> = partitions.iter().map(i32::to_string).collect();
    listed.join(",")
}

impl RebalanceHandler for Recorder {
    fn post_rebalance(&self, _: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
        if *self.committed.lock().unwrap() >= RECORDS {
            return;
        }
        let note = match rebalance {
            Rebalance::Assign(l) => format!("assign {}", partitions(l)),
            Rebalance::Revoke(l) => format!("revoke {}", partitions(l)),
            Rebalance::Error(e) => format!("error {e}"),
        };
        self.notes.push(format!("{} {note}", self.label));
    }
}

/// Four partitions of `t` with two records each; the second instance starts at 2 s; instance 0
/// crashes right after its second commit and restarts 200 ms later (well within the session:
/// 6 s on the simulator, the kit's 2 s on a broker).
pub fn simulation() -> Simulation {
    let mut b = Simulation::builder();
    b.topic("t", 4)
        .instances(2)
        .start_at(1, Duration::from_secs(2))
        .restart_delay(Duration::from_millis(200))
        .faults(
            FaultSchedule::new().with(
                Anchor::on(Operation::CommitMessage)
                    .instance(InstanceId(0))
                    .occurrence(2),
                Fault::CrashAfter,
            ),
        );
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

pub fn config(instance_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("group.id", "static")
        .set("group.instance.id", instance_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000");
    config
}

/// Commits each record it receives; the first incarnation of instance 0 only once it owns
/// two partitions (after the second member joined: what it received before is redelivered),
/// so that its commits, which the crash is anchored to, fall after the group settled, on any
/// broker however fast it rebalances.
async fn member(
    ctx: InstanceContext,
    notes: Notes,
    committed: Arc<Mutex<usize>>,
) -> Result<(), BoxError> {
    let instance = ctx.instance().0;
    let recorder = Recorder {
        label: format!("i{instance}.{}", ctx.incarnation().number),
        notes,
        committed: committed.clone(),
    };
    let consumer =
        ctx.create_consumer_with_handler(&config(&format!("member-{instance}")), recorder)?;
    consumer.subscribe(&["t"])?;
    let waits = instance == 0 && ctx.incarnation().number == 1;
    loop {
        let message = consumer.recv().await?;
        if waits && consumer.assignment()?.count() != 2 {
            continue;
        }
        // Counted before the commit: the crash right after the commit counts it.
        *committed.lock().unwrap() += 1;
        consumer.commit_message(&message, CommitMode::Sync)?;
    }
}

/// Runs the case on the simulator (`None`) or on `provider`: the rebalance callbacks in order.
pub fn restart_within_the_session(provider: Option<&BrokerProvider>) -> (Vec<String>, Outcome) {
    let sim = simulation();
    let notes = Notes::default();
    let committed = Arc::new(Mutex::new(0));
    let (seen, count) = (notes.clone(), committed.clone());
    let f = move |ctx| member(ctx, seen.clone(), count.clone());
    let outcome = match provider {
        None => sim.run(f),
        Some(p) => sim.run_on(p, f),
    }
    .unwrap();
    println!(
        "--- {}:\n{:#?}\n{}",
        provider.map_or("simulator".into(), |p| p.to_string()),
        notes.all(),
        outcome.history()
    );
    (notes.all(), outcome)
}

/// The callbacks of the notes whose label starts with `label` (`"i0.1"`, `"i1."`).
pub fn of<'a>(notes: &'a [String], label: &str) -> Vec<&'a str> {
    notes
        .iter()
        .filter(|n| n.starts_with(label))
        .map(|n| n.split_once(' ').map_or("", |(_, c)| c))
        .collect()
}

/// What was measured on the Tansu container and the simulator meets: the other member's only
/// callback is its first assignment; the restarted incarnation is handed exactly the partitions
/// its predecessor had last; nothing is revoked from anyone after the crash.
pub fn assert_kept_without_rebalance(notes: &[String]) {
    let other = of(notes, "i1.");
    assert_eq!(
        other.len(),
        1,
        "the other member saw a rebalance: {notes:#?}"
    );
    assert!(other[0].starts_with("assign "), "{notes:#?}");
    let before: Vec<&str> = of(notes, "i0.1");
    let last = before
        .iter()
        .rev()
        .find(|c| c.starts_with("assign "))
        .expect("the first incarnation was assigned partitions");
    let after = of(notes, "i0.2");
    assert_eq!(after, vec![*last], "{notes:#?}");
    assert_ne!(*last, "assign ", "{notes:#?}");
}
