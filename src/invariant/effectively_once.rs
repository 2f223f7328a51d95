//! Each published event's effect took place exactly once on every counted sink.

use super::{Invariant, RunRecord, Violation};

/// Each published event (poison records aside) took effect exactly once on every counted sink:
/// no loss and no duplicate. Idempotency-key deduplicated attempts do not count as effects.
#[derive(Clone, Copy, Debug, Default)]
pub struct EffectivelyOnce;

impl Invariant for EffectivelyOnce {
    fn name(&self) -> &str {
        "effectively-once"
    }

    fn check(&self, run: &RunRecord<'_>) -> Option<Violation> {
        let (details, event_ids, lost, duplicated) = run.count_violations(|n| n == 1);
        if details.is_empty() {
            return None;
        }
        Some(Violation {
            invariant: self.name().into(),
            summary: format!(
                "{} event{} did not take effect exactly once ({lost} lost, {duplicated} duplicated)",
                event_ids.len(),
                if event_ids.len() == 1 { "" } else { "s" },
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
    fn flags_lost_and_duplicated_events_and_ignores_deduplicated_and_failed_attempts() {
        let published = published(&[("a", "k"), ("b", "k"), ("c", "k")]);
        let history = history(
            &[
                (1, "a", Performed),
                (2, "a", Deduplicated),
                (3, "b", PerformedReportedFailed),
                (4, "b", Performed),
                (5, "c", Failed),
            ],
            HistoryEvent::Quiesced,
        );
        let ledger = Ledger::from_history(&history);
        let sinks = ["email".to_string()];
        let run = RunRecord {
            published: &published,
            history: &history,
            ledger: &ledger,
            sinks: &sinks,
        };
        let v = EffectivelyOnce.check(&run).expect("violated");
        assert_eq!(v.event_ids, ["b", "c"]);
        assert_eq!(
            v.summary,
            "2 events did not take effect exactly once (1 lost, 1 duplicated)"
        );
        assert_eq!(
            v.details,
            [
                "b: email took effect 2 times (2 attempts)  DUPLICATED",
                "c: email took effect 0 times (1 attempt)  LOST"
            ]
        );
    }
}
