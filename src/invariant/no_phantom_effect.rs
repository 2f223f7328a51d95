//! No effect for an event that was never published.

use std::collections::BTreeSet;

use super::{Invariant, RunRecord, Violation};

/// Every effect that took place names an event that was published (and is not a poison
/// record): no effect invented from a misparsed or stale record.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPhantomEffect;

impl Invariant for NoPhantomEffect {
    fn name(&self) -> &str {
        "no phantom effect"
    }

    fn check(&self, run: &RunRecord<'_>) -> Option<Violation> {
        let known: BTreeSet<&str> = run
            .expecting_effects()
            .map(|e| e.event_id.as_str())
            .collect();
        let mut event_ids: Vec<String> = Vec::new();
        let mut details = Vec::new();
        for r in run.ledger.records() {
            if r.outcome.took_effect() && !known.contains(r.event_id.as_str()) {
                details.push(format!("{r}"));
                if !event_ids.contains(&r.event_id) {
                    event_ids.push(r.event_id.clone());
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
    use crate::ledger::Ledger;

    #[test]
    fn flags_effects_for_unknown_event_ids_only_when_they_took_effect() {
        let published = published(&[("a", "k")]);
        let sinks = ["email".to_string()];
        let h = history(
            &[(1, "a", Performed), (2, "zz", Failed), (3, "x", Performed)],
            HistoryEvent::Quiesced,
        );
        let ledger = Ledger::from_history(&h);
        let run = RunRecord {
            published: &published,
            history: &h,
            ledger: &ledger,
            sinks: &sinks,
        };
        assert_eq!(
            NoPhantomEffect.check(&run).expect("violated").event_ids,
            ["x"]
        );
    }
}
