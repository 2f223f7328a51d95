//! Random fault plans for a program: after the enumeration's one fault per run, runs with two
//! faults drawn from a seed, so that what one fault's recovery does meets a second fault (a
//! crash during the retry of a failed effect, a refused commit after a restart). The second
//! fault is, half of the time, at the place the first one's recovery passes next (the next
//! call of the same effect, the next commit), where such bugs live; otherwise anywhere the
//! pilot passed or right after it. The same seed and pilot give the same plans.

use crate::history::Fault;
use crate::process::{CrashPoint, FaultPlan};
use crate::run::rng::SimRng;

/// How many tries a plan gets to differ from every plan before it.
const TRIES: usize = 20;

/// `count` plans of two faults each at the `points` a pilot passed (and the call or request
/// after each), none equal to one of `known` or to each other.
pub(super) fn random_plans(
    points: &[CrashPoint],
    known: &[FaultPlan],
    count: usize,
    seed: u64,
) -> Vec<FaultPlan> {
    let places: Vec<CrashPoint> =
        points
            .iter()
            .flat_map(|p| [p.clone(), p.next()])
            .fold(Vec::new(), |mut places, p| {
                if !places.contains(&p) {
                    places.push(p);
                }
                places
            });
    let mut plans: Vec<FaultPlan> = Vec::new();
    if places.is_empty() {
        return plans;
    }
    let mut rng = SimRng::new(seed);
    for _ in 0..count {
        for _ in 0..TRIES {
            let first = pick(&mut rng, &places);
            let second = if rng.below(2) == 0 {
                let at = first.0.next();
                let fault = pick_fault(&mut rng, &at);
                (at, fault)
            } else {
                pick(&mut rng, &places)
            };
            if second.0 == first.0 {
                continue;
            }
            // In the points' order: the same two faults make the same run whichever came first.
            let mut faults = vec![first, second];
            faults.sort_by(|a, b| a.0.cmp(&b.0));
            let plan = FaultPlan(faults);
            if !known.contains(&plan) && !plans.contains(&plan) {
                plans.push(plan);
                break;
            }
        }
    }
    plans
}

/// A place and a fault worth a run there.
fn pick(rng: &mut SimRng, places: &[CrashPoint]) -> (CrashPoint, Fault) {
    let place = places[index(rng, places.len())].clone();
    let fault = pick_fault(rng, &place);
    (place, fault)
}

fn pick_fault(rng: &mut SimRng, place: &CrashPoint) -> Fault {
    let faults = place.faults();
    faults[index(rng, faults.len())]
}

fn index(rng: &mut SimRng, len: usize) -> usize {
    usize::try_from(rng.below(len as u64)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effect(event: &str, call: u32) -> CrashPoint {
        CrashPoint::Effect {
            event_id: event.into(),
            call,
        }
    }

    fn commit(request: u32) -> CrashPoint {
        CrashPoint::Wire {
            api: "OffsetCommit".into(),
            request,
        }
    }

    #[test]
    fn plans_are_two_faults_new_valid_and_the_same_for_the_same_seed() {
        let points = [effect("evt-0", 1), effect("evt-1", 1), commit(1), commit(2)];
        let known = vec![FaultPlan(vec![
            (effect("evt-0", 1), Fault::Fail),
            (effect("evt-0", 2), Fault::Fail),
        ])];
        let plans = random_plans(&points, &known, 12, 7);
        assert_eq!(plans.len(), 12);
        assert_eq!(plans, random_plans(&points, &known, 12, 7));
        assert_ne!(plans, random_plans(&points, &known, 12, 8));
        for (i, plan) in plans.iter().enumerate() {
            assert_eq!(plan.0.len(), 2, "{plan}");
            assert_ne!(plan.0[0].0, plan.0[1].0, "{plan}");
            assert!(
                !known.contains(plan) && !plans[..i].contains(plan),
                "{plan}"
            );
            // At a place the pilot passed, the call or request after it, or (following the
            // first fault) the one after that.
            let allowed = |p: &CrashPoint| {
                points
                    .iter()
                    .any(|q| q == p || q.next() == *p || q.next().next() == *p)
            };
            for (point, fault) in &plan.0 {
                assert!(point.faults().contains(fault), "{plan}");
                assert!(allowed(point), "{plan}");
            }
        }
        // Half of the plans, about, put the second fault where the first one's recovery
        // passes next.
        let follow = plans.iter().filter(|p| p.0[1].0 == p.0[0].0.next()).count();
        assert!(follow >= 3, "{follow} of {}", plans.len());
        assert!(random_plans(&[], &[], 5, 0).is_empty());
    }
}
