//! Stored offsets: stored before processing and committed over a failed effect; stored and
//! never committed.

use std::time::Duration;

use super::offsets::in_partition;
use super::{Diagnosis, DiagnosisKind, Facts};
use crate::history::{CommitKind, HistoryEvent, Incarnation};

/// librdkafka's default `auto.commit.interval.ms`.
const AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

/// An effect that failed, for an event that is lost, after its record's offset was stored
/// (explicitly between handing the record over and the effect; or, with no explicit store at
/// all, by librdkafka's `enable.auto.offset.store` when it handed it over: inferred), and then
/// a commit by the same instance that covers the record.
pub(super) fn stored_before_failed_effect(facts: &Facts<'_>) -> Vec<Diagnosis> {
    let entries = facts.entries;
    for (failed, entry) in entries.iter().enumerate() {
        let (
            Some(inc),
            HistoryEvent::Effect {
                event_id, outcome, ..
            },
        ) = (entry.incarnation, &entry.event)
        else {
            continue;
        };
        if *outcome != crate::history::EffectOutcome::Failed
            || !facts.lost.contains(event_id.as_str())
        {
            continue;
        }
        let Some(positions) = facts.positions.get(event_id.as_str()) else {
            continue;
        };
        let mine = |i: &usize| entries[*i].incarnation == Some(inc);
        // The record handed over last before the failed effect.
        let Some((delivery, position)) =
            (0..failed)
                .rev()
                .filter(mine)
                .find_map(|i| match &entries[i].event {
                    HistoryEvent::Delivered { position, .. } if positions.contains(position) => {
                        Some((i, position))
                    }
                    _ => None,
                })
        else {
            continue;
        };
        let stored = (delivery..failed).filter(mine).find(|i| {
            matches!(&entries[*i].event, HistoryEvent::OffsetStored { partition, offset }
                if in_partition(position, partition) && *offset > position.offset)
        });
        let explicit_stores = entries.iter().any(|e| {
            e.incarnation == Some(inc) && matches!(e.event, HistoryEvent::OffsetStored { .. })
        });
        // The commit by the same instance that covers the record.
        let Some((commit, kind)) =
            (failed..entries.len())
                .filter(mine)
                .find_map(|i| match &entries[i].event {
                    HistoryEvent::OffsetsCommitted { offsets, kind, .. }
                        if offsets
                            .iter()
                            .any(|(tp, o)| in_partition(position, tp) && *o > position.offset) =>
                    {
                        Some((i, *kind))
                    }
                    _ => None,
                })
        else {
            continue;
        };
        // A commit in a revoke callback (the consumer closing, a rebalance) commits what
        // librdkafka stored, as its own commits on revoke and close do.
        let in_revoke = (failed..commit)
            .filter(mine)
            .any(|i| matches!(entries[i].event, HistoryEvent::PartitionsRevoked { .. }));
        let on_close = in_revoke || matches!(kind, CommitKind::Revoke | CommitKind::Close);
        let librdkafkas_own = on_close || kind == CommitKind::Auto;
        let (handled, swallowed) = after_failure(facts, inc, failed, commit, on_close);
        let name = if swallowed {
            "with a swallowed effect error"
        } else {
            "and committed over a failed effect"
        };
        let sentence = match stored {
            Some(store) => format!(
                "offsets stored before processing {name}: the offset of {position} was stored \
                 {} before its effect failed {}, {handled}: {event_id} is lost (store the offset \
                 only after the effect succeeded)",
                facts.cite(store),
                facts.cite(failed),
            ),
            None if !explicit_stores && librdkafkas_own => format!(
                "likely offsets stored before processing {name}: librdkafka's \
                 enable.auto.offset.store (on by default) stored the offset of {position} when \
                 it was handed over {}, its effect then failed {}, {handled}: {event_id} is lost \
                 (set enable.auto.offset.store=false and store each offset after its effect \
                 succeeded)",
                facts.cite(delivery),
                facts.cite(failed),
            ),
            None => continue,
        };
        return vec![Diagnosis {
            kind: DiagnosisKind::StoredBeforeFailedEffect,
            likely: stored.is_none(),
            sentence,
        }];
    }
    Vec::new()
}

/// What the instance did from the failed effect at `failed` to the commit at `commit`, that
/// commit cited, and whether that swallowed the error (it carried on rather than stopping with
/// it).
fn after_failure(
    facts: &Facts<'_>,
    inc: Incarnation,
    failed: usize,
    commit: usize,
    on_close: bool,
) -> (String, bool) {
    let exited = (failed..facts.entries.len()).find(|i| {
        facts.entries[*i].incarnation == Some(inc)
            && matches!(
                facts.entries[*i].event,
                HistoryEvent::InstanceExited { .. } | HistoryEvent::InstancePanicked { .. }
            )
    });
    let carried_on = (failed..commit).any(|i| {
        facts.entries[i].incarnation == Some(inc)
            && matches!(facts.entries[i].event, HistoryEvent::Delivered { .. })
    });
    match exited {
        Some(exit) if on_close && !carried_on => (
            format!(
                "and the consumer stopped with the error {}, but closing it committed the \
                 stored offset {}",
                facts.cite(exit),
                facts.cite(commit)
            ),
            false,
        ),
        _ => (
            format!(
                "the consumer carried on{}, and the stored offset was committed {}",
                if carried_on {
                    " with the next record"
                } else {
                    ""
                },
                facts.cite(commit)
            ),
            true,
        ),
    }
}

/// Offsets stored explicitly, no commit accepted or refused in the whole run, for longer than
/// librdkafka's default auto-commit interval, and a group that never caught up or records
/// handed over again.
pub(super) fn stored_never_committed(facts: &Facts<'_>) -> Vec<Diagnosis> {
    let entries = facts.entries;
    let committed = entries.iter().any(|e| {
        matches!(
            &e.event,
            HistoryEvent::OffsetsCommitted { .. } | HistoryEvent::CommitRejected { .. }
        ) || matches!(&e.event, HistoryEvent::TransactionCommitted { offsets, .. } if !offsets.is_empty())
    });
    if committed || (!facts.stuck && facts.duplicated.is_empty()) {
        return Vec::new();
    }
    let stores: Vec<usize> = (0..entries.len())
        .filter(|i| matches!(entries[*i].event, HistoryEvent::OffsetStored { .. }))
        .collect();
    let end = entries.last().map(|e| e.at).unwrap_or_default();
    // A store its instance outlived by the auto-commit interval: auto-commit would have
    // committed it.
    let outlived = stores.iter().any(|&s| {
        let (at, inc) = (entries[s].at, entries[s].incarnation);
        end >= at + AUTO_COMMIT_INTERVAL
            && !entries[s..].iter().any(|e| {
                e.incarnation == inc
                    && e.at < at + AUTO_COMMIT_INTERVAL
                    && matches!(
                        e.event,
                        HistoryEvent::InstanceCrashed { .. }
                            | HistoryEvent::InstanceExited { .. }
                            | HistoryEvent::InstancePanicked { .. }
                    )
            })
    });
    let (Some(&first), true) = (stores.first(), outlived) else {
        return Vec::new();
    };
    let more = match stores.len() - 1 {
        0 => String::new(),
        1 => " and once more".to_string(),
        n => format!(" and {n} times more"),
    };
    vec![Diagnosis {
        kind: DiagnosisKind::StoredNeverCommitted,
        likely: true,
        sentence: format!(
            "likely `enable.auto.commit=false` with only `store_offset`: offsets were stored {}{more} \
             but nothing was ever committed (`store_offset` only marks an offset for \
             librdkafka's auto-commit), so {} (commit the stored offsets with \
             `commit_consumer_state`, or enable auto-commit)",
            facts.cite(first),
            if facts.duplicated.is_empty() {
                "the group never catches up"
            } else {
                "every restart or rebalance hands the records over again"
            },
        ),
    }]
}
