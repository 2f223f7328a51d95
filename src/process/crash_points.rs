//! Search fit for slow runs: crash-point enumeration. A real run takes seconds, so instead of
//! hundreds of random scenarios, a fault-free pilot run records the interception points the
//! consumer passed (each effect call, each offset commit), and then one run per point and
//! fault kind fires that one fault there. Runs go on several threads at once, each on its own
//! broker.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(test)]
use super::Ending;
use super::{BlackBoxCase, BlackBoxOutcome, EffectFaults, ProcessError, WireEvent};
use super::{WireFaults, run_black_box};
use crate::history::Fault;

/// Where one fault fires.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CrashPoint {
    /// The `call`-th effect call for `event_id` (1 for its first).
    Effect { event_id: String, call: u32 },
    /// The `request`-th request of `api` on the wire, from any instance.
    Wire { api: String, request: u32 },
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashPoint::Effect { event_id, call } => write!(f, "effect call {call} of {event_id}"),
            CrashPoint::Wire { api, request } => write!(f, "{api} request {request}"),
        }
    }
}

/// The requests on the wire whose faults are worth a run: the ones that move a consumer's
/// progress (fetches are many and their loss is only a delay).
const WIRE_POINTS: &[&str] = &["OffsetCommit", "TxnOffsetCommit", "EndTxn"];

/// The faults tried at an effect call and at a request.
const EFFECT_FAULTS: &[Fault] = &[
    Fault::CrashBefore,
    Fault::CrashAfter,
    Fault::Fail,
    Fault::Ambiguous,
];
const WIRE_FAULTS: &[Fault] = &[Fault::CrashBefore, Fault::CrashAfter, Fault::Ambiguous];
/// An offset commit can also be refused (the wire proxy answers for the broker).
const COMMIT_FAULTS: &[Fault] = &[
    Fault::CrashBefore,
    Fault::CrashAfter,
    Fault::Fail,
    Fault::Ambiguous,
];

/// The interception points of `pilot`, in the order it passed them.
pub(crate) fn crash_points(pilot: &BlackBoxOutcome) -> Vec<CrashPoint> {
    let mut calls: BTreeMap<&str, u32> = BTreeMap::new();
    let mut points: Vec<CrashPoint> = Vec::new();
    for a in &pilot.attempts {
        let n = calls.entry(a.event_id.as_str()).or_insert(0);
        *n += 1;
        points.push(CrashPoint::Effect {
            event_id: a.event_id.clone(),
            call: *n,
        });
    }
    let mut requests: BTreeMap<&str, u32> = BTreeMap::new();
    for e in &pilot.wire {
        if let WireEvent::Request { api, .. } = e
            && WIRE_POINTS.contains(&api.as_str())
        {
            let n = requests.entry(api.as_str()).or_insert(0);
            *n += 1;
            points.push(CrashPoint::Wire {
                api: api.clone(),
                request: *n,
            });
        }
    }
    points
}

/// One run of the enumeration: the fault, and what the run found.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub point: CrashPoint,
    pub fault: Fault,
    pub outcome: BlackBoxOutcome,
}

#[cfg(test)]
impl Probe {
    /// Each event's effective effects.
    pub(crate) fn effective(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for a in &self.outcome.attempts {
            if a.outcome.took_effect() {
                *counts.entry(a.event_id.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Events of `case` whose effect never happened, once the group caught up.
    pub(crate) fn lost(&self, case: &BlackBoxCase) -> Vec<String> {
        if self.outcome.ending != Ending::CaughtUp {
            return Vec::new();
        }
        let effective = self.effective();
        case.events
            .iter()
            .filter(|e| !effective.contains_key(&e.event_id))
            .map(|e| e.event_id.clone())
            .collect()
    }

    /// Events whose effect happened more than once, with how often.
    pub(crate) fn duplicated(&self) -> Vec<(String, usize)> {
        self.effective()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .collect()
    }
}

/// A fresh broker for one run, on the run's thread: something that keeps it alive, and its
/// bootstrap address.
pub(crate) type FreshBroker<'a, B> = dyn Fn() -> Result<(B, String), ProcessError> + Sync + 'a;

/// The pilot run of `case`: without faults, on a fresh broker.
pub(crate) fn pilot<B>(
    case: &BlackBoxCase,
    broker: &FreshBroker<'_, B>,
) -> Result<BlackBoxOutcome, ProcessError> {
    let (_broker, bootstrap) = broker()?;
    let mut case = with_ledger(case, "pilot");
    case.effect_faults.clear();
    case.wire_faults.clear();
    run_black_box(&case, &bootstrap)
}

/// Whether a run broke what is checked: `case` ran and ended as the outcome says.
pub(crate) type Fails<'a> = dyn Fn(&BlackBoxCase, &BlackBoxOutcome) -> bool + Sync + 'a;

/// One run per crash point of `pilot` and fault kind, `at_once` runs at a time, each on a
/// fresh broker, in the order of the points, until the first run that `fails` (in that
/// order: every earlier run finished and passed): the runs made up to it, that one last.
pub(crate) fn probes<B>(
    case: &BlackBoxCase,
    pilot: &BlackBoxOutcome,
    broker: &FreshBroker<'_, B>,
    at_once: usize,
    fails: &Fails<'_>,
) -> Result<Vec<Probe>, ProcessError> {
    let mut plans: Vec<(CrashPoint, Fault)> = Vec::new();
    for point in crash_points(pilot) {
        let kinds = match &point {
            CrashPoint::Effect { .. } => EFFECT_FAULTS,
            CrashPoint::Wire { api, .. } if api == "OffsetCommit" => COMMIT_FAULTS,
            CrashPoint::Wire { .. } => WIRE_FAULTS,
        };
        plans.extend(kinds.iter().map(|k| (point.clone(), *k)));
    }
    in_order_until(
        &plans,
        at_once,
        |i, (point, fault)| probe(case, broker, &format!("probe-{i}"), point, *fault),
        |_, p| fails(case, &p.outcome),
    )
    .into_iter()
    .collect()
}

/// Runs `run` on `items`, `at_once` at a time, taken in order, until one gives an error or a
/// result that `stops` (given the item's index): the results of every item up to and including the first such one in
/// the items' order (none of them is left out; the ones after it are not started or, if
/// already running, their results dropped). Without such an item, every result.
pub(super) fn in_order_until<T: Sync, R: Send, E: Send>(
    items: &[T],
    at_once: usize,
    run: impl Fn(usize, &T) -> Result<R, E> + Sync,
    stops: impl Fn(usize, &R) -> bool + Sync,
) -> Vec<Result<R, E>> {
    let results: Vec<Mutex<Option<Result<R, E>>>> =
        items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    // The lowest index that stopped the runs so far.
    let first_stop = AtomicUsize::new(usize::MAX);
    std::thread::scope(|scope| {
        for _ in 0..at_once.max(1).min(items.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= items.len() || i > first_stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let result = run(i, &items[i]);
                    if result.as_ref().map_or(true, |r| stops(i, r)) {
                        first_stop.fetch_min(i, Ordering::SeqCst);
                    }
                    *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    let last = first_stop.into_inner().min(items.len().saturating_sub(1));
    results
        .into_iter()
        .take(last + 1)
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every item up to the first stop ran")
        })
        .collect()
}

/// One run of `case` with one fault, `fault` at `point`; `run` names its ledger file.
pub(super) fn probe<B>(
    case: &BlackBoxCase,
    broker: &FreshBroker<'_, B>,
    run: &str,
    point: &CrashPoint,
    fault: Fault,
) -> Result<Probe, ProcessError> {
    let mut case = with_ledger(case, run);
    case.effect_faults = EffectFaults::new();
    case.wire_faults = WireFaults::new();
    match point {
        CrashPoint::Effect { event_id, call } => {
            case.effect_faults.insert((event_id.clone(), *call), fault);
        }
        CrashPoint::Wire { api, request } => {
            case.wire_faults.insert((api.clone(), *request), fault);
        }
    }
    let (_broker, bootstrap) = broker()?;
    let outcome = run_black_box(&case, &bootstrap)?;
    Ok(Probe {
        point: point.clone(),
        fault,
        outcome,
    })
}

/// `case` with its ledger file named after `run`, beside the original.
fn with_ledger(case: &BlackBoxCase, run: &str) -> BlackBoxCase {
    let mut case = case.clone();
    let stem = case
        .ledger
        .file_stem()
        .map_or_else(|| "ledger".into(), |s| s.to_string_lossy().into_owned());
    case.ledger.set_file_name(format!("{stem}-{run}.db"));
    case
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::in_order_until;

    /// Later items finish first: the answer is still every item up to the first stop in
    /// the items' order, and items well after it are never started.
    #[test]
    fn runs_stop_at_the_first_stopping_item_in_order_whatever_finishes_first() {
        let items: Vec<u64> = (0..12).collect();
        let started = AtomicUsize::new(0);
        let run = |i: usize, item: &u64| -> Result<u64, String> {
            started.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5 * (12 - *item)));
            if i == 6 { Err("six".into()) } else { Ok(*item) }
        };
        let results = in_order_until(&items, 3, run, |_, r| *r == 3 || *r == 4);
        let got: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, [0, 1, 2, 3]);
        assert!(started.load(Ordering::SeqCst) <= 4 + 3, "{started:?}");

        let results = in_order_until(&items, 3, run, |_, _| false);
        assert_eq!(results.len(), 7);
        assert_eq!(results[6], Err("six".to_string()));

        let results = in_order_until(&items[..5], 8, run, |_, _| false);
        let got: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
    }
}
