//! A fault schedule being executed: which faults fire on each intercepted call, with input
//! anchors resolved as the run writes its input, and the errors injected faults produce.

use std::time::Duration;

use rdkafka::types::RDKafkaErrorCode;

use crate::history::{Fault, InstanceId, Operation, RecordPosition};
use crate::scenario::{FaultRule, FaultSchedule};

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
    /// Where each input record landed, by its index.
    inputs: Vec<Option<RecordPosition>>,
}

impl FaultPlan {
    pub(crate) fn new(schedule: &FaultSchedule) -> Self {
        FaultPlan {
            rules: schedule.rules().to_vec(),
            seen: vec![0; schedule.rules().len()],
            inputs: Vec::new(),
        }
    }

    /// Makes room for `count` input records, none of them written yet.
    pub(crate) fn expect_inputs(&mut self, count: usize) {
        self.inputs = vec![None; count];
    }

    /// Notes where input record `index` landed: anchors on it match that position from now on.
    pub(crate) fn input_landed(&mut self, index: usize, position: RecordPosition) {
        if self.inputs.len() <= index {
            self.inputs.resize(index + 1, None);
        }
        self.inputs[index] = Some(position);
    }

    /// Where each input record landed, in input order, `None` for one never written (taken
    /// out of the plan).
    pub(crate) fn take_inputs(&mut self) -> Vec<Option<RecordPosition>> {
        std::mem::take(&mut self.inputs)
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
            let on_input = rule.anchor.input_record().is_none_or(|index| {
                record.is_some_and(|r| self.inputs.get(index).and_then(Option::as_ref) == Some(r))
            });
            if on_input && rule.anchor.matches(operation, instance, record) {
                *seen += 1;
                if *seen == rule.anchor.occurrence_number() {
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
            .filter(|(rule, seen)| **seen < rule.anchor.occurrence_number())
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
    use crate::scenario::Anchor;

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
}
