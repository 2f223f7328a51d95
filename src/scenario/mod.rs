//! Scenarios: an event stream, a group shape and a fault schedule anchored to the stream.
//!
//! A [`Scenario`] is what one verification case runs: which events the upstream service
//! publishes (some twice, as a producer retry without idempotence does; some unreadable, as a
//! poison record is), how many consumer instances and partitions there are, and which faults
//! fire where. Faults name an event of the stream, an operation on it and an occurrence
//! ("crash after the 2nd effect while handling `evt-3`"), so that shrinking the stream keeps them
//! meaningful. The [`strategy`] module generates scenarios with proptest.

pub mod strategy;

use std::fmt;
use std::time::Duration;

use crate::fault::{Anchor, Fault, FaultSchedule, Operation, human_duration};
use crate::harness::{InputRecord, SimulationBuilder};
use crate::history::InstanceId;
use crate::record::RecordPosition;
use crate::sim::partitioner::crc32;

/// The payload of a poison record: not UTF-8, not JSON, not anything a consumer can parse.
pub const POISON_PAYLOAD: &[u8] = b"\xff\xfe poison record: not an event";

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
    /// Published with [`POISON_PAYLOAD`] instead of its payload: a record no consumer can
    /// process. It expects no effect, but the group must get past it.
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

/// An event as it was published: where its copies landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedEvent {
    /// The event id.
    pub event_id: String,
    /// The record key.
    pub key: String,
    /// The committed copies' positions, in order (two for an event produced twice).
    pub positions: Vec<RecordPosition>,
    /// Where the copy of an aborted upstream transaction landed, if there is one.
    pub aborted: Option<RecordPosition>,
    /// Whether the record is a poison record.
    pub poison: bool,
}

impl Scenario {
    /// Where each event lands when published to `topic`: keyed records go to the partition
    /// librdkafka's default `consistent_random` partitioner picks (CRC-32 of the key), at the
    /// next offset of that partition (transaction markers take an offset each).
    pub fn published(&self, topic: &str) -> Vec<PublishedEvent> {
        let partitions = self.partitions.max(1);
        let mut next = vec![0i64; partitions as usize];
        self.events
            .iter()
            .map(|e| {
                let partition = (crc32(e.event.key.as_bytes()) % partitions as u32) as i32;
                let next = &mut next[partition as usize];
                // A record, and its transaction's marker if it has one.
                let mut append = |transactional: bool| {
                    let offset = *next;
                    *next += if transactional { 2 } else { 1 };
                    RecordPosition {
                        topic: topic.to_string(),
                        partition,
                        offset,
                    }
                };
                let aborted = e.aborted_first.then(|| append(true));
                let copies = if e.produced_twice { 2 } else { 1 };
                let positions = (0..copies).map(|_| append(e.aborted_first)).collect();
                PublishedEvent {
                    event_id: e.event.event_id.clone(),
                    key: e.event.key.clone(),
                    positions,
                    aborted,
                    poison: e.poison,
                }
            })
            .collect()
    }

    /// The faults as a schedule of the simulator, anchored to the record of the event they
    /// name (its first copy).
    pub fn fault_schedule(&self, topic: &str) -> FaultSchedule {
        let published = self.published(topic);
        let mut schedule = FaultSchedule::new();
        for f in &self.faults {
            let Some(event) = published.get(f.event) else {
                continue; // the event was shrunk away
            };
            let at = &event.positions[0];
            schedule.push(
                Anchor::on(f.operation)
                    .topic(topic)
                    .record(at.partition, at.offset)
                    .occurrence(f.occurrence),
                f.fault,
            );
        }
        schedule
    }

    /// Configures `builder` with this scenario: the topic, the instances and their start
    /// times, the records (payloads rendered by `encode`) and the faults.
    pub fn configure(
        &self,
        builder: &mut SimulationBuilder,
        topic: &str,
        encode: &dyn Fn(&Event) -> Vec<u8>,
    ) {
        builder
            .seed(self.seed)
            .topic(topic, self.partitions)
            .instances(self.instances)
            .faults(self.fault_schedule(topic));
        for join in &self.late_joins {
            builder.start_at(join.instance, join.at);
        }
        for (e, published) in self.events.iter().zip(self.published(topic)) {
            let payload = if e.poison {
                POISON_PAYLOAD.to_vec()
            } else {
                encode(&e.event)
            };
            let record = |at: &RecordPosition| {
                InputRecord::new(topic)
                    .key(e.event.key.clone())
                    .partition(at.partition)
                    .payload(payload.clone())
            };
            if let Some(at) = &published.aborted {
                builder.produce(record(at).in_transaction(false));
            }
            for at in &published.positions {
                let copy = record(at);
                builder.produce(if e.aborted_first {
                    copy.in_transaction(true)
                } else {
                    copy
                });
            }
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
        self.faults
            .iter()
            .map(|f| match f.fault {
                Fault::Stall(d) | Fault::Freeze(d) | Fault::BrokerRestart(d) => d,
                _ => Duration::ZERO,
            })
            .sum()
    }

    /// A size for reports: events (copies counted once) plus faults plus late joins.
    pub fn size(&self) -> usize {
        self.events.len() + self.faults.len() + self.late_joins.len()
    }
}

impl fmt::Display for Scenario {
    /// The scenario as numbered steps, the way reports print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topic = "input";
        writeln!(
            f,
            "group: {} instance{}, {} partition{}, simulation seed {}",
            self.instances,
            if self.instances == 1 { "" } else { "s" },
            self.partitions,
            if self.partitions == 1 { "" } else { "s" },
            self.seed
        )?;
        for join in &self.late_joins {
            writeln!(
                f,
                "  {} joins at {}",
                InstanceId(join.instance),
                human_duration(join.at)
            )?;
        }
        writeln!(f, "events ({}):", self.events.len())?;
        for (e, p) in self.events.iter().zip(self.published(topic)) {
            write!(f, "  {}  key={}  ", e.event.event_id, e.event.key)?;
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
            if e.produced_twice {
                f.write_str("  (produced twice: a producer retry)")?;
            }
            if e.poison {
                f.write_str("  (POISON: unparseable payload)")?;
            }
            writeln!(f)?;
        }
        writeln!(f, "faults ({}):", self.faults.len())?;
        for (i, fault) in self.faults.iter().enumerate() {
            let event = self
                .events
                .get(fault.event)
                .map_or("?", |e| e.event.event_id.as_str());
            write!(f, "  {}. {} on ", i + 1, fault.fault)?;
            if fault.occurrence > 1 {
                write!(f, "occurrence {} of ", fault.occurrence)?;
            }
            writeln!(f, "{} while handling {event}", fault.operation)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize, key: &str) -> StreamEvent {
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
    fn an_aborted_first_copy_and_the_markers_take_offsets_where_the_simulator_puts_them() {
        let mut aborted = event(1, "k");
        aborted.aborted_first = true;
        let scenario = Scenario {
            seed: 0,
            partitions: 1,
            instances: 1,
            late_joins: vec![],
            events: vec![event(0, "k"), aborted, event(2, "k")],
            faults: vec![],
        };
        let published = scenario.published("t");
        let at = |offset| RecordPosition {
            topic: "t".into(),
            partition: 0,
            offset,
        };
        assert_eq!(published[1].aborted, Some(at(1)));
        assert_eq!(published[1].positions, [at(3)]);
        assert_eq!(published[2].positions, [at(5)]);
        let mut builder = crate::Simulation::builder();
        scenario.configure(&mut builder, "t", &Event::to_json);
        let outcome = builder.build().unwrap().run(|_| async {}).unwrap();
        let log: Vec<(bool, bool)> = outcome
            .cluster()
            .records("t", 0)
            .iter()
            .map(|r| (r.control, r.aborted))
            .collect();
        assert_eq!(
            log,
            [
                (false, false),
                (false, true),
                (true, false),
                (false, false),
                (true, false),
                (false, false)
            ]
        );
    }

    #[test]
    fn events_land_by_crc32_of_the_key_at_dense_offsets_and_duplicates_take_two() {
        let mut twice = event(1, "k0");
        twice.produced_twice = true;
        let scenario = Scenario {
            seed: 0,
            partitions: 3,
            instances: 1,
            late_joins: vec![],
            events: vec![event(0, "k0"), twice, event(2, "k0")],
            faults: vec![],
        };
        let p = (crc32(b"k0") % 3) as i32;
        let published = scenario.published("t");
        let offsets: Vec<Vec<(i32, i64)>> = published
            .iter()
            .map(|e| {
                e.positions
                    .iter()
                    .map(|r| (r.partition, r.offset))
                    .collect()
            })
            .collect();
        assert_eq!(
            offsets,
            vec![vec![(p, 0)], vec![(p, 1), (p, 2)], vec![(p, 3)]]
        );
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
        let schedule = scenario.fault_schedule("t");
        assert_eq!(schedule.rules().len(), 1);
        assert_eq!(
            schedule.rules()[0].anchor,
            Anchor::on(Operation::Effect)
                .topic("t")
                .record(0, 1)
                .occurrence(2)
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
