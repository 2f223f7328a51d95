//! Shrinking past proptest: removals proptest cannot make one value at a time, faults turned
//! into crashes, fewer instances, superfluous events, and every fault or event (alone or in
//! pairs) the failure does not need.

use super::CheckError;
use crate::error::Error;
use crate::history::Fault;
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

/// Something a scenario can do without: one of its faults, or one of its events (with the
/// faults anchored on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Fault(usize),
    Event(usize),
}

/// The scenario without `parts`, each removed fault moving the faults its removal shifts
/// (`shift`: see [`Scenario::without_fault`]) one occurrence earlier.
fn without(
    scenario: &Scenario,
    parts: &[Part],
    shift: fn(&Scenario, usize) -> Scenario,
) -> Scenario {
    let mut faults: Vec<usize> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Fault(i) => Some(*i),
            Part::Event(_) => None,
        })
        .collect();
    let mut events: Vec<usize> = parts
        .iter()
        .filter_map(|p| match p {
            Part::Event(i) => Some(*i),
            Part::Fault(_) => None,
        })
        .collect();
    // From the last, so that the indices still to remove stay valid.
    faults.sort_unstable_by(|a, b| b.cmp(a));
    events.sort_unstable_by(|a, b| b.cmp(a));
    let mut candidate = scenario.clone();
    for index in faults {
        candidate = shift(&candidate, index);
    }
    for index in events {
        candidate.faults.retain(|f| f.event != index);
        if let Some(without) = candidate.without_event(index) {
            candidate = without;
        }
    }
    candidate
}

/// The last pass: the scenario is minimal when no single fault or event (with the faults
/// anchored on it) can be removed and no pair of them can. Tries each removal alone, then
/// each pair, and starts over after every removal that keeps the scenario failing, until
/// none does. A removed fault is tried plainly and with the later faults its removal shifts
/// moved one occurrence earlier (on its own anchor, and on its event's redelivery).
pub(crate) fn remove_superfluous(
    mut scenario: Scenario,
    mut still_fails: impl FnMut(&Scenario) -> Result<bool, Error>,
) -> Result<Scenario, CheckError> {
    fn plain(scenario: &Scenario, index: usize) -> Scenario {
        let mut candidate = scenario.clone();
        candidate.faults.remove(index);
        candidate
    }
    let shifts: [fn(&Scenario, usize) -> Scenario; 3] = [
        plain,
        Scenario::without_fault,
        Scenario::without_fault_and_its_redelivery,
    ];
    'search: loop {
        let parts: Vec<Part> = (0..scenario.faults.len())
            .map(Part::Fault)
            .chain((0..scenario.events.len()).map(Part::Event))
            .collect();
        let singles = parts.iter().map(|p| vec![*p]);
        let pairs = parts
            .iter()
            .enumerate()
            .flat_map(|(i, a)| parts[i + 1..].iter().map(move |b| vec![*a, *b]));
        for removed in singles.chain(pairs) {
            let mut tried: Vec<Scenario> = Vec::new();
            for shift in shifts {
                let candidate = without(&scenario, &removed, shift);
                if tried.contains(&candidate) {
                    continue;
                }
                if still_fails(&candidate)? {
                    scenario = candidate;
                    continue 'search;
                }
                tried.push(candidate);
            }
        }
        return Ok(scenario);
    }
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

    fn scenario(events: usize, faults: Vec<ScenarioFault>) -> Scenario {
        Scenario {
            seed: 0,
            partitions: 1,
            instances: 1,
            late_joins: Vec::new(),
            events: (0..events)
                .map(|n| crate::scenario::tests::event(n, "k"))
                .collect(),
            faults,
        }
    }

    fn crash(event: usize, operation: Operation) -> ScenarioFault {
        ScenarioFault {
            event,
            operation,
            occurrence: 1,
            fault: Fault::CrashAfter,
        }
    }

    fn ids(s: &Scenario) -> Vec<&str> {
        s.events.iter().map(|e| e.event.event_id.as_str()).collect()
    }

    #[test]
    fn a_fault_the_failure_does_not_need_is_removed_where_the_earlier_passes_kept_it() {
        let recv = crash(0, Operation::Recv);
        let effect = crash(0, Operation::Effect);
        let two = scenario(1, vec![recv, effect.clone()]);
        let fails = |s: &Scenario| Ok(s.faults.contains(&effect));
        // The passes before stop at two faults...
        let kept = drop_events(merge_faults(two, fails).unwrap(), fails).unwrap();
        assert_eq!(kept.faults.len(), 2);
        // ...the last one removes each fault alone.
        let minimal = remove_superfluous(kept, fails).unwrap();
        assert_eq!(minimal.faults, vec![effect]);
    }

    #[test]
    fn faults_and_events_that_go_only_in_pairs_are_removed_in_pairs() {
        let (a, b, c) = (
            crash(0, Operation::Recv),
            crash(0, Operation::Effect),
            crash(0, Operation::Commit),
        );
        // Fails with all three faults or with `c` alone: no single removal keeps it failing.
        let three = scenario(1, vec![a.clone(), b.clone(), c.clone()]);
        let fails = |s: &Scenario| {
            Ok(s.faults == [a.clone(), b.clone(), c.clone()] || s.faults == [c.clone()])
        };
        assert_eq!(remove_superfluous(three, fails).unwrap().faults, vec![c]);
        // Fails with three events or one, as long as evt-1 and its fault are there.
        let events = scenario(3, vec![crash(1, Operation::Effect)]);
        let fails = |s: &Scenario| {
            Ok((s.events.len() == 3 || s.events.len() == 1)
                && ids(s).contains(&"evt-1")
                && !s.faults.is_empty())
        };
        let minimal = remove_superfluous(events, fails).unwrap();
        assert_eq!(ids(&minimal), ["evt-1"]);
        assert_eq!(minimal.faults, vec![crash(0, Operation::Effect)]);
        // An event goes together with the faults anchored on it.
        let anchored = scenario(3, vec![crash(1, Operation::Effect)]);
        let fails = |s: &Scenario| Ok(ids(s).contains(&"evt-2"));
        let minimal = remove_superfluous(anchored, fails).unwrap();
        assert_eq!((ids(&minimal), minimal.faults.len()), (vec!["evt-2"], 0));
    }
}
