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
    use crate::ledger::{Ledger, Observed};

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
            cluster: &ClusterSnapshot::default(),
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

    #[test]
    fn store_effects_count_what_the_final_store_holds_and_an_unreadable_store_loses_everything() {
        let published = published(&[("a", "k"), ("b", "k"), ("c", "k")]);
        let history = history(&[], HistoryEvent::Quiesced);
        let mut ledger = Ledger::from_history(&history);
        ledger.observe(
            "inbox",
            Observed::Store,
            Ok([("a".to_string(), 1), ("b".to_string(), 2)].into()),
        );
        ledger.observe(
            "audit",
            Observed::Store,
            Err("the query failed: no such table: audit".into()),
        );
        let sinks = ledger.sinks();
        assert_eq!(sinks, ["audit", "inbox"]);
        let run = RunRecord {
            published: &published,
            history: &history,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        let v = EffectivelyOnce.check(&run).expect("violated");
        assert_eq!(
            v.details,
            [
                "audit: the final store could not be read: the query failed: no such table: audit",
                "a: audit is in the final store 0 times  LOST",
                "b: audit is in the final store 0 times  LOST",
                "c: audit is in the final store 0 times  LOST",
                "b: inbox is in the final store 2 times  DUPLICATED",
                "c: inbox is in the final store 0 times  LOST",
            ]
        );
    }
}
