//! Search fit for slow runs: crash-point enumeration. A real run takes seconds, so instead of
//! hundreds of random scenarios, a fault-free pilot run records the interception points the
//! consumer passed (each effect call, each offset commit), and then one run per point and
//! fault kind fires that one fault there. Where that showed the program retrying a failed
//! effect in the same process, one more run has the effect fail [`OUTAGE_CALLS`] times in a
//! row (a service down for a while: a consumer that gives up after a few retries loses the
//! event). Further plans (the check's random ones) run the same way. Runs go on several
//! threads at once, each on its own broker.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

#[cfg(test)]
use super::Ending;
use super::{BlackBoxCase, BlackBoxOutcome, EffectFaults, ProcessError, WireEvent};
use super::{WireFaults, run_black_box};
use crate::history::{EffectOutcome, Fault};

/// Where one fault fires.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CrashPoint {
    /// The `call`-th effect call for `event_id` (1 for its first).
    Effect { event_id: String, call: u32 },
    /// The `request`-th request of `api` on the wire, from any instance.
    Wire { api: String, request: u32 },
}

impl CrashPoint {
    /// The same place one call or request later: where a retry (or the next commit) passes.
    pub(crate) fn next(&self) -> CrashPoint {
        match self {
            CrashPoint::Effect { event_id, call } => CrashPoint::Effect {
                event_id: event_id.clone(),
                call: call + 1,
            },
            CrashPoint::Wire { api, request } => CrashPoint::Wire {
                api: api.clone(),
                request: request + 1,
            },
        }
    }

    /// The fault kinds worth a run here.
    pub(crate) fn faults(&self) -> &'static [Fault] {
        match self {
            CrashPoint::Effect { .. } => EFFECT_FAULTS,
            CrashPoint::Wire { api, .. } if api == "OffsetCommit" => COMMIT_FAULTS,
            CrashPoint::Wire { .. } => WIRE_FAULTS,
        }
    }
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrashPoint::Effect { event_id, call } => write!(f, "effect call {call} of {event_id}"),
            CrashPoint::Wire { api, request } => write!(f, "{api} request {request}"),
        }
    }
}

/// The faults of one run, each at its point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FaultPlan(pub Vec<(CrashPoint, Fault)>);

impl FaultPlan {
    /// One fault.
    pub(crate) fn one(point: CrashPoint, fault: Fault) -> Self {
        FaultPlan(vec![(point, fault)])
    }

    /// The faults of the plan that fired in `outcome` (a run ends before some points a plan
    /// names: the retry a fault was waiting for never came).
    pub(crate) fn fired(&self, outcome: &BlackBoxOutcome) -> FaultPlan {
        let reached = |point: &CrashPoint| match point {
            CrashPoint::Effect { event_id, call } => outcome
                .effect_faults_fired
                .iter()
                .any(|f| &f.event_id == event_id && f.call == *call),
            CrashPoint::Wire { api, request } => {
                let seen = outcome
                    .wire
                    .iter()
                    .filter(|e| matches!(e, WireEvent::Request { api: a, .. } if a == api))
                    .count();
                seen >= *request as usize
            }
        };
        FaultPlan(
            self.0
                .iter()
                .filter(|(point, _)| reached(point))
                .cloned()
                .collect(),
        )
    }

    /// The events whose effect calls the faults target, in the plan's order.
    pub(crate) fn events(&self) -> Vec<&str> {
        let mut events: Vec<&str> = Vec::new();
        for (point, _) in &self.0 {
            if let CrashPoint::Effect { event_id, .. } = point
                && !events.contains(&event_id.as_str())
            {
                events.push(event_id);
            }
        }
        events
    }
}

impl std::fmt::Display for FaultPlan {
    /// `CrashAfter at effect call 1 of evt-0`; a run of the same fault on one event's calls in
    /// a row as `Fail at effect calls 1 to 5 of evt-0`; faults joined by `, and `.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut i = 0;
        while i < self.0.len() {
            if i > 0 {
                f.write_str(", and ")?;
            }
            let (point, fault) = &self.0[i];
            let mut last = i;
            while let Some((next, next_fault)) = self.0.get(last + 1)
                && next_fault == fault
                && *next == self.0[last].0.next()
                && matches!(next, CrashPoint::Effect { .. })
            {
                last += 1;
            }
            match (point, &self.0[last].0) {
                (CrashPoint::Effect { event_id, call }, CrashPoint::Effect { call: to, .. })
                    if last > i =>
                {
                    write!(f, "{fault:?} at effect calls {call} to {to} of {event_id}")?;
                }
                _ => write!(f, "{fault:?} at {point}")?,
            }
            i = last + 1;
        }
        Ok(())
    }
}

/// How many effect calls in a row fail in an outage run: more retries than a consumer that
/// gives up makes, few enough that one that retries with backoff gets through in a run.
pub(crate) const OUTAGE_CALLS: u32 = 5;

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

/// One run: its faults, and what the run found.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    pub plan: FaultPlan,
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

/// The enumeration's plans for the points `pilot` passed: one per point and fault kind, in
/// the points' order.
pub(crate) fn enumeration(pilot: &BlackBoxOutcome) -> Vec<FaultPlan> {
    let mut plans: Vec<FaultPlan> = Vec::new();
    for point in crash_points(pilot) {
        plans.extend(
            point
                .faults()
                .iter()
                .map(|k| FaultPlan::one(point.clone(), *k)),
        );
    }
    plans
}

/// An outage plan for each event whose first effect call failed in one of `probes` and was
/// tried again by the same process: its effect fails [`OUTAGE_CALLS`] times in a row. A
/// program that lets a failure crash it is redelivered the event after its restart; an
/// outage would only repeat that, so it gets none.
pub(crate) fn outages(probes: &[Probe]) -> Vec<FaultPlan> {
    let mut plans = Vec::new();
    for probe in probes {
        let [(CrashPoint::Effect { event_id, call: 1 }, Fault::Fail)] = probe.plan.0.as_slice()
        else {
            continue;
        };
        let calls: Vec<_> = probe
            .outcome
            .attempts
            .iter()
            .filter(|a| &a.event_id == event_id)
            .collect();
        let retried_in_process = calls.first().is_some_and(|failed| {
            failed.outcome == EffectOutcome::Failed
                && calls[1..]
                    .iter()
                    .any(|a| a.incarnation == failed.incarnation)
        });
        if retried_in_process {
            plans.push(FaultPlan(
                (1..=OUTAGE_CALLS)
                    .map(|call| {
                        let event_id = event_id.clone();
                        (CrashPoint::Effect { event_id, call }, Fault::Fail)
                    })
                    .collect(),
            ));
        }
    }
    plans
}

/// One run per plan, `at_once` runs at a time, each on a fresh broker, in the plans' order,
/// until the first run that `fails` (in that order: every earlier run finished and passed):
/// the runs made up to it, that one last. Run `i`'s ledger is named `<stage>-<i>`.
pub(crate) fn probes<B>(
    case: &BlackBoxCase,
    stage: &str,
    plans: &[FaultPlan],
    broker: &FreshBroker<'_, B>,
    at_once: usize,
    fails: &Fails<'_>,
) -> Result<Vec<Probe>, ProcessError> {
    in_order_until(
        plans,
        at_once,
        |i, plan| probe(case, broker, &format!("{stage}-{i}"), plan),
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

/// One run of `case` with the faults of `plan`; `run` names its ledger file.
pub(super) fn probe<B>(
    case: &BlackBoxCase,
    broker: &FreshBroker<'_, B>,
    run: &str,
    plan: &FaultPlan,
) -> Result<Probe, ProcessError> {
    let mut case = with_ledger(case, run);
    case.effect_faults = EffectFaults::new();
    case.wire_faults = WireFaults::new();
    for (point, fault) in &plan.0 {
        match point {
            CrashPoint::Effect { event_id, call } => {
                case.effect_faults.insert((event_id.clone(), *call), *fault);
            }
            CrashPoint::Wire { api, request } => {
                case.wire_faults.insert((api.clone(), *request), *fault);
            }
        }
    }
    let (_broker, bootstrap) = broker()?;
    let outcome = run_black_box(&case, &bootstrap)?;
    Ok(Probe {
        plan: plan.clone(),
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

    use super::{CrashPoint, FaultPlan, in_order_until};
    use crate::history::Fault;

    #[test]
    fn a_plan_reads_as_its_faults_with_an_outage_as_one() {
        let effect = |event: &str, call| CrashPoint::Effect {
            event_id: event.into(),
            call,
        };
        let commit = CrashPoint::Wire {
            api: "OffsetCommit".into(),
            request: 2,
        };
        let one = FaultPlan::one(effect("evt-0", 1), Fault::CrashAfter);
        assert_eq!(one.to_string(), "CrashAfter at effect call 1 of evt-0");
        let outage = FaultPlan((1..=3).map(|c| (effect("evt-1", c), Fault::Fail)).collect());
        assert_eq!(outage.to_string(), "Fail at effect calls 1 to 3 of evt-1");
        let two = FaultPlan(vec![
            (effect("evt-1", 1), Fault::Fail),
            (effect("evt-1", 2), Fault::CrashBefore),
            (commit.clone(), Fault::Fail),
            (commit.next(), Fault::Fail),
            (effect("evt-0", 2), Fault::Fail),
        ]);
        assert_eq!(
            two.to_string(),
            "Fail at effect call 1 of evt-1, and CrashBefore at effect call 2 of evt-1, and \
             Fail at OffsetCommit request 2, and Fail at OffsetCommit request 3, and Fail at \
             effect call 2 of evt-0"
        );
        assert_eq!(two.events(), ["evt-1", "evt-0"]);
        assert!(FaultPlan::one(commit, Fault::Ambiguous).events().is_empty());
    }

    #[test]
    fn a_plan_fired_the_faults_whose_call_or_request_came() {
        use std::time::Duration;

        use crate::history::InstanceId;
        use crate::process::{BlackBoxOutcome, Ending, FiredEffectFault, WireEvent};

        let effect = |call| CrashPoint::Effect {
            event_id: "evt-0".into(),
            call,
        };
        let commit = |request| CrashPoint::Wire {
            api: "OffsetCommit".into(),
            request,
        };
        let request = || WireEvent::Request {
            at: Duration::ZERO,
            instance: InstanceId(1),
            api: "OffsetCommit".into(),
            version: 8,
        };
        let outcome = BlackBoxOutcome {
            ending: Ending::CaughtUp,
            attempts: Vec::new(),
            wire: vec![request(), request()],
            lives: Vec::new(),
            malformed: Vec::new(),
            problems: Vec::new(),
            ends: Default::default(),
            landed: Vec::new(),
            effect_faults_fired: vec![FiredEffectFault {
                at: Duration::ZERO,
                instance: InstanceId(1),
                event_id: "evt-0".into(),
                call: 1,
                fault: Fault::Fail,
            }],
            stopped_at: Duration::ZERO,
            left_behind: Default::default(),
        };
        let plan = FaultPlan(vec![
            (effect(1), Fault::Fail),
            (effect(2), Fault::Fail),
            (commit(2), Fault::CrashAfter),
            (commit(3), Fault::Fail),
        ]);
        assert_eq!(
            plan.fired(&outcome),
            FaultPlan(vec![
                (effect(1), Fault::Fail),
                (commit(2), Fault::CrashAfter)
            ])
        );
    }

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
