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

    #[test]
    fn a_sink_never_called_is_named_as_such_and_no_sink_at_all_says_so() {
        let published = published(&[("a", "k")]);
        let history = history(&[(1, "b", Performed)], HistoryEvent::Quiesced);
        let ledger = Ledger::from_history(&history);
        let sinks = [
            "email".to_string(),
            "sms".to_string(),
            crate::invariant::NO_SINK.to_string(),
        ];
        let run = RunRecord {
            published: &published,
            history: &history,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        assert_eq!(
            AtLeastOnce.check(&run).expect("violated").details,
            [
                "a: email took effect 0 times (0 attempts)  LOST",
                "a: sms took effect 0 times (sms was never called)  LOST",
                "a: took effect 0 times (the consumer called no effect sink, and none is \
                 declared)  LOST",
            ]
        );
    }

    #[test]
    fn an_event_the_group_never_committed_past_in_a_run_that_did_not_catch_up_is_pending_not_lost()
    {
        use crate::history::{Lag, TopicPartition};
        let published = published(&[("a", "k"), ("b", "k"), ("c", "k")]);
        let sinks = ["email".to_string()];
        // Committed up to 2 of 3: b (offset 1) is behind the commit, c (offset 2) is not.
        let stuck = history(
            &[(1, "a", Performed)],
            HistoryEvent::TimeLimitReached {
                lag: vec![Lag {
                    group: "g".into(),
                    partition: TopicPartition::new("t", 0),
                    committed: Some(2),
                    end: 3,
                }],
            },
        );
        let ledger = Ledger::from_history(&stuck);
        let run = RunRecord {
            published: &published,
            history: &stuck,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        let v = AtLeastOnce.check(&run).expect("b is lost");
        assert_eq!(v.event_ids, ["b"]);
        assert_eq!(v.summary, "1 event never took effect (lost)");
    }
}
