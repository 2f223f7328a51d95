//! Helpers shared by the conformance tests.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use effectively_once::{InputRecord, Outcome, Simulation, SimulationBuilder};
use rdkafka::ClientConfig;

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

/// A shared log of observations made inside consumers, for assertions after the run.
#[derive(Clone, Default)]
pub struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    pub fn push(&self, note: impl Into<String>) {
        self.0.lock().unwrap().push(note.into());
    }

    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Prints the timeline (visible with `--nocapture` or when the test fails).
pub fn show(outcome: &Outcome) {
    println!("{}", outcome.history());
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
