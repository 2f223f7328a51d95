//! Fault schedules: which failure fires at which interception point.
//!
//! Every client call, effect-sink call and durable-store commit is an interception point. A
//! [`FaultSchedule`] is a list of [`FaultRule`]s; each names an [`Anchor`] (an [`Operation`],
//! optionally narrowed to the record it concerns, an instance and an occurrence) and the
//! [`Fault`] to inject when the anchor is reached. Anchors name records rather than step
//! numbers, so a schedule stays meaningful when the event stream around it changes.
//!
//! ```
//! use effectively_once::{Anchor, Fault, FaultSchedule, Operation};
//!
//! // Crash right after the offset of partition 0, offset 3 is committed, before the effect:
//! // the window where commit-before-processing loses the event.
//! let faults = FaultSchedule::new()
//!     .with(Anchor::on(Operation::CommitMessage).record(0, 3), Fault::CrashAfter);
//! assert_eq!(faults.rules().len(), 1);
//! ```

use std::fmt;
use std::time::Duration;

use rdkafka::types::RDKafkaErrorCode;

use crate::history::InstanceId;
use crate::record::RecordPosition;

/// An interception point: a kind of operation a consumer instance performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `recv` handing a record to the application. The record is the one being delivered.
    Recv,
    /// `commit_message`. The record is the message being committed.
    CommitMessage,
    /// `store_offset_from_message` / `store_offset`. The record is the one whose offset is stored.
    StoreOffset,
    /// `commit` / `commit_consumer_state`. The record is the last one the instance received.
    Commit,
    /// librdkafka's periodic auto-commit. The record is the last one the instance received.
    AutoCommit,
    /// A producer `send`. The record is the last one the instance received (the input being
    /// processed), not the record being produced.
    Send,
    /// An effect-sink call. The record is the last one the instance received.
    Effect,
    /// A durable-store transaction commit. The record is the last one the instance received.
    StoreCommit,
    /// A transactional producer's `init_transactions`. The record is the last one the
    /// instance received (none at startup).
    InitTransactions,
    /// `begin_transaction`. The record is the last one the instance received.
    BeginTransaction,
    /// `send_offsets_to_transaction`. The record is the last one the instance received.
    SendOffsetsToTransaction,
    /// `commit_transaction`. A failure is librdkafka's abortable timeout; an ambiguous one
    /// commits and still returns it. The record is the last one the instance received.
    CommitTransaction,
    /// `abort_transaction`. The record is the last one the instance received.
    AbortTransaction,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 13] = [
        Operation::Recv,
        Operation::CommitMessage,
        Operation::StoreOffset,
        Operation::Commit,
        Operation::AutoCommit,
        Operation::Send,
        Operation::Effect,
        Operation::StoreCommit,
        Operation::InitTransactions,
        Operation::BeginTransaction,
        Operation::SendOffsetsToTransaction,
        Operation::CommitTransaction,
        Operation::AbortTransaction,
    ];

    /// Whether `fault` means something on this operation.
    ///
    /// Delays (`Stall`, `Freeze`) need an asynchronous call to wait in; `Ambiguous` needs an
    /// operation that can be applied while its caller is told it failed; `LoseAck` needs a
    /// producer; of the transactional calls only `commit_transaction` can fail (crashes
    /// around the others are supported); a broker restart needs a request to the broker
    /// that the application makes itself (`recv`, an explicit commit, `send`).
    pub fn supports(self, fault: Fault) -> bool {
        use Operation::*;
        match fault {
            Fault::CrashBefore | Fault::CrashAfter => true,
            Fault::Fail => !matches!(
                self,
                InitTransactions | BeginTransaction | SendOffsetsToTransaction | AbortTransaction
            ),
            Fault::Ambiguous => matches!(
                self,
                CommitMessage
                    | Commit
                    | AutoCommit
                    | Send
                    | Effect
                    | StoreCommit
                    | CommitTransaction
            ),
            Fault::LoseAck => self == Send,
            Fault::Stall(_) | Fault::Freeze(_) => matches!(self, Recv | Send | Effect),
            Fault::BrokerRestart(_) => matches!(self, Recv | CommitMessage | Commit | Send),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Recv => "recv",
            Operation::CommitMessage => "commit_message",
            Operation::StoreOffset => "store_offset",
            Operation::Commit => "commit",
            Operation::AutoCommit => "auto-commit",
            Operation::Send => "send",
            Operation::Effect => "effect",
            Operation::StoreCommit => "store commit",
            Operation::InitTransactions => "init_transactions",
            Operation::BeginTransaction => "begin_transaction",
            Operation::SendOffsetsToTransaction => "send_offsets_to_transaction",
            Operation::CommitTransaction => "commit_transaction",
            Operation::AbortTransaction => "abort_transaction",
        })
    }
}

/// The error an offset commit failed by [`Fault::Fail`] returns: the broker refused it
/// because the group is rebalancing. Measured on librdkafka's mock cluster
/// (`tests/brokers/commit_errors.rs`): librdkafka hands this error to the application at once,
/// while it retries a commit refused with `COORDINATOR_NOT_AVAILABLE`, `NOT_COORDINATOR`,
/// `COORDINATOR_LOAD_IN_PROGRESS` or `REQUEST_TIMED_OUT` until it goes through, so those never
/// reach a synchronous commit's caller.
pub(crate) const COMMIT_FAILED: RDKafkaErrorCode = RDKafkaErrorCode::RebalanceInProgress;

/// The error an offset commit made ambiguous by [`Fault::Ambiguous`] returns although it was
/// applied: librdkafka's own timeout (`Local: Timed out`), which it reports once its retries
/// of a request whose responses never came in time are used up (measured on the mock
/// cluster: the offset was committed all the same).
pub(crate) const COMMIT_TIMED_OUT: RDKafkaErrorCode = RDKafkaErrorCode::OperationTimedOut;

/// What happens at an interception point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The instance crashes before the operation takes effect. Nothing more is sent: no
    /// LeaveGroup, no final commit; the group notices after `session.timeout.ms`.
    CrashBefore,
    /// The operation takes effect, then the instance crashes before the caller sees the result.
    CrashAfter,
    /// The operation does not take effect and the caller gets an error (a definite failure).
    Fail,
    /// The operation takes effect but the caller gets an error (a timeout after the work was
    /// done): commit applied but reported failed, effect performed but reported failed.
    Ambiguous,
    /// A produce request is appended but its acknowledgement is lost, so librdkafka retries
    /// it: without `enable.idempotence` the retry appends a duplicate; with it the broker
    /// drops the duplicate. The application sees success.
    LoseAck,
    /// The call takes this long (virtual time) while the process stays alive and keeps
    /// heartbeating: a slow effect can breach `max.poll.interval.ms`.
    Stall(Duration),
    /// The whole process freezes for this long (a GC pause, SIGSTOP): heartbeats stop too,
    /// so the member can be removed after `session.timeout.ms`.
    Freeze(Duration),
    /// The broker restarts just before this request reaches it and is unreachable for this
    /// long; its log, committed offsets, groups and transactions survive (durable storage).
    /// Every consumer's next `recv` returns a transport error (librdkafka reports the lost
    /// connections through the poll); a `recv` anchored here hands out nothing; fetches,
    /// produce requests and rebalances wait for the broker; a synchronous commit blocks and
    /// succeeds when it is back, unless the outage outlasts the member's
    /// `session.timeout.ms`: then the member's session is lost (its partitions are revoked as
    /// lost, it rejoins) and the commit fails with `WaitingForCoordinator`.
    BrokerRestart(Duration),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::CrashBefore => f.write_str("crash before"),
            Fault::CrashAfter => f.write_str("crash after"),
            Fault::Fail => f.write_str("fail"),
            Fault::Ambiguous => f.write_str("applied but reported failed"),
            Fault::LoseAck => f.write_str("lose the ack"),
            Fault::Stall(d) => write!(f, "stall {}", human_duration(*d)),
            Fault::Freeze(d) => write!(f, "freeze the process {}", human_duration(*d)),
            Fault::BrokerRestart(d) => {
                write!(f, "restart the broker (down {})", human_duration(*d))
            }
        }
    }
}

/// `25h`, `60s`, `1500ms`: the largest whole unit.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms > 0 && ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms > 0 && ms % 60_000 == 0 && ms < 3_600_000 {
        format!("{}min", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Where a fault fires: the `occurrence`-th time an operation matching the filters happens.
///
/// Occurrences count across instances and incarnations, from 1.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Anchor {
    operation: Operation,
    topic: Option<String>,
    partition: Option<i32>,
    offset: Option<i64>,
    instance: Option<InstanceId>,
    occurrence: u32,
}

impl Anchor {
    /// The first occurrence of `operation`, on any record and instance.
    pub fn on(operation: Operation) -> Self {
        Anchor {
            operation,
            topic: None,
            partition: None,
            offset: None,
            instance: None,
            occurrence: 1,
        }
    }

    /// Only when the operation concerns the record at `offset` of `partition` (in any topic
    /// unless [`topic`](Self::topic) narrows it). See [`Operation`] for which record each
    /// operation concerns.
    pub fn record(mut self, partition: i32, offset: i64) -> Self {
        self.partition = Some(partition);
        self.offset = Some(offset);
        self
    }

    /// Only when the operation concerns a record of `partition`.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Only when the operation concerns a record of `topic`.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Only on this instance (any incarnation).
    pub fn instance(mut self, instance: InstanceId) -> Self {
        self.instance = Some(instance);
        self
    }

    /// Fire on the `n`-th matching occurrence instead of the first (`n` counts from 1).
    pub fn occurrence(mut self, n: u32) -> Self {
        self.occurrence = n;
        self
    }

    /// The operation this anchor waits for.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    fn matches(
        &self,
        operation: Operation,
        instance: InstanceId,
        record: Option<&RecordPosition>,
    ) -> bool {
        if operation != self.operation || self.instance.is_some_and(|i| i != instance) {
            return false;
        }
        let wants_record =
            self.topic.is_some() || self.partition.is_some() || self.offset.is_some();
        if !wants_record {
            return true;
        }
        let Some(record) = record else {
            return false;
        };
        self.topic.as_ref().is_none_or(|t| *t == record.topic)
            && self.partition.is_none_or(|p| p == record.partition)
            && self.offset.is_none_or(|o| o == record.offset)
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.operation)?;
        match (&self.topic, self.partition, self.offset) {
            (None, None, None) => {}
            (topic, partition, offset) => {
                f.write_str(" on ")?;
                f.write_str(topic.as_deref().unwrap_or("*"))?;
                match partition {
                    Some(p) => write!(f, "[{p}]")?,
                    None => f.write_str("[*]")?,
                }
                if let Some(o) = offset {
                    write!(f, "@{o}")?;
                }
            }
        }
        if let Some(i) = self.instance {
            write!(f, " in {i}")?;
        }
        if self.occurrence != 1 {
            write!(f, " (occurrence {})", self.occurrence)?;
        }
        Ok(())
    }
}

/// One entry of a schedule: inject `fault` when `anchor` is reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FaultRule {
    /// Where.
    pub anchor: Anchor,
    /// What.
    pub fault: Fault,
}

/// A schedule that makes no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultError {
    /// The fault cannot happen on that operation (see [`Operation::supports`]).
    #[error("fault rule {index} ({anchor}): `{fault}` cannot happen on {operation}")]
    Unsupported {
        /// The rule's index in the schedule.
        index: usize,
        /// The rule's anchor.
        anchor: String,
        /// The fault.
        fault: Fault,
        /// The operation.
        operation: Operation,
    },
    /// Occurrences count from 1.
    #[error("fault rule {index} ({anchor}): occurrence must be at least 1")]
    ZeroOccurrence {
        /// The rule's index in the schedule.
        index: usize,
        /// The rule's anchor.
        anchor: String,
    },
}

/// The faults of one run, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FaultSchedule {
    rules: Vec<FaultRule>,
}

impl FaultSchedule {
    /// No faults.
    pub fn new() -> Self {
        FaultSchedule::default()
    }

    /// This schedule plus one rule.
    pub fn with(mut self, anchor: Anchor, fault: Fault) -> Self {
        self.push(anchor, fault);
        self
    }

    /// Adds a rule.
    pub fn push(&mut self, anchor: Anchor, fault: Fault) -> &mut Self {
        self.rules.push(FaultRule { anchor, fault });
        self
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    /// Checks that every rule can fire.
    pub fn validate(&self) -> Result<(), FaultError> {
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.anchor.occurrence == 0 {
                return Err(FaultError::ZeroOccurrence {
                    index,
                    anchor: rule.anchor.to_string(),
                });
            }
            if !rule.anchor.operation.supports(rule.fault) {
                return Err(FaultError::Unsupported {
                    index,
                    anchor: rule.anchor.to_string(),
                    fault: rule.fault,
                    operation: rule.anchor.operation,
                });
            }
        }
        Ok(())
    }
}

/// What the faults that fired on one operation call ask for, in the order they apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Injection {
    pub stall: Option<Duration>,
    pub freeze: Option<Duration>,
    pub crash_before: bool,
    pub fail: bool,
    pub ambiguous: bool,
    pub lose_ack: bool,
    pub crash_after: bool,
    /// The broker restarts before the request reaches it, down this long.
    pub broker_restart: Option<Duration>,
}

/// A schedule being executed: counts each rule's matches and says which fire.
#[derive(Clone, Debug, Default)]
pub(crate) struct FaultPlan {
    rules: Vec<FaultRule>,
    seen: Vec<u32>,
}

impl FaultPlan {
    pub(crate) fn new(schedule: &FaultSchedule) -> Self {
        FaultPlan {
            rules: schedule.rules.clone(),
            seen: vec![0; schedule.rules.len()],
        }
    }

    /// Counts one call of `operation` and returns the faults that fire on it.
    pub(crate) fn intercept(
        &mut self,
        operation: Operation,
        instance: InstanceId,
        record: Option<&RecordPosition>,
    ) -> Vec<Fault> {
        let mut fired = Vec::new();
        for (rule, seen) in self.rules.iter().zip(self.seen.iter_mut()) {
            if rule.anchor.matches(operation, instance, record) {
                *seen += 1;
                if *seen == rule.anchor.occurrence {
                    fired.push(rule.fault);
                }
            }
        }
        fired
    }

    /// Rules whose anchor was never reached: faults that did not fire.
    pub(crate) fn unfired(&self) -> Vec<FaultRule> {
        self.rules
            .iter()
            .zip(&self.seen)
            .filter(|(rule, seen)| **seen < rule.anchor.occurrence)
            .map(|(rule, _)| rule.clone())
            .collect()
    }
}

/// Folds fired faults into one [`Injection`].
pub(crate) fn injection(faults: &[Fault]) -> Injection {
    let mut inj = Injection::default();
    for fault in faults {
        match *fault {
            Fault::CrashBefore => inj.crash_before = true,
            Fault::CrashAfter => inj.crash_after = true,
            Fault::Fail => inj.fail = true,
            Fault::Ambiguous => inj.ambiguous = true,
            Fault::LoseAck => inj.lose_ack = true,
            Fault::Stall(d) => inj.stall = Some(inj.stall.unwrap_or_default() + d),
            Fault::Freeze(d) => inj.freeze = Some(inj.freeze.unwrap_or_default() + d),
            Fault::BrokerRestart(d) => {
                inj.broker_restart = Some(inj.broker_restart.unwrap_or_default().max(d))
            }
        }
    }
    inj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(p: i32, o: i64) -> RecordPosition {
        RecordPosition {
            topic: "t".into(),
            partition: p,
            offset: o,
        }
    }

    #[test]
    fn anchors_fire_on_their_nth_match_only() {
        let schedule = FaultSchedule::new()
            .with(
                Anchor::on(Operation::Effect).record(0, 3).occurrence(2),
                Fault::CrashBefore,
            )
            .with(Anchor::on(Operation::Recv), Fault::Fail);
        let mut plan = FaultPlan::new(&schedule);
        let i0 = InstanceId(0);
        assert_eq!(
            plan.intercept(Operation::Recv, i0, Some(&pos(0, 0))),
            vec![Fault::Fail]
        );
        assert!(
            plan.intercept(Operation::Recv, i0, Some(&pos(0, 1)))
                .is_empty()
        );
        assert!(
            plan.intercept(Operation::Effect, i0, Some(&pos(0, 2)))
                .is_empty()
        );
        assert!(
            plan.intercept(Operation::Effect, i0, Some(&pos(0, 3)))
                .is_empty()
        );
        assert_eq!(plan.unfired().len(), 1);
        assert_eq!(
            plan.intercept(Operation::Effect, InstanceId(1), Some(&pos(0, 3))),
            vec![Fault::CrashBefore]
        );
        assert!(plan.unfired().is_empty());
        assert!(
            plan.intercept(Operation::Effect, i0, Some(&pos(0, 3)))
                .is_empty()
        );
    }

    #[test]
    fn record_filters_need_a_record() {
        let schedule =
            FaultSchedule::new().with(Anchor::on(Operation::Commit).partition(1), Fault::Fail);
        let mut plan = FaultPlan::new(&schedule);
        assert!(
            plan.intercept(Operation::Commit, InstanceId(0), None)
                .is_empty()
        );
        assert!(
            plan.intercept(Operation::Commit, InstanceId(0), Some(&pos(0, 9)))
                .is_empty()
        );
        assert_eq!(
            plan.intercept(Operation::Commit, InstanceId(0), Some(&pos(1, 9))),
            vec![Fault::Fail]
        );
    }

    #[test]
    fn nonsense_schedules_are_rejected() {
        let stall_commit = FaultSchedule::new().with(
            Anchor::on(Operation::CommitMessage),
            Fault::Stall(Duration::from_secs(1)),
        );
        let err = stall_commit.validate().unwrap_err();
        assert!(
            err.to_string().contains("cannot happen on commit_message"),
            "{err}"
        );
        let zero =
            FaultSchedule::new().with(Anchor::on(Operation::Recv).occurrence(0), Fault::Fail);
        assert!(matches!(
            zero.validate(),
            Err(FaultError::ZeroOccurrence { .. })
        ));
        let lose_ack_effect =
            FaultSchedule::new().with(Anchor::on(Operation::Effect), Fault::LoseAck);
        assert!(lose_ack_effect.validate().is_err());
        for op in Operation::ALL {
            assert!(op.supports(Fault::CrashBefore) && op.supports(Fault::CrashAfter));
        }
        // A broker restart needs a request the application makes to the broker.
        let restart = Fault::BrokerRestart(Duration::from_millis(500));
        let on_effect = FaultSchedule::new().with(Anchor::on(Operation::Effect), restart);
        assert!(on_effect.validate().is_err());
        let on_auto_commit = FaultSchedule::new().with(Anchor::on(Operation::AutoCommit), restart);
        assert!(on_auto_commit.validate().is_err());
        let on_commit = FaultSchedule::new().with(Anchor::on(Operation::Commit), restart);
        assert!(on_commit.validate().is_ok());
    }
}
