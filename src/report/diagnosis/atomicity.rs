//! What should be atomic and was not: a dedup mark written apart from its effect, outputs sent
//! outside a transaction.

use super::offsets::in_partition;
use super::{Diagnosis, DiagnosisKind, Facts};
use crate::history::{HistoryEvent, Incarnation, RecordPosition, TopicPartition};

/// One step of handling a record: its effect on a sink, or a committed store transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Effect,
    Store,
}

/// What an instance did with one record it was handed, up to the next record, its commit, or
/// its end.
struct Handling {
    /// Each step and its entry.
    steps: Vec<(Step, usize)>,
    /// The crash that ended it, if one did.
    crashed: Option<usize>,
    /// True when it ran to the end: the next record, a commit, or the end of the run (not
    /// a crash, an exit or a panic).
    complete: bool,
}

/// Every handling of the record at `position` for `event_id`.
fn handlings(facts: &Facts<'_>, position: &RecordPosition, event_id: &str) -> Vec<Handling> {
    let entries = facts.entries;
    let mut out = Vec::new();
    for (start, entry) in entries.iter().enumerate() {
        let (Some(inc), HistoryEvent::Delivered { position: p, .. }) =
            (entry.incarnation, &entry.event)
        else {
            continue;
        };
        if p != position {
            continue;
        }
        let mut handling = Handling {
            steps: Vec::new(),
            crashed: None,
            complete: true,
        };
        for (i, e) in entries.iter().enumerate().skip(start + 1) {
            if e.incarnation != Some(inc) {
                continue;
            }
            match &e.event {
                HistoryEvent::Effect {
                    event_id: id,
                    outcome,
                    ..
                } if id == event_id && outcome.took_effect() => {
                    handling.steps.push((Step::Effect, i));
                }
                HistoryEvent::StoreCommitted { .. }
                | HistoryEvent::StoreCommitFailed {
                    committed: true, ..
                } => handling.steps.push((Step::Store, i)),
                HistoryEvent::InstanceCrashed { .. } => {
                    handling.crashed = Some(i);
                    handling.complete = false;
                    break;
                }
                HistoryEvent::InstanceExited { .. } | HistoryEvent::InstancePanicked { .. } => {
                    handling.complete = false;
                    break;
                }
                HistoryEvent::Delivered { .. } | HistoryEvent::OffsetsCommitted { .. } => break,
                _ => {}
            }
        }
        out.push(handling);
    }
    out
}

/// A duplicated event whose handling crashed right after its effect (an effect on a sink, or
/// a store transaction), where a handling that ran to the end wrote one more store transaction
/// after the same steps: the mark that would have stopped the repeat, written apart from the
/// effect. Inferred: the history does not say what a store transaction wrote.
pub(super) fn dedup_mark_outside_transaction(facts: &Facts<'_>) -> Vec<Diagnosis> {
    for id in facts.duplicated.keys() {
        let Some(positions) = facts.positions.get(id) else {
            continue;
        };
        for position in positions.iter() {
            let all = handlings(facts, position, id);
            for cut in all.iter().filter(|h| h.crashed.is_some()) {
                let Some(&(last_step, effect)) = cut.steps.last() else {
                    continue;
                };
                let kinds: Vec<Step> = cut.steps.iter().map(|(s, _)| *s).collect();
                let whole = all.iter().find(|h| {
                    h.complete
                        && h.steps.len() > kinds.len()
                        && h.steps[..kinds.len()]
                            .iter()
                            .map(|(s, _)| *s)
                            .eq(kinds.iter().copied())
                        && h.steps[kinds.len()].0 == Step::Store
                });
                let Some(whole) = whole else {
                    continue;
                };
                let mark = whole.steps[kinds.len()].1;
                let crash = cut.crashed.expect("filtered");
                let in_db = facts
                    .entries
                    .iter()
                    .any(|e| matches!(e.event, HistoryEvent::PartitionsAssignedManually { .. }));
                let what = if in_db {
                    "the offset kept in the database"
                } else {
                    "a dedup mark"
                };
                let who = facts.entries[crash]
                    .incarnation
                    .map_or_else(|| "the instance".to_string(), |i| i.to_string());
                let after = match last_step {
                    Step::Effect => format!(
                        "right after the effect of {id} {}, before the store transaction that \
                         follows the effect when {id} is handled to the end {}",
                        facts.cite(effect),
                        facts.cite(mark)
                    ),
                    Step::Store => format!(
                        "right after a store transaction {}, before the one that follows it \
                         when {id} is handled to the end {}",
                        facts.cite(effect),
                        facts.cite(mark)
                    ),
                };
                let fix = match last_step {
                    Step::Effect => {
                        "an effect outside the store cannot share its transaction: pass the \
                         event id as idempotency key"
                    }
                    Step::Store => "write it in the effect's own store transaction",
                };
                return vec![Diagnosis {
                    kind: DiagnosisKind::DedupMarkOutsideTransaction,
                    likely: true,
                    sentence: format!(
                        "likely {what} written outside the effect's transaction: {who} crashed \
                         {} {after}, so nothing recorded that {id} was done and its redelivery \
                         took effect again ({fix})",
                        facts.cite(crash),
                    ),
                }];
            }
        }
    }
    Vec::new()
}

/// A record an instance with transactions produced that the next transaction it ended did
/// not include: sent outside the transaction, by a plain producer or before `begin`. Only
/// when the output topic it went to holds a duplicate.
pub(super) fn output_outside_transaction(facts: &Facts<'_>) -> Vec<Diagnosis> {
    let entries = facts.entries;
    // The transactional ids each incarnation initialized.
    let mut ids: Vec<(Incarnation, &str)> = Vec::new();
    for entry in entries {
        if let (
            Some(inc),
            HistoryEvent::TransactionsInitialized {
                transactional_id, ..
            },
        ) = (entry.incarnation, &entry.event)
        {
            ids.push((inc, transactional_id));
        }
    }
    for (index, entry) in entries.iter().enumerate() {
        let (Some(inc), HistoryEvent::RecordProduced { position, .. }) =
            (entry.incarnation, &entry.event)
        else {
            continue;
        };
        let tid: Vec<&str> = ids
            .iter()
            .filter(|(i, _)| *i == inc)
            .map(|(_, t)| *t)
            .collect();
        if tid.is_empty() {
            continue;
        }
        // The next transaction of the instance's transactional ids to end.
        let next = entries
            .iter()
            .enumerate()
            .skip(index + 1)
            .find_map(|(i, e)| match &e.event {
                HistoryEvent::TransactionCommitted {
                    transactional_id,
                    partitions,
                    ..
                }
                | HistoryEvent::TransactionAborted {
                    transactional_id,
                    partitions,
                    ..
                } if tid.contains(&transactional_id.as_str()) => Some((i, partitions)),
                _ => None,
            });
        let Some((end, partitions)) = next else {
            continue;
        };
        if partitions
            .iter()
            .any(|tp: &TopicPartition| in_partition(position, tp))
        {
            continue;
        }
        let topic = format!("output topic {} ", position.topic);
        let duplicated: Vec<&str> = facts
            .duplicated
            .iter()
            .filter(|(_, details)| details.iter().any(|d| d.contains(&topic)))
            .map(|(id, _)| *id)
            .collect();
        if duplicated.is_empty() {
            continue;
        }
        return vec![Diagnosis {
            kind: DiagnosisKind::OutputOutsideTransaction,
            likely: false,
            sentence: format!(
                "outputs sent outside the transaction: {position} was produced {} outside the \
                 transaction of its instance's transactional id that ended next {}, which did \
                 not include {}, so neither an abort nor fencing takes it back: {} duplicated in \
                 {} (send every output through the transactional producer between \
                 `begin_transaction` and `commit_transaction`)",
                facts.cite(index),
                facts.cite(end),
                position.topic_partition(),
                super::list(&duplicated),
                position.topic,
            ),
        }];
    }
    Vec::new()
}
