//! Scenarios: an event stream, a group shape and a fault schedule anchored to the stream.
//!
//! A [`Scenario`] is what one verification case runs: which events the upstream service
//! publishes (some twice, as a producer retry without idempotence does; some unreadable, as a
//! poison record is), how many consumer instances and partitions there are, and which faults
//! fire where. Faults name an event of the stream, an operation on it and an occurrence
//! ("crash after the 2nd effect while handling `evt-3`"), so that shrinking the stream keeps them
//! meaningful. [`ScenarioSpace`] generates scenarios with proptest; a scenario is data, and the
//! run resolves its faults' anchors to records as it writes the input ([`Scenario::fault_schedule`]).

pub(crate) mod fault;
pub(crate) mod strategy;

pub(crate) use fault::{Anchor, FaultSchedule};
pub use fault::{FaultError, FaultRule};
pub(crate) use strategy::FaultKind;
pub use strategy::{BROKER_RESTART, ScenarioSpace};

use std::fmt;
use std::time::Duration;

pub use crate::history::POISON_PAYLOAD;
use crate::history::{Fault, InstanceId, Operation, PublishedEvent, human_duration};

/// One event an upstream service publishes.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event's unique id (`evt-0`, `evt-1`, ...), the identity effects are counted by.
    pub event_id: String,
    /// The record key (`k0`, `k1`, ...): events with the same key land on the same partition,
    /// in order.
    pub key: String,
    /// The event's data.
    pub payload: serde_json::Value,
}

impl Event {
    /// The default record payload: a JSON object with the event id and the data,
    /// `{"event_id": "evt-0", "key": "k0", "data": ...}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::json!({
            "event_id": self.event_id,
            "key": self.key,
            "data": self.payload,
        })
        .to_string()
        .into_bytes()
    }
}

/// An event of a scenario's stream and how it is published.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamEvent {
    /// The event.
    pub event: Event,
    /// Published twice in a row, as a producer without idempotence does when it retries after
    /// a lost acknowledgement. Both copies carry the same event id.
    pub produced_twice: bool,
    /// Published with a poison payload ([`POISON_PAYLOAD`] and the event id) instead of its
    /// payload: a record no consumer can process. It expects no effect, but the group must get
    /// past it; a verbatim copy of it (forwarded to a dead-letter or output topic) is
    /// attributed to it and is never a phantom.
    pub poison: bool,
    /// Published by a transactional upstream producer whose first transaction aborted: the
    /// aborted record and its marker stay in the log, then the event is published again in a
    /// transaction that commits (record and marker). Only `read_uncommitted` consumers see the
    /// aborted copy.
    pub aborted_first: bool,
}

/// A fault anchored to the stream: `fault` fires on the `occurrence`-th `operation` performed
/// while an instance handles event `event` (see [`Operation`] for which record each operation
/// concerns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioFault {
    /// Index into [`Scenario::events`].
    pub event: usize,
    /// The operation.
    pub operation: Operation,
    /// Which occurrence, from 1.
    pub occurrence: u32,
    /// What happens.
    pub fault: Fault,
}

impl ScenarioFault {
    /// Whether this fault is anchored on the same event and operation as `other`, at a later
    /// occurrence (so removing `other` shifts it).
    pub fn falls_after(&self, other: &ScenarioFault) -> bool {
        self.event == other.event
            && self.operation == other.operation
            && self.occurrence > other.occurrence
    }

    /// What happens, in words: `crash after the effect`, `the 2nd commit_message fails`.
    pub fn describe(&self) -> String {
        let call = match self.occurrence {
            1 => format!("the {}", self.operation),
            n => format!("the {} {}", ordinal(n), self.operation),
        };
        self.fault.at(&call)
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, `11th`, `21st`.
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A member of the group that starts later than the others, making the group rebalance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateJoin {
    /// The instance, counting from 0 (never 0 itself: someone starts at once).
    pub instance: u32,
    /// When it starts, in virtual time.
    pub at: Duration,
}

/// One verification case: the stream, the group shape and the faults.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The simulation seed: latencies and with them the interleaving of instances.
    pub seed: u64,
    /// Partitions of the input topic.
    pub partitions: i32,
    /// Consumer instances of the group.
    pub instances: u32,
    /// Instances that join after the start.
    pub late_joins: Vec<LateJoin>,
    /// The events, in publishing order.
    pub events: Vec<StreamEvent>,
    /// The faults.
    pub faults: Vec<ScenarioFault>,
}

impl Scenario {
    /// The input records of the scenario, in the order they are produced: for each event, the
    /// copy of its aborted upstream transaction if it has one, then its copy (two when it was
    /// produced twice).
    pub fn inputs(&self) -> Vec<ScenarioInput> {
        let mut inputs = Vec::new();
        for (index, e) in self.events.iter().enumerate() {
            if e.aborted_first {
                inputs.push(ScenarioInput {
                    event: index,
                    transaction: Some(false),
                });
            }
            for _ in 0..if e.produced_twice { 2 } else { 1 } {
                inputs.push(ScenarioInput {
                    event: index,
                    transaction: e.aborted_first.then_some(true),
                });
            }
        }
        inputs
    }

    /// The faults as a schedule, each anchored to the input record of the event it names (the
    /// event's first committed copy), wherever the run puts that record.
    pub fn fault_schedule(&self) -> FaultSchedule {
        let inputs = self.inputs();
        let mut schedule = FaultSchedule::new();
        for f in &self.faults {
            let first_copy = inputs
                .iter()
                .position(|i| i.event == f.event && i.transaction != Some(false));
            let Some(input) = first_copy else {
                continue; // the event was shrunk away
            };
            schedule.push(
                Anchor::on(f.operation)
                    .input(input)
                    .occurrence(f.occurrence),
                f.fault,
            );
        }
        schedule
    }

    /// The scenario as [`Display`](fmt::Display) prints it, with where each event's copies
    /// landed in a run of it.
    pub fn with_positions<'a>(&'a self, published: &'a [PublishedEvent]) -> impl fmt::Display + 'a {
        Positioned {
            scenario: self,
            published: Some(published),
        }
    }

    /// The scenario without fault `index`, the faults anchored later on the same event and
    /// operation moved one occurrence earlier, so that they still fall where they fell (the
    /// removed fault's failed commit made the next commit the second one).
    pub fn without_fault(&self, index: usize) -> Scenario {
        self.without_fault_shifting(index, ScenarioFault::falls_after)
    }

    /// The scenario without fault `index`, every later occurrence anchored on the same event
    /// (whatever its operation) moved one earlier: removing a crash removes a redelivery, and
    /// with it one occurrence of every operation on the redelivered event.
    pub fn without_fault_and_its_redelivery(&self, index: usize) -> Scenario {
        self.without_fault_shifting(index, |fault, removed| {
            fault.event == removed.event && fault.occurrence > 1
        })
    }

    /// The scenario without fault `index`, the faults `shifted` by its removal moved one
    /// occurrence earlier.
    fn without_fault_shifting(
        &self,
        index: usize,
        shifted: impl Fn(&ScenarioFault, &ScenarioFault) -> bool,
    ) -> Scenario {
        let mut scenario = self.clone();
        if index >= scenario.faults.len() {
            return scenario;
        }
        let removed = scenario.faults.remove(index);
        for fault in &mut scenario.faults {
            if shifted(fault, &removed) {
                fault.occurrence -= 1;
            }
        }
        scenario
    }

    /// The scenario without event `index` (the other events keep their ids), or `None` if a
    /// fault is anchored on it.
    pub fn without_event(&self, index: usize) -> Option<Scenario> {
        if index >= self.events.len() || self.faults.iter().any(|f| f.event == index) {
            return None;
        }
        let mut scenario = self.clone();
        scenario.events.remove(index);
        for fault in &mut scenario.faults {
            if fault.event > index {
                fault.event -= 1;
            }
        }
        Some(scenario)
    }

    /// How much virtual time the scenario's pauses add up to.
    pub fn pause_total(&self) -> Duration {
        self.faults.iter().map(|f| f.fault.pause()).sum()
    }

    /// A size for reports: events (copies counted once) plus faults plus late joins.
    pub fn size(&self) -> usize {
        self.events.len() + self.faults.len() + self.late_joins.len()
    }
}

/// One input record of a scenario (see [`Scenario::inputs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScenarioInput {
    /// Index into [`Scenario::events`].
    pub event: usize,
    /// Written in a transaction of its own that commits (`true`) or aborts (`false`).
    pub transaction: Option<bool>,
}

/// A scenario printed with (or without) where its events landed.
struct Positioned<'a> {
    scenario: &'a Scenario,
    published: Option<&'a [PublishedEvent]>,
}

impl fmt::Display for Scenario {
    /// The scenario as numbered steps (without positions: see [`Scenario::with_positions`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Positioned {
            scenario: self,
            published: None,
        }
        .fmt(f)
    }
}

impl fmt::Display for Positioned<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scenario = self.scenario;
        writeln!(
            f,
            "group: {} instance{}, {} partition{}, simulation seed {}",
            scenario.instances,
            if scenario.instances == 1 { "" } else { "s" },
            scenario.partitions,
            if scenario.partitions == 1 { "" } else { "s" },
            scenario.seed
        )?;
        for join in &scenario.late_joins {
            writeln!(
                f,
                "  {} joins at {}",
                InstanceId(join.instance),
                human_duration(join.at)
            )?;
        }
        writeln!(f, "events ({}):", scenario.events.len())?;
        for (index, e) in scenario.events.iter().enumerate() {
            write!(f, "  {}  key={}", e.event.event_id, e.event.key)?;
            match self.published.and_then(|p| p.get(index)) {
                Some(p) => {
                    f.write_str("  ")?;
                    if let Some(at) = &p.aborted {
                        write!(
                            f,
                            "partition {} offset {} (ABORTED upstream transaction), then ",
                            at.partition, at.offset
                        )?;
                    }
                    for (i, at) in p.positions.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "partition {} offset {}", at.partition, at.offset)?;
                    }
                }
                None if e.aborted_first => {
                    f.write_str("  (after an ABORTED upstream transaction)")?
                }
                None => {}
            }
            if e.produced_twice {
                f.write_str("  (produced twice: a producer retry)")?;
            }
            if e.poison {
                f.write_str("  (POISON: unparseable payload)")?;
            }
            writeln!(f)?;
        }
        match scenario.faults.len() {
            0 => writeln!(f, "faults: none")?,
            n => writeln!(f, "faults ({n}):")?,
        }
        for (i, fault) in scenario.faults.iter().enumerate() {
            let event = scenario
                .events
                .get(fault.event)
                .map_or("?", |e| e.event.event_id.as_str());
            writeln!(
                f,
                "  {}. {} while handling {event}",
                i + 1,
                fault.describe()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Event `evt-{n}` with `key`, published once, as tests here and elsewhere build it.
    pub(crate) fn event(n: usize, key: &str) -> StreamEvent {
        StreamEvent {
            event: Event {
                event_id: format!("evt-{n}"),
                key: key.into(),
                payload: serde_json::json!({ "n": n }),
            },
            produced_twice: false,
            poison: false,
            aborted_first: false,
        }
    }

    #[test]
    fn faults_anchor_to_their_events_first_copy_and_vanished_events_drop_out() {
        let scenario = Scenario {
            seed: 0,
            partitions: 1,
            instances: 1,
            late_joins: vec![],
            events: vec![event(0, "a"), event(1, "a")],
            faults: vec![
                ScenarioFault {
                    event: 1,
                    operation: Operation::Effect,
                    occurrence: 2,
                    fault: Fault::CrashAfter,
                },
                ScenarioFault {
                    event: 5,
                    operation: Operation::Recv,
                    occurrence: 1,
                    fault: Fault::CrashBefore,
                },
            ],
        };
        let schedule = scenario.fault_schedule();
        assert_eq!(schedule.rules().len(), 1);
        assert_eq!(
            schedule.rules()[0].anchor,
            Anchor::on(Operation::Effect).input(1).occurrence(2)
        );
    }

    #[test]
    fn every_fault_reads_as_a_sentence_about_its_call() {
        let fault = |fault, operation, occurrence| {
            ScenarioFault {
                event: 0,
                operation,
                occurrence,
                fault,
            }
            .describe()
        };
        let minute = Duration::from_secs(60);
        let described = [
            fault(Fault::CrashBefore, Operation::CommitMessage, 1),
            fault(Fault::CrashAfter, Operation::Effect, 1),
            fault(Fault::CrashAfter, Operation::StoreCommit, 2),
            fault(Fault::Fail, Operation::CommitTransaction, 1),
            fault(Fault::Ambiguous, Operation::Commit, 3),
            fault(Fault::LoseAck, Operation::Send, 1),
            fault(Fault::Stall(minute), Operation::Effect, 11),
            fault(Fault::Freeze(minute), Operation::Recv, 21),
            fault(Fault::BrokerRestart(minute), Operation::Send, 1),
        ];
        assert_eq!(
            described,
            [
                "crash before the commit_message",
                "crash after the effect",
                "crash after the 2nd store commit",
                "the commit_transaction fails",
                "the 3rd commit is applied but reported failed",
                "the send loses its ack (the producer retries it)",
                "the 11th effect stalls for 1min",
                "the process freezes for 1min at the 21st recv",
                "the broker restarts at the send (down for 1min)",
            ]
        );
    }

    #[test]
    fn removing_a_fault_moves_later_faults_on_the_same_anchor_one_occurrence_earlier() {
        let fault = |event, operation, occurrence| ScenarioFault {
            event,
            operation,
            occurrence,
            fault: Fault::CrashAfter,
        };
        let scenario = Scenario {
            seed: 0,
            partitions: 1,
            instances: 1,
            late_joins: vec![],
            events: vec![event(0, "a"), event(1, "a")],
            faults: vec![
                fault(0, Operation::StoreCommit, 2),
                fault(0, Operation::StoreCommit, 1),
                fault(0, Operation::Effect, 2),
                fault(1, Operation::StoreCommit, 2),
            ],
        };
        assert_eq!(
            scenario.without_fault(1).faults,
            vec![
                fault(0, Operation::StoreCommit, 1),
                fault(0, Operation::Effect, 2),
                fault(1, Operation::StoreCommit, 2),
            ]
        );
        assert_eq!(scenario.without_fault(9), scenario);
    }
}
