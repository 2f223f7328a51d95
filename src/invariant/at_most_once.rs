//! Each published event's effect took place at most once.

use super::{Invariant, RunRecord, Violation};

/// Each published event took effect at most once on every counted sink: nothing duplicated.
/// Losses are allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct AtMostOnce;

impl Invariant for AtMostOnce {
    fn name(&self) -> &str {
        "at-most-once"
    }

    fn check(&self, run: &RunRecord<'_>) -> Option<Violation> {
        let (details, event_ids, _, duplicated) = run.count_violations(|n| n <= 1);
        if details.is_empty() {
            return None;
        }
        Some(Violation {
            invariant: self.name().into(),
            summary: format!(
                "{duplicated} event{} took effect more than once (duplicated)",
                if duplicated == 1 { "" } else { "s" }
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
    fn allows_losses_and_flags_duplicates() {
        let published = published(&[("a", "k"), ("b", "k")]);
        let sinks = ["email".to_string()];
        let h = history(
            &[(1, "a", Performed), (2, "a", PerformedReportedFailed)],
            HistoryEvent::Quiesced,
        );
        let ledger = Ledger::from_history(&h);
        let run = RunRecord {
            published: &published,
            history: &h,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        let v = AtMostOnce.check(&run).expect("violated");
        assert_eq!(v.event_ids, ["a"]);
        assert_eq!(v.summary, "1 event took effect more than once (duplicated)");
    }
}
