//! After the last fault, the group gets to the end of its input within a time bound.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Invariant, RunRecord, Violation};
use crate::history::{HistoryEntry, HistoryEvent, InstanceId, Lag};

/// The run reached quiescence (every published record consumed and committed) no later than
/// `bound` of virtual time after the last disturbance ended: the last fault's moment plus its
/// pause, where pauses that stack (two freezes on one call, a stall inside a freeze) add up. A consumer wedged by a poison record,
/// one that keeps failing until it is not restarted any more, one that exits, or one that
/// hangs in an await is a violation, never a hung test.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// How long after the last disturbance (the end of the last pause, stacked pauses added
    /// up) the group may take to catch up.
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
        let last_fault_end = last_disturbance_end(entries);
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
            Some(end @ HistoryEvent::TimeLimitReached { lag }) if progress_unseen(entries, lag) => {
                (
                    "the consumer assigned its partitions itself and never committed an offset to \
                 Kafka, so the kit cannot see it catch up: if it keeps its offsets in its own \
                 database, name the query that reads them with \
                 Verifier::progress_from_store"
                        .to_string(),
                    vec![end.to_string()],
                )
            }
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
                line.push_str(&format!(
                    "; not restarted after {restarts} restart{}",
                    if *restarts == 1 { "" } else { "s" }
                ));
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

/// Whether the run's progress was invisible to the kit: a consumer that assigned its
/// partitions manually and never committed to Kafka, with the lag not read from its database.
fn progress_unseen(entries: &[HistoryEntry], lag: &[Lag]) -> bool {
    let manual = entries
        .iter()
        .any(|e| matches!(e.event, HistoryEvent::PartitionsAssignedManually { .. }));
    let committed = entries
        .iter()
        .any(|e| matches!(e.event, HistoryEvent::OffsetsCommitted { .. }));
    manual && !committed && !lag.iter().any(|l| l.group == Lag::DATABASE)
}

/// When the last disturbance ended: each fault is a window from the moment it fired for its
/// [`pause`](crate::Fault::pause) (a crash or a failure is a moment); a window that starts
/// before the one in progress ends (faults stacked on one call, a stall inside a freeze)
/// extends it by its own length, as stacked pauses add up.
fn last_disturbance_end(entries: &[HistoryEntry]) -> Duration {
    let mut end = Duration::ZERO;
    for e in entries {
        if let HistoryEvent::FaultInjected { fault, .. } = &e.event {
            end = end.max(e.at) + fault.pause();
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EffectOutcome::*;
    use crate::history::{History, TopicPartition};
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

    /// A history with `faults` (at, fault) fired on instance 0, an effect at `caught_up_ms`
    /// and a quiesced end.
    fn with_faults(faults: &[(u64, crate::history::Fault)], caught_up_ms: u64) -> History {
        use crate::history::{HistoryEntry, Incarnation, Operation};
        let inc = Incarnation {
            instance: InstanceId(0),
            number: 1,
        };
        let mut h = History::default();
        for (ms, fault) in faults {
            h.push(HistoryEntry {
                at: Duration::from_millis(*ms),
                incarnation: Some(inc),
                event: HistoryEvent::FaultInjected {
                    operation: Operation::Recv,
                    fault: *fault,
                    record: None,
                },
            });
        }
        for entry in history(&[(caught_up_ms, "a", Performed)], HistoryEvent::Quiesced).entries() {
            h.push(entry.clone());
        }
        h
    }

    fn check(history: &History) -> Option<Violation> {
        let published = published(&[("a", "k")]);
        let sinks = ["email".to_string()];
        let ledger = Ledger::from_history(history);
        Liveness::default().check(&RunRecord {
            published: &published,
            history,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        })
    }

    #[test]
    fn the_bound_counts_from_the_end_of_stacked_and_overlapping_disturbances() {
        use crate::history::Fault::{BrokerRestart, CrashAfter, Freeze, Stall};
        const H: u64 = 3_600_000;
        let freeze = Freeze(Duration::from_secs(25 * 3600));
        // Two 25 h freezes on the same call: the process thaws 50 h later; caught up 4 s
        // after that.
        let stacked = with_faults(&[(1_000, freeze), (1_000, freeze)], 1_000 + 50 * H + 4_000);
        assert_eq!(check(&stacked), None);
        // A stall that starts inside a freeze's window extends it.
        let overlapping = with_faults(
            &[(0, freeze), (H, Stall(Duration::from_secs(3600)))],
            26 * H + 60_000,
        );
        assert_eq!(check(&overlapping), None);
        // A crash adds no time: the bound still counts from the freeze's end.
        let crash = with_faults(&[(0, freeze), (H, CrashAfter)], 25 * H + 60_000);
        assert_eq!(check(&crash), None);
        // Windows apart do not add up: the bound counts from the later one's end.
        let apart = with_faults(
            &[(0, BrokerRestart(Duration::from_secs(60))), (H, freeze)],
            26 * H + 11 * 60_000,
        );
        let v = check(&apart).expect("caught up 11 minutes after the last disturbance");
        assert_eq!(
            v.summary,
            "the group caught up 660s after the last fault, later than the 600s bound"
        );
    }
}
