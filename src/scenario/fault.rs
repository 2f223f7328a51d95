//! Fault schedules: which failure fires at which interception point (data; a run executes
//! them with its fault plan).
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

use crate::history::{Fault, InstanceId, Operation, RecordPosition};

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
    input: Option<usize>,
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
            input: None,
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

    /// Only when the operation concerns the `index`-th input record of the run (counting from
    /// 0, in the order the records were given to
    /// [`SimulationBuilder::produce`](crate::SimulationBuilder::produce) and `produce_at`),
    /// wherever the run puts it: the anchor is resolved when the record is written, so a
    /// schedule need not predict partitions or offsets.
    pub fn input(mut self, index: usize) -> Self {
        self.input = Some(index);
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

    /// The input record the anchor is narrowed to ([`input`](Self::input)), if it is.
    pub fn input_record(&self) -> Option<usize> {
        self.input
    }

    /// Which matching occurrence fires (from 1).
    pub fn occurrence_number(&self) -> u32 {
        self.occurrence
    }

    /// Whether a call of `operation` by `instance` on `record` matches the anchor's operation,
    /// instance and record filters (an [`input`](Self::input) filter is resolved by whoever
    /// knows where the input landed).
    pub(crate) fn matches(
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
        if let Some(i) = self.input {
            write!(f, " on input record {i}")?;
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
    pub(crate) rules: Vec<FaultRule>,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
