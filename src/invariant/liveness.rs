//! After the last fault, the group gets to the end of its input within a time bound.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Invariant, RunRecord, Violation};
use crate::history::{HistoryEvent, InstanceId};

/// The run reached quiescence (every published record consumed and committed) no later than
/// `bound` of virtual time after the last fault ended. A consumer wedged by a poison record,
/// one that keeps failing until it is not restarted any more, one that exits, or one that
/// hangs in an await is a violation, never a hung test.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// How long after the last fault (the end of a pause) the group may take to catch up.
    pub bound: Duration,
}

impl Default for Liveness {
    /// A bound of 10 minutes: room for a 45 s session timeout, restarts and a 5 minute
    /// `max.poll.interval.ms`.
    fn default() -> Self {
        Liveness {
            bound: Duration::from_secs(10 * 60),
        }
    }
}

impl Invariant for Liveness {
    fn name(&self) -> &str {
        "liveness"
    }

    fn check(&self, run: &RunRecord<'_>) -> Option<Violation> {
        let entries = run.history.entries();
        let last_fault_end = entries
            .iter()
            .filter_map(|e| match &e.event {
                HistoryEvent::FaultInjected { fault, .. } => Some(e.at + fault.pause()),
                _ => None,
            })
            .max()
            .unwrap_or_default();
        let (summary, mut details) = match run.history.end() {
            Some(HistoryEvent::Quiesced) => {
                // The last thing that happened before the settle period.
                let caught_up = entries.iter().rev().nth(1).map_or(Duration::ZERO, |e| e.at);
                let took = caught_up.saturating_sub(last_fault_end);
                if took <= self.bound {
                    return None;
                }
                (
                    format!(
                        "the group caught up {}s after the last fault, later than the {}s bound",
                        took.as_secs(),
                        self.bound.as_secs()
                    ),
                    Vec::new(),
                )
            }
            Some(end @ HistoryEvent::AllInstancesStopped { .. }) => (
                "every consumer instance stopped before the input was consumed".to_string(),
                vec![end.to_string()],
            ),
            Some(end @ HistoryEvent::TimeLimitReached { .. }) => (
                "the group never caught up with its input (wedged or hung)".to_string(),
                vec![end.to_string()],
            ),
            _ => (
                "the run has no end marker; it did not finish".to_string(),
                Vec::new(),
            ),
        };
        // Why: how each instance stopped, and whether it was given up on.
        let mut stops: BTreeMap<InstanceId, (usize, String)> = BTreeMap::new();
        let mut exhausted: BTreeMap<InstanceId, u32> = BTreeMap::new();
        for e in entries {
            let Some(inc) = e.incarnation else { continue };
            let why = match &e.event {
                HistoryEvent::InstancePanicked { message } => format!("panicked: {message}"),
                HistoryEvent::InstanceExited { error: Some(err) } => {
                    format!("exited with error: {err}")
                }
                HistoryEvent::InstanceExited { error: None } => "exited".to_string(),
                HistoryEvent::RestartsExhausted { restarts } => {
                    exhausted.insert(inc.instance, *restarts);
                    continue;
                }
                _ => continue,
            };
            let entry = stops.entry(inc.instance).or_default();
            entry.0 += 1;
            entry.1 = format!("{inc} {why}");
        }
        for (instance, (count, last)) in stops {
            let mut line = format!(
                "{instance} stopped {count} time{}, the last: {last}",
                if count == 1 { "" } else { "s" }
            );
            if let Some(restarts) = exhausted.get(&instance) {
                line.push_str(&format!("; not restarted after {restarts} restarts"));
            }
            details.push(line);
        }
        Some(Violation {
            invariant: self.name().into(),
            summary,
            event_ids: Vec::new(),
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::TopicPartition;
    use crate::history::{EffectOutcome::*, Lag};
    use crate::invariant::test_support::*;
    use crate::ledger::Ledger;

    #[test]
    fn a_quiesced_run_passes_and_a_run_that_stopped_short_fails() {
        let published = published(&[("a", "k")]);
        let sinks = ["email".to_string()];
        let ok = history(&[(1, "a", Performed)], HistoryEvent::Quiesced);
        let ledger = Ledger::from_history(&ok);
        let run = RunRecord {
            published: &published,
            history: &ok,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        assert_eq!(Liveness::default().check(&run), None);
        let stuck = history(
            &[],
            HistoryEvent::TimeLimitReached {
                lag: vec![Lag {
                    group: "g".into(),
                    partition: TopicPartition::new("t", 0),
                    committed: None,
                    end: 1,
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
        let v = Liveness::default().check(&run).expect("violated");
        assert_eq!(
            v.summary,
            "the group never caught up with its input (wedged or hung)"
        );
        assert!(v.details[0].contains("nothing committed, end 1"), "{v}");
    }

    #[test]
    fn catching_up_later_than_the_bound_fails() {
        let published = published(&[("a", "k")]);
        let sinks = ["email".to_string()];
        let slow = history(
            &[(1, "a", Performed), (700_000, "a", Deduplicated)],
            HistoryEvent::Quiesced,
        );
        let ledger = Ledger::from_history(&slow);
        let run = RunRecord {
            published: &published,
            history: &slow,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        assert!(Liveness::default().check(&run).is_some());
        assert_eq!(
            Liveness {
                bound: Duration::from_secs(701)
            }
            .check(&run),
            None
        );
    }
}
