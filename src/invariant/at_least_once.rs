//! Each published event's effect took place at least once.

use super::{Invariant, RunRecord, Violation};

/// Each published event (poison records aside) took effect at least once on every counted
/// sink: nothing lost. Duplicates are allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct AtLeastOnce;

impl Invariant for AtLeastOnce {
    fn name(&self) -> &str {
        "at-least-once"
    }

    fn check(&self, run: &RunRecord<'_>) -> Option<Violation> {
        let (details, event_ids, lost, _) = run.count_violations(|n| n >= 1);
        if details.is_empty() {
            return None;
        }
        Some(Violation {
            invariant: self.name().into(),
            summary: format!(
                "{lost} event{} never took effect (lost)",
                if lost == 1 { "" } else { "s" }
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
    fn allows_duplicates_and_flags_losses() {
        let published = published(&[("a", "k"), ("b", "k")]);
        let sinks = ["email".to_string()];
        let dup = history(
            &[
                (1, "a", Performed),
                (2, "a", Performed),
                (3, "b", Performed),
            ],
            HistoryEvent::Quiesced,
        );
        let ledger = Ledger::from_history(&dup);
        let run = RunRecord {
            published: &published,
            history: &dup,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        assert_eq!(AtLeastOnce.check(&run), None);
        let lost = history(&[(1, "a", Performed)], HistoryEvent::Quiesced);
        let ledger = Ledger::from_history(&lost);
        let run = RunRecord {
            published: &published,
            history: &lost,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        assert_eq!(AtLeastOnce.check(&run).expect("violated").event_ids, ["b"]);
    }
}
