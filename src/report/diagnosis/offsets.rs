//! Where a group reads and what it commits: a new group starting at `latest`, commits of the
//! record's own offset, commits moving backwards.

use std::collections::BTreeMap;

use super::{Diagnosis, DiagnosisKind, Facts, list};
use crate::history::{AutoOffsetReset, HistoryEvent, Incarnation, RecordPosition, TopicPartition};

/// Whether `position` is a record of `tp`.
pub(super) fn in_partition(position: &RecordPosition, tp: &TopicPartition) -> bool {
    position.partition == tp.partition && position.topic == tp.topic
}

/// A partition assigned without a committed offset, started past records produced before the
/// assignment that no one was ever handed and that are lost. Observed when the backend
/// recorded the `latest` reset; inferred ("likely") when it did not say where the start came
/// from but nothing was committed before. A group that never caught up after a recorded
/// `latest` reset, with such records pending behind it, is named too: they are lost as soon
/// as it commits (a black-box run, whose input is written before the consumers start).
pub(super) fn started_at_latest<'a>(facts: &Facts<'a>) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    let mut seen: Vec<&TopicPartition> = Vec::new();
    let commits = facts.commits();
    for (index, entry) in facts.entries.iter().enumerate() {
        let HistoryEvent::PartitionsAssigned {
            group,
            partitions,
            resets,
            ..
        } = &entry.event
        else {
            continue;
        };
        for (tp, start) in partitions {
            if *start <= 0 || seen.contains(&tp) {
                continue;
            }
            let reset = resets.iter().find(|(r, _)| r == tp).map(|(_, how)| *how);
            let likely = match reset {
                Some(AutoOffsetReset::Latest) => false,
                Some(AutoOffsetReset::Earliest) => continue,
                None => {
                    let committed_before = commits
                        .iter()
                        .any(|(i, g, p, _)| *i < index && *g == group && *p == tp);
                    if committed_before {
                        continue;
                    }
                    true
                }
            };
            let skipped_of = |ids: &mut dyn Iterator<Item = &'a str>| -> Vec<&'a str> {
                ids.filter(|id| {
                    facts.positions.get(id).is_some_and(|at| {
                        at.iter().any(|p| {
                            in_partition(p, tp) && p.offset < *start && !delivered(facts, p)
                        })
                    })
                })
                .collect()
            };
            let skipped = skipped_of(&mut facts.lost.iter().copied());
            // A group stuck at the end of a partition it started at `latest` (the reset
            // recorded, not inferred): the records before the start were never handed over
            // and never will be; nothing is lost yet only because nothing was committed.
            let pending =
                if skipped.is_empty() && facts.stuck && reset == Some(AutoOffsetReset::Latest) {
                    skipped_of(&mut facts.positions.keys().copied())
                } else {
                    Vec::new()
                };
            if skipped.is_empty() && pending.is_empty() {
                continue;
            }
            seen.push(tp);
            let (were, them) = if skipped.len() == 1 {
                ("was", "it is")
            } else {
                ("were", "they are")
            };
            let sentence = if !pending.is_empty() {
                let (were, them) = if pending.len() == 1 {
                    ("was", "it is")
                } else {
                    ("were", "they are")
                };
                format!(
                    "a new group starting at `latest`: {tp} had no committed offset, so \
                     auto.offset.reset=latest (librdkafka's default) started it at its end, \
                     offset {start} {}, past {} produced before the consumer joined, which \
                     {were} never handed to it: the group waits at the end and {them} lost as \
                     soon as it commits anything (set auto.offset.reset=earliest)",
                    facts.cite(index),
                    list(&pending),
                )
            } else if likely {
                format!(
                    "likely a new group starting at `latest`: {tp} was assigned from {start} \
                     with no offset committed for it before {}, past {} produced before the \
                     consumer joined, which no consumer was ever handed: {them} lost \
                     (librdkafka's default auto.offset.reset=latest starts a group without \
                     committed offsets at the end of the partition; set \
                     auto.offset.reset=earliest)",
                    facts.cite(index),
                    list(&skipped),
                )
            } else {
                format!(
                    "a new group starting at `latest`: {tp} had no committed offset, so \
                     auto.offset.reset=latest (librdkafka's default) started it at its end, \
                     offset {start} {}, past {} produced before the consumer joined, which \
                     {were} never handed to it: {them} lost (set auto.offset.reset=earliest)",
                    facts.cite(index),
                    list(&skipped),
                )
            };
            out.push(Diagnosis {
                kind: DiagnosisKind::StartedAtLatest,
                likely,
                sentence,
            });
        }
    }
    out
}

/// Whether any consumer was handed the record at `position` (or, in a black-box run, its
/// client fetched it from the broker).
fn delivered(facts: &Facts<'_>, position: &RecordPosition) -> bool {
    facts.entries.iter().any(|e| match &e.event {
        HistoryEvent::Delivered { position: p, .. } | HistoryEvent::Fetched { position: p, .. } => {
            p == position
        }
        _ => false,
    })
}

/// Every commit an instance made of a partition it had been handed records from names the
/// offset of the last record it was handed there (not the next one), and the failure is the
/// one that produces: such a record handed over again (duplicated), or a group whose last
/// commit stays one short of the end (never caught up).
pub(super) fn committed_own_offset(facts: &Facts<'_>) -> Vec<Diagnosis> {
    // The last record each incarnation was handed from each partition: (offset, entry).
    let mut handed: BTreeMap<(Incarnation, TopicPartition), (i64, usize)> = BTreeMap::new();
    // (delivery entry, commit entry, partition, offset) of each commit of a record's own offset.
    let mut own: Vec<(usize, usize, &TopicPartition, i64)> = Vec::new();
    let mut other = false;
    for (index, entry) in facts.entries.iter().enumerate() {
        let Some(inc) = entry.incarnation else {
            continue;
        };
        match &entry.event {
            HistoryEvent::Delivered { position, .. } => {
                handed.insert((inc, position.topic_partition()), (position.offset, index));
            }
            HistoryEvent::OffsetsCommitted { offsets, .. } => {
                for (tp, offset) in offsets {
                    match handed.get(&(inc, tp.clone())) {
                        Some(&(at, delivery)) if at == *offset => {
                            own.push((delivery, index, tp, *offset));
                        }
                        Some(_) => other = true,
                        None => {}
                    }
                }
            }
            _ => {}
        }
    }
    if own.is_empty() || other {
        return Vec::new();
    }
    // The records handed over again, duplicated: their offsets were committed as their own.
    let again: Vec<&str> = facts
        .duplicated
        .keys()
        .copied()
        .filter(|id| {
            facts.positions.get(id).is_some_and(|at| {
                at.iter().any(|p| {
                    own.iter()
                        .any(|(_, _, tp, o)| in_partition(p, tp) && p.offset == *o)
                })
            })
        })
        .collect();
    // The group's last commit of each partition is such a commit.
    let commits = facts.commits();
    let final_is_own = own.iter().any(|(_, c, tp, _)| {
        commits
            .iter()
            .rev()
            .find(|(_, _, p, _)| p == tp)
            .is_some_and(|(i, ..)| i == c)
    });
    let consequence = if !again.is_empty() {
        format!(
            "that record stays uncommitted and is handed over again after a restart or a \
             rebalance: {} duplicated",
            list(&again)
        )
    } else if facts.stuck && final_is_own {
        "the group's committed offset stays one short of the end: it never catches up".into()
    } else {
        return Vec::new();
    };
    let (delivery, commit, _, _) = own[own.len() - 1];
    vec![Diagnosis {
        kind: DiagnosisKind::CommittedOwnOffset,
        likely: true,
        sentence: format!(
            "likely committing `offset` instead of `offset + 1`: each commit names the offset \
             of the record just handed over rather than the next one to read ({}; {}), so \
             {consequence} (commit `message.offset() + 1`, or use `commit_message`)",
            facts.line(delivery),
            facts.line(commit),
        ),
    }]
}

/// A commit that moved a group's committed offset on a partition below the one it had, when
/// records between the two were handed over again (duplicated) or the group never caught up
/// from there.
pub(super) fn commit_moved_backwards(facts: &Facts<'_>) -> Vec<Diagnosis> {
    let commits = facts.commits();
    let mut current: BTreeMap<(&str, &TopicPartition), (i64, usize)> = BTreeMap::new();
    let mut out = Vec::new();
    for (index, group, tp, offset) in &commits {
        let key = (*group, *tp);
        if let Some(&(before, earlier)) = current.get(&key) {
            if *offset < before && out.is_empty() {
                let again: Vec<&str> = facts
                    .duplicated
                    .keys()
                    .copied()
                    .filter(|id| {
                        facts.positions.get(id).is_some_and(|at| {
                            at.iter().any(|p| {
                                in_partition(p, tp) && p.offset >= *offset && p.offset < before
                            })
                        })
                    })
                    .collect();
                let last = commits
                    .iter()
                    .rev()
                    .find(|(_, g, p, _)| g == group && p == tp)
                    .map(|(.., o)| *o);
                let consequence = if !again.is_empty() {
                    format!(
                        "the records between are handed over again: {} duplicated",
                        list(&again)
                    )
                } else if facts.stuck && last.is_some_and(|o| o < before) {
                    "the group's committed offset stays behind what was already processed: it \
                     never catches up"
                        .to_string()
                } else {
                    String::new()
                };
                if !consequence.is_empty() {
                    out.push(Diagnosis {
                        kind: DiagnosisKind::CommitMovedBackwards,
                        likely: false,
                        sentence: format!(
                            "a commit moved the group's committed offset on {tp} backwards, \
                             from {before} {} to {offset} {}: {consequence} (a commit made after \
                             a rebalance with offsets from before it, such as a batch's, does \
                             this: commit only offsets above the committed one, and drop what \
                             was received before partitions were revoked)",
                            facts.cite(earlier),
                            facts.cite(*index),
                        ),
                    });
                }
            }
        }
        current.insert(key, (*offset, *index));
    }
    out
}
