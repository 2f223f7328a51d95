//! Shrinking past proptest: removals proptest cannot make one value at a time, faults turned
//! into crashes, fewer instances, superfluous events.

use std::future::Future;
use std::sync::Arc;

use super::judge::run_scenario;
use super::{CheckError, Verifier};
use crate::error::Error;
use crate::history::Fault;
use crate::invariant::Semantics;
use crate::run::{InstanceContext, InstanceExit};
use crate::scenario::Scenario;

/// Shrinks further where proptest, which changes one value at a time, stops: a fault that
/// shifts the occurrence count of a later one can only go together with that shift. A failed
/// store commit makes the retry the second commit ([`Scenario::without_fault`]); a crash
/// makes every operation on the redelivered event happen a second time
/// ([`Scenario::without_fault_and_its_redelivery`]). Keeps every removal after which the
/// scenario still fails.
pub(crate) fn merge_faults(
    mut scenario: Scenario,
    mut still_fails: impl FnMut(&Scenario) -> Result<bool, Error>,
) -> Result<Scenario, CheckError> {
    'search: loop {
        for index in 0..scenario.faults.len() {
            let removed = &scenario.faults[index];
            let mut candidates = Vec::new();
            let shifted = scenario.without_fault(index);
            let redelivered = scenario.without_fault_and_its_redelivery(index);
            if redelivered.faults != shifted.faults {
                candidates.push(redelivered);
            }
            // A plain removal proptest has tried already.
            if scenario.faults.iter().any(|f| f.falls_after(removed)) {
                candidates.insert(0, shifted);
            }
            for candidate in candidates {
                if still_fails(&candidate)? {
                    scenario = candidate;
                    continue 'search;
                }
            }
        }
        return Ok(scenario);
    }
}

/// The names of the invariants `scenario` breaks, in order.
pub(crate) fn broken_invariants<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    factory: &Arc<F>,
    scenario: &Scenario,
) -> Result<Vec<String>, Error>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let factory = factory.clone();
    let run = run_scenario(semantics, verifier, scenario, move |ctx| factory(ctx))?;
    Ok(run.violations.into_iter().map(|v| v.invariant).collect())
}

/// Replaces each fault by a crash at the same point, after or before the operation, where the
/// scenario still breaks the same invariants: a crash is the easiest failure to read, and
/// one every broker can replay (a process freeze none can, a broker restart only the brokers
/// the kit starts). proptest never tries it: it shrinks a fault within its kind.
pub(crate) fn simplify_faults(
    mut scenario: Scenario,
    mut breaks_the_same: impl FnMut(&Scenario) -> Result<bool, Error>,
) -> Result<Scenario, CheckError> {
    for index in 0..scenario.faults.len() {
        if matches!(
            scenario.faults[index].fault,
            Fault::CrashAfter | Fault::CrashBefore
        ) {
            continue;
        }
        for crash in [Fault::CrashAfter, Fault::CrashBefore] {
            let mut candidate = scenario.clone();
            candidate.faults[index].fault = crash;
            if breaks_the_same(&candidate)? {
                scenario = candidate;
                break;
            }
        }
    }
    Ok(scenario)
}

/// Removes consumer instances the failure does not need (a simpler fault may need fewer:
/// another instance took over from a frozen one, a crashed one restarts by itself).
pub(crate) fn fewer_instances(
    mut scenario: Scenario,
    mut breaks_the_same: impl FnMut(&Scenario) -> Result<bool, Error>,
) -> Result<Scenario, CheckError> {
    while scenario.instances > 1 && scenario.late_joins.is_empty() {
        let mut candidate = scenario.clone();
        candidate.instances -= 1;
        if !breaks_the_same(&candidate)? {
            break;
        }
        scenario = candidate;
    }
    Ok(scenario)
}

/// Removes the events the failure does not need. proptest deletes events only before it
/// shrinks the faults, so an event that became superfluous later stays; this pass tries each
/// removal again (events with a fault anchored on them stay).
pub(crate) fn drop_events(
    mut scenario: Scenario,
    mut still_fails: impl FnMut(&Scenario) -> Result<bool, Error>,
) -> Result<Scenario, CheckError> {
    let mut index = 0;
    while index < scenario.events.len() {
        match scenario.without_event(index) {
            Some(candidate) if still_fails(&candidate)? => scenario = candidate,
            _ => index += 1,
        }
    }
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Operation;
    use crate::scenario::ScenarioFault;

    #[test]
    fn merging_removes_a_fault_together_with_the_occurrence_shift_it_caused() {
        let fault = |occurrence, fault| ScenarioFault {
            event: 0,
            operation: Operation::StoreCommit,
            occurrence,
            fault,
        };
        let scenario = Scenario {
            seed: 0,
            partitions: 1,
            instances: 1,
            late_joins: Vec::new(),
            events: Vec::new(),
            faults: vec![fault(2, Fault::CrashAfter), fault(1, Fault::Fail)],
        };
        // Fails whenever the first store commit is followed by a crash.
        let mut tried = Vec::new();
        let merged = merge_faults(scenario, |s| {
            tried.push(s.faults.len());
            Ok(s.faults.contains(&fault(1, Fault::CrashAfter)))
        })
        .unwrap();
        assert_eq!(merged.faults, vec![fault(1, Fault::CrashAfter)]);
        assert_eq!(tried, vec![1], "the plain removal is proptest's to try");
    }

    #[test]
    fn simplifying_turns_faults_into_crashes_where_the_failure_stays_and_drops_instances() {
        let fault = |operation, fault| ScenarioFault {
            event: 0,
            operation,
            occurrence: 1,
            fault,
        };
        let freeze = Fault::Freeze(std::time::Duration::from_secs(60));
        let scenario = Scenario {
            seed: 0,
            partitions: 1,
            instances: 3,
            late_joins: Vec::new(),
            events: Vec::new(),
            faults: vec![
                fault(Operation::Effect, freeze),
                fault(Operation::Send, Fault::LoseAck),
            ],
        };
        // The failure needs something to happen before the effect's completion (a crash
        // before it does), the lost ack on the send, and two instances.
        let breaks = |s: &Scenario| {
            let first = s.faults[0].fault;
            Ok(s.instances >= 2
                && (first == freeze || first == Fault::CrashBefore)
                && s.faults[1].fault == Fault::LoseAck)
        };
        let simplified = simplify_faults(scenario, breaks).unwrap();
        assert_eq!(
            simplified.faults,
            vec![
                fault(Operation::Effect, Fault::CrashBefore),
                fault(Operation::Send, Fault::LoseAck)
            ]
        );
        assert_eq!(fewer_instances(simplified, breaks).unwrap().instances, 2);
    }
}
