//! proptest strategies for scenarios, public so that tests can compose their own.
//!
//! ```
//! use effectively_once::FaultKind;
//! use effectively_once::scenario::ScenarioSpace;
//! use proptest::strategy::{Strategy, ValueTree};
//! use proptest::test_runner::TestRunner;
//!
//! let mut space = ScenarioSpace::default();
//! space.events(1..=4).faults(&[FaultKind::Crash, FaultKind::AmbiguousCommit]);
//! let mut runner = TestRunner::deterministic();
//! let scenario = space.strategy().new_tree(&mut runner).unwrap().current();
//! assert!((1..=4).contains(&scenario.events.len()));
//! ```

use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::{BoxedStrategy, SBoxedStrategy, Union};

use super::{Event, LateJoin, Scenario, ScenarioFault, StreamEvent};
use crate::history::{Fault, Operation};

/// How long a [`FaultKind::BrokerRestart`] keeps the broker down: a quick restart, back before
/// any session (at least 1 s on a real broker run, 6 s by Kafka's default minimum) runs out.
pub const BROKER_RESTART: Duration = Duration::from_millis(500);

/// A family of faults a scenario may contain. [`FaultKind::DEFAULT`] is the default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// The instance crashes right before or right after any client call, effect or store
    /// commit: after `recv` with the message in flight, between the effect and the commit,
    /// between the commit and the effect, between the effect and a dedup mark.
    Crash,
    /// An offset commit or `commit_transaction` fails definitely (nothing committed, an error
    /// returned: for an offset commit `REBALANCE_IN_PROGRESS`, the refusal librdkafka does not
    /// retry; for a transaction, librdkafka's abortable timeout).
    CommitFailure,
    /// An offset commit or `commit_transaction` is applied but reported failed (an offset
    /// commit: librdkafka's `Local: Timed out` once its retries are used up; an ambiguous
    /// EndTxn: the transaction committed, the application is told to abort).
    AmbiguousCommit,
    /// An effect fails definitely (nothing happened, an error returned).
    EffectFailure,
    /// An effect happens but the call reports a failure (a timeout after the work was done).
    AmbiguousEffect,
    /// A durable-store transaction commit fails (rolled back) or is applied but reported
    /// failed.
    StoreFailure,
    /// The process freezes for 60 s: its session times out, the group rebalances, and its
    /// next commit is rejected.
    SessionTimeout,
    /// An effect takes 6 minutes: the consumer breaches `max.poll.interval.ms` (5 min by
    /// default) and is removed from the group.
    MaxPollBreach,
    /// The process freezes for 25 hours: a dedup mark with a 24-hour TTL expires in between.
    LongPause,
    /// The upstream producer publishes an event twice, as it does when it retries without
    /// idempotence after a lost acknowledgement.
    ProducerDuplicate,
    /// A record whose payload no consumer can parse.
    PoisonRecord,
    /// A member joins the group after the start, forcing a rebalance: in the middle of the
    /// input (while the others hold uncommitted work), after it, or after a session timeout.
    LateJoin,
    /// The acknowledgement of one of the consumer's own produce requests is lost, so
    /// librdkafka retries it.
    LostAck,
    /// The process freezes for 60 s while producing, in the middle of its transaction: its
    /// session times out and its partitions move on, and it wakes up a zombie that carries on
    /// with its transaction.
    Zombie,
    /// A produce call takes 70 s while the process stays alive: the open transaction outlives
    /// `transaction.timeout.ms` (60 s), the coordinator aborts it and fences the producer.
    TransactionTimeout,
    /// The broker restarts for 500 ms (its storage survives) just before a `recv`, an
    /// explicit commit or a `send` reaches it: every consumer's next `recv` returns a
    /// transport error, and requests wait until it is back. A consumer that exits on that
    /// error is restarted by the kit, as its supervisor would.
    BrokerRestart,
    /// The input is written by a transactional upstream producer whose transaction aborts
    /// before it publishes the event again: the aborted copy stays in the log, where a
    /// `read_uncommitted` consumer reads it.
    AbortedUpstream,
}

impl FaultKind {
    /// The kinds a [`ScenarioSpace`] uses by default: every kind but
    /// [`ProducerDuplicate`](FaultKind::ProducerDuplicate), since producers are idempotent by
    /// default (Kafka 3.0+ clients; librdkafka with `enable.idempotence=true`), and
    /// [`AbortedUpstream`](FaultKind::AbortedUpstream), since most upstream producers are not
    /// transactional. Enable them when the upstream producer is not idempotent, or republishes
    /// events, or writes in transactions.
    pub const DEFAULT: [FaultKind; 15] = [
        FaultKind::Crash,
        FaultKind::CommitFailure,
        FaultKind::AmbiguousCommit,
        FaultKind::EffectFailure,
        FaultKind::AmbiguousEffect,
        FaultKind::StoreFailure,
        FaultKind::SessionTimeout,
        FaultKind::MaxPollBreach,
        FaultKind::LongPause,
        FaultKind::PoisonRecord,
        FaultKind::LateJoin,
        FaultKind::LostAck,
        FaultKind::Zombie,
        FaultKind::TransactionTimeout,
        FaultKind::BrokerRestart,
    ];

    /// Every kind.
    pub const ALL: [FaultKind; 17] = [
        FaultKind::Crash,
        FaultKind::CommitFailure,
        FaultKind::AmbiguousCommit,
        FaultKind::EffectFailure,
        FaultKind::AmbiguousEffect,
        FaultKind::StoreFailure,
        FaultKind::SessionTimeout,
        FaultKind::MaxPollBreach,
        FaultKind::LongPause,
        FaultKind::ProducerDuplicate,
        FaultKind::PoisonRecord,
        FaultKind::LateJoin,
        FaultKind::LostAck,
        FaultKind::Zombie,
        FaultKind::TransactionTimeout,
        FaultKind::BrokerRestart,
        FaultKind::AbortedUpstream,
    ];

    /// The `(operations, faults)` pairs this kind injects at interception points; empty for
    /// the kinds that shape the stream or the group instead.
    fn injections(self) -> Vec<(Operation, Fault)> {
        use Operation::*;
        const COMMITS: [Operation; 4] = [CommitMessage, Commit, AutoCommit, CommitTransaction];
        fn on(ops: &[Operation], fault: Fault) -> impl Iterator<Item = (Operation, Fault)> + '_ {
            ops.iter().map(move |op| (*op, fault))
        }
        match self {
            FaultKind::Crash => on(&Operation::ALL, Fault::CrashBefore)
                .chain(on(&Operation::ALL, Fault::CrashAfter))
                .collect(),
            FaultKind::CommitFailure => on(&COMMITS, Fault::Fail).collect(),
            FaultKind::AmbiguousCommit => on(&COMMITS, Fault::Ambiguous).collect(),
            FaultKind::EffectFailure => vec![(Effect, Fault::Fail)],
            FaultKind::AmbiguousEffect => vec![(Effect, Fault::Ambiguous)],
            FaultKind::StoreFailure => {
                vec![(StoreCommit, Fault::Fail), (StoreCommit, Fault::Ambiguous)]
            }
            FaultKind::SessionTimeout => {
                on(&[Recv, Effect], Fault::Freeze(Duration::from_secs(60))).collect()
            }
            FaultKind::MaxPollBreach => vec![(Effect, Fault::Stall(Duration::from_secs(6 * 60)))],
            FaultKind::LongPause => on(
                &[Recv, Effect],
                Fault::Freeze(Duration::from_secs(25 * 3600)),
            )
            .collect(),
            FaultKind::LostAck => vec![(Send, Fault::LoseAck)],
            FaultKind::Zombie => vec![(Send, Fault::Freeze(Duration::from_secs(60)))],
            FaultKind::TransactionTimeout => vec![(Send, Fault::Stall(Duration::from_secs(70)))],
            FaultKind::BrokerRestart => on(
                &[Recv, CommitMessage, Commit, Send],
                Fault::BrokerRestart(BROKER_RESTART),
            )
            .collect(),
            FaultKind::ProducerDuplicate
            | FaultKind::PoisonRecord
            | FaultKind::LateJoin
            | FaultKind::AbortedUpstream => Vec::new(),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultKind::Crash => "crash",
            FaultKind::CommitFailure => "commit failure",
            FaultKind::AmbiguousCommit => "ambiguous commit",
            FaultKind::EffectFailure => "effect failure",
            FaultKind::AmbiguousEffect => "ambiguous effect",
            FaultKind::StoreFailure => "store failure",
            FaultKind::SessionTimeout => "session timeout",
            FaultKind::MaxPollBreach => "max.poll.interval.ms breach",
            FaultKind::LongPause => "long pause",
            FaultKind::ProducerDuplicate => "producer duplicate",
            FaultKind::PoisonRecord => "poison record",
            FaultKind::LateJoin => "late join",
            FaultKind::LostAck => "lost ack",
            FaultKind::Zombie => "zombie",
            FaultKind::TransactionTimeout => "transaction timeout",
            FaultKind::BrokerRestart => "broker restart",
            FaultKind::AbortedUpstream => "aborted upstream transaction",
        })
    }
}

/// The space scenarios are drawn from. Setters take `&mut self`; [`strategy`](Self::strategy)
/// builds the proptest strategy.
#[derive(Clone, Debug)]
pub struct ScenarioSpace {
    events: RangeInclusive<usize>,
    keys: usize,
    partitions: RangeInclusive<i32>,
    instances: RangeInclusive<u32>,
    faults: RangeInclusive<usize>,
    kinds: Vec<FaultKind>,
    operations: Option<Vec<Operation>>,
    payload: SBoxedStrategy<serde_json::Value>,
}

impl Default for ScenarioSpace {
    /// 1 to 8 events over 3 keys, 1 to 3 partitions, 1 to 3 instances, up to 3 faults of the
    /// [default kinds](FaultKind::DEFAULT) on any operation, payloads `{"value": <u16>}`.
    fn default() -> Self {
        ScenarioSpace {
            events: 1..=8,
            keys: 3,
            partitions: 1..=3,
            instances: 1..=3,
            faults: 0..=3,
            kinds: FaultKind::DEFAULT.to_vec(),
            operations: None,
            payload: any::<u16>()
                .prop_map(|value| serde_json::json!({ "value": value }))
                .sboxed(),
        }
    }
}

impl ScenarioSpace {
    /// How many events a stream has (default 1..=8).
    pub fn events(&mut self, count: RangeInclusive<usize>) -> &mut Self {
        self.events = count;
        self
    }

    /// How many distinct keys events use (default 3): few keys make same-key runs.
    pub fn keys(&mut self, keys: usize) -> &mut Self {
        self.keys = keys;
        self
    }

    /// How many partitions the input topic has (default 1..=3).
    pub fn partitions(&mut self, partitions: RangeInclusive<i32>) -> &mut Self {
        self.partitions = partitions;
        self
    }

    /// How many consumer instances run (default 1..=3).
    pub fn instances(&mut self, instances: RangeInclusive<u32>) -> &mut Self {
        self.instances = instances;
        self
    }

    /// How many injected faults a scenario has (default 0..=3).
    pub fn fault_count(&mut self, count: RangeInclusive<usize>) -> &mut Self {
        self.faults = count;
        self
    }

    /// Which kinds of faults occur (default [`FaultKind::DEFAULT`]).
    pub fn faults(&mut self, kinds: &[FaultKind]) -> &mut Self {
        self.kinds = kinds.to_vec();
        self
    }

    /// Injects faults only on these operations (default: any). The verifier sets it to the
    /// operations a fault-free pilot run of the consumer performed, so that faults are not
    /// wasted on calls the consumer never makes.
    pub fn operations(&mut self, operations: &[Operation]) -> &mut Self {
        self.operations = Some(operations.to_vec());
        self
    }

    /// The operations faults are restricted to, if any.
    pub fn restricted_operations(&self) -> Option<&[Operation]> {
        self.operations.as_deref()
    }

    /// The strategy for event payloads (default `{"value": <u16>}`).
    pub fn payload(
        &mut self,
        payload: impl Strategy<Value = serde_json::Value> + Send + Sync + 'static,
    ) -> &mut Self {
        self.payload = payload.sboxed();
        self
    }

    /// The fault kinds enabled.
    pub fn kinds(&self) -> &[FaultKind] {
        &self.kinds
    }

    /// Checks the ranges, naming the first that makes no sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.events.is_empty() {
            return Err(format!("the event count range {:?} is empty", self.events));
        }
        if self.keys == 0 {
            return Err("events need at least one key".into());
        }
        if self.partitions.is_empty() || *self.partitions.start() < 1 {
            return Err(format!(
                "the partition range {:?} must be non-empty and start at 1 or more",
                self.partitions
            ));
        }
        if self.instances.is_empty() || *self.instances.start() < 1 {
            return Err(format!(
                "the instance range {:?} must be non-empty and start at 1 or more",
                self.instances
            ));
        }
        if self.faults.is_empty() {
            return Err(format!("the fault count range {:?} is empty", self.faults));
        }
        Ok(())
    }

    /// The proptest strategy. Shrinking removes events and faults, simplifies events (no
    /// duplicate, not poison, key `k0`), lowers occurrences and drops late joins.
    pub fn strategy(&self) -> BoxedStrategy<Scenario> {
        self.shared_strategy().boxed()
    }

    /// [`strategy`](Self::strategy), shareable between threads (the look-ahead's generator).
    pub(crate) fn shared_strategy(&self) -> SBoxedStrategy<Scenario> {
        let has = |k: FaultKind| self.kinds.contains(&k);
        let twice_weight = if has(FaultKind::ProducerDuplicate) {
            0.2
        } else {
            0.0
        };
        let poison_weight = if has(FaultKind::PoisonRecord) {
            0.1
        } else {
            0.0
        };
        let late_join = has(FaultKind::LateJoin);
        let keys = self.keys.max(1);
        let event = (
            0..keys,
            self.payload.clone(),
            prop::bool::weighted(twice_weight),
            prop::bool::weighted(poison_weight),
        );
        // Drawn only when enabled, so that the other kinds' cases stay what they were.
        let event: SBoxedStrategy<_> = if has(FaultKind::AbortedUpstream) {
            (event, prop::bool::weighted(0.2))
                .prop_map(|((key, payload, twice, poison), aborted)| {
                    (key, payload, twice, poison, aborted)
                })
                .sboxed()
        } else {
            event
                .prop_map(|(key, payload, twice, poison)| (key, payload, twice, poison, false))
                .sboxed()
        };
        let events = prop::collection::vec(event, self.events.clone());
        let injections: Vec<(Operation, Fault)> = self
            .kinds
            .iter()
            .flat_map(|k| k.injections())
            .filter(|(op, _)| self.operations.as_ref().is_none_or(|ops| ops.contains(op)))
            .collect();
        let fault_count = if injections.is_empty() {
            0..=0
        } else {
            self.faults.clone()
        };
        let injection: SBoxedStrategy<(Operation, Fault)> = if injections.is_empty() {
            Just((Operation::Recv, Fault::CrashBefore)).sboxed()
        } else {
            Union::new(injections.into_iter().map(Just)).sboxed()
        };
        let fault = (any::<Index>(), injection, 1..=2u32);
        let faults = prop::collection::vec(fault, fault_count);
        let shape = (self.partitions.clone(), self.instances.clone());
        (shape, events, faults, any::<u64>())
            .prop_flat_map(move |((partitions, instances), events, faults, seed)| {
                let joins = if late_join && instances > 1 {
                    prop::collection::vec(
                        prop::option::weighted(
                            0.3,
                            // In the middle of the input (a record takes a few
                            // milliseconds), while the others hold uncommitted work; after
                            // it; after a session timeout.
                            select(vec![
                                Duration::from_millis(10),
                                Duration::from_millis(500),
                                Duration::from_secs(3),
                                Duration::from_secs(20),
                            ]),
                        ),
                        (instances - 1) as usize,
                    )
                    .sboxed()
                } else {
                    Just(Vec::new()).sboxed()
                };
                (
                    Just((partitions, instances)),
                    Just(events),
                    Just(faults),
                    Just(seed),
                    joins,
                )
            })
            .prop_map(|((partitions, instances), events, faults, seed, joins)| {
                let events: Vec<StreamEvent> = events
                    .into_iter()
                    .enumerate()
                    .map(
                        |(n, (key, payload, produced_twice, poison, aborted_first))| StreamEvent {
                            event: Event {
                                event_id: format!("evt-{n}"),
                                key: format!("k{key}"),
                                payload,
                            },
                            produced_twice,
                            poison,
                            aborted_first,
                        },
                    )
                    .collect();
                let faults = faults
                    .into_iter()
                    .map(|(index, (operation, fault), occurrence)| ScenarioFault {
                        event: index.index(events.len()),
                        operation,
                        occurrence,
                        fault,
                    })
                    .collect();
                let late_joins = joins
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, at)| {
                        at.map(|at| LateJoin {
                            instance: i as u32 + 1,
                            at,
                        })
                    })
                    .collect();
                Scenario {
                    seed,
                    partitions,
                    instances,
                    late_joins,
                    events,
                    faults,
                }
            })
            .sboxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn generated_scenarios_stay_inside_the_space() {
        let mut space = ScenarioSpace::default();
        space
            .events(2..=5)
            .partitions(2..=2)
            .instances(1..=2)
            .faults(&[FaultKind::Crash]);
        let strategy = space.strategy();
        let mut runner = TestRunner::deterministic();
        for _ in 0..200 {
            let s = strategy.new_tree(&mut runner).unwrap().current();
            assert!((2..=5).contains(&s.events.len()));
            assert_eq!(s.partitions, 2);
            assert!(s.late_joins.is_empty() && s.events.iter().all(|e| !e.poison));
            assert!(s.faults.iter().all(|f| f.event < s.events.len()
                && matches!(f.fault, Fault::CrashBefore | Fault::CrashAfter)));
            let ids: std::collections::BTreeSet<_> =
                s.events.iter().map(|e| e.event.event_id.clone()).collect();
            assert_eq!(ids.len(), s.events.len(), "event ids are unique");
        }
    }

    #[test]
    fn every_generated_fault_is_valid_for_its_operation() {
        let strategy = ScenarioSpace::default().strategy();
        let mut runner = TestRunner::deterministic();
        for _ in 0..300 {
            let s = strategy.new_tree(&mut runner).unwrap().current();
            assert!(s.fault_schedule().validate().is_ok(), "{s}");
        }
    }

    #[test]
    fn shrinking_reaches_the_smallest_scenario() {
        let strategy = ScenarioSpace::default().strategy();
        let mut runner = TestRunner::deterministic();
        let mut tree = strategy.new_tree(&mut runner).unwrap();
        while tree.simplify() {}
        let s = tree.current();
        assert_eq!(
            (s.events.len(), s.faults.len(), s.late_joins.len()),
            (1, 0, 0)
        );
        assert_eq!((s.partitions, s.instances, s.seed), (1, 1, 0));
        assert!(!s.events[0].produced_twice && !s.events[0].poison && !s.events[0].aborted_first);
    }
}
