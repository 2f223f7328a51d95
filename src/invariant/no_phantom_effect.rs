//! No effect for an event that was never published.

use std::collections::BTreeSet;

use super::{Invariant, RunRecord, Violation};

/// Every effect that took place names an event that was published: no effect invented from a
/// misparsed or stale record. A poison record was published too: a verbatim copy of it
/// (forwarded to a dead-letter or output topic) is attributed to it and is no phantom.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPhantomEffect;

impl Invariant for NoPhantomEffect {
    fn name(&self) -> &str {
        "no phantom effect"
    }

    fn check(&self, run: &RunRecord<'_>) -> Option<Violation> {
        let known: BTreeSet<&str> = run.published.iter().map(|e| e.event_id.as_str()).collect();
        let mut event_ids: Vec<String> = Vec::new();
        let mut details = Vec::new();
        let mut phantom = |event_id: &str, evidence: String| {
            details.push(evidence);
            if !event_ids.iter().any(|e| e == event_id) {
                event_ids.push(event_id.to_string());
            }
        };
        for r in run.ledger.records() {
            if r.outcome.took_effect() && !known.contains(r.event_id.as_str()) {
                phantom(&r.event_id, format!("{r}"));
            }
        }
        for sink in run.ledger.sinks() {
            let Some(Ok(counts)) = run.ledger.observed(&sink) else {
                continue;
            };
            let place = run.ledger.observed_in(&sink).expect("observed");
            for (event_id, n) in counts {
                if !known.contains(event_id.as_str()) {
                    phantom(event_id, place.evidence(&sink, event_id, *n));
                }
            }
        }
        if details.is_empty() {
            return None;
        }
        Some(Violation {
            invariant: self.name().into(),
            summary: format!(
                "effects took place for {} event id{} nobody published",
                event_ids.len(),
                if event_ids.len() == 1 { "" } else { "s" }
            ),
            event_ids,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EffectOutcome::*, HistoryEvent};
    use crate::invariant::test_support::*;
    use crate::ledger::{Ledger, Observed};

    #[test]
    fn flags_effects_for_unknown_event_ids_only_when_they_took_effect() {
        let published = published(&[("a", "k")]);
        let sinks = ["email".to_string()];
        let h = history(
            &[(1, "a", Performed), (2, "zz", Failed), (3, "x", Performed)],
            HistoryEvent::Quiesced,
        );
        let mut ledger = Ledger::from_history(&h);
        ledger.observe(
            "inbox",
            Observed::Store,
            Ok([("a".into(), 1), ("y".into(), 1)].into()),
        );
        let run = RunRecord {
            published: &published,
            history: &h,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        let v = NoPhantomEffect.check(&run).expect("violated");
        assert_eq!(v.event_ids, ["x", "y"]);
        assert_eq!(v.details[1], "y: inbox is in the final store 1 time");
    }

    #[test]
    fn a_copy_attributed_to_a_poison_record_is_no_phantom() {
        let mut published = published(&[("a", "k"), ("p", "k")]);
        published[1].poison = true;
        let sinks = ["email".to_string()];
        let h = history(&[(1, "a", Performed)], HistoryEvent::Quiesced);
        let mut ledger = Ledger::from_history(&h);
        ledger.observe(
            "dead-letters",
            Observed::Store,
            Ok([("p".into(), 1)].into()),
        );
        let run = RunRecord {
            published: &published,
            history: &h,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        assert_eq!(NoPhantomEffect.check(&run), None);
    }
}
