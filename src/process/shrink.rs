//! Shrinking a failing black-box run by removing input events: the same faults at the same
//! points, fewer events, as long as the run still fails. Each round tries, several runs at
//! once, the smallest input first (the events the faults target, or the first event), then
//! the input without one of its events (in the events' order), and keeps the first that still
//! fails; it ends when none does or one event is left. The events faults target stay.

use super::crash_points::{Fails, FreshBroker, Probe, in_order_until, probe};
use super::{BlackBoxCase, ProcessError};

/// The smallest failing run found.
#[derive(Clone, Debug)]
pub(crate) struct Shrunk {
    /// The case with the events that are left.
    pub case: BlackBoxCase,
    /// Its failing run.
    pub probe: Probe,
    /// How many runs the shrinking made.
    pub runs: usize,
}

/// Shrinks `failing`, a run of `case` that `fails`.
pub(crate) fn shrink_events<B>(
    case: &BlackBoxCase,
    failing: Probe,
    broker: &FreshBroker<'_, B>,
    at_once: usize,
    fails: &Fails<'_>,
) -> Result<Shrunk, ProcessError> {
    let mut shrunk = Shrunk {
        case: case.clone(),
        probe: failing,
        runs: 0,
    };
    let mut round = 0;
    loop {
        round += 1;
        let plan = shrunk.probe.plan.clone();
        let targets = plan.events();
        let events = &shrunk.case.events;
        let mut candidates: Vec<BlackBoxCase> = Vec::new();
        if events.len() > targets.len().max(1) + 1 {
            let mut smallest = shrunk.case.clone();
            smallest.events = if targets.is_empty() {
                events[..1].to_vec()
            } else {
                events
                    .iter()
                    .filter(|e| targets.contains(&e.event_id.as_str()))
                    .cloned()
                    .collect()
            };
            candidates.push(smallest);
        }
        candidates.extend(
            (0..events.len())
                .filter(|i| !targets.contains(&events[*i].event_id.as_str()))
                .map(|i| {
                    let mut smaller = shrunk.case.clone();
                    smaller.events.remove(i);
                    smaller
                })
                .filter(|c| !c.events.is_empty()),
        );
        if candidates.is_empty() {
            return Ok(shrunk);
        }
        let mut results = in_order_until(
            &candidates,
            at_once,
            |i, c| probe(c, broker, &format!("shrink-{round}-{i}"), &plan),
            |i, p| fails(&candidates[i], &p.outcome),
        );
        shrunk.runs += results.len();
        let last = results.len() - 1;
        match results.pop() {
            Some(Ok(p)) if fails(&candidates[last], &p.outcome) => {
                shrunk.case = candidates[last].clone();
                shrunk.probe = p;
            }
            Some(Err(e)) => return Err(e),
            _ => return Ok(shrunk),
        }
    }
}
