//! An input offset is committed if and only if the event's outputs are.

use std::collections::BTreeSet;

use super::{Invariant, RunRecord, Violation};
use crate::history::HistoryEvent;

/// For every group that consumed the input: an event's offset is committed if and only if its
/// outputs are committed on every output topic. Committed past an event without its outputs
/// loses it; outputs committed without the offset are produced again by whoever consumes the
/// partition next. A transactional pipeline that sends its offsets to the transaction has
/// this by construction; one that commits offsets through the consumer does not.
///
/// Judged on the final state; checks nothing when no output topic is counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct OffsetsMatchOutputs;

impl Invariant for OffsetsMatchOutputs {
    fn name(&self) -> &str {
        "offsets match outputs"
    }

    fn check(&self, run: &RunRecord<'_>) -> Option<Violation> {
        let counts = run.output_counts();
        if counts.is_empty() {
            return None;
        }
        let inputs: BTreeSet<&str> = run
            .published
            .iter()
            .flat_map(|e| e.positions.iter().map(|p| p.topic.as_str()))
            .collect();
        // The groups that consumed the input.
        let mut groups: BTreeSet<&str> = BTreeSet::new();
        for event in run.history.events() {
            if let HistoryEvent::PartitionsAssigned {
                group, partitions, ..
            }
            | HistoryEvent::PartitionsAssignedManually { group, partitions } = event
            {
                if partitions
                    .iter()
                    .any(|(tp, _)| inputs.contains(tp.topic.as_str()))
                {
                    groups.insert(group);
                }
            }
        }
        let mut details = Vec::new();
        let mut event_ids: Vec<String> = Vec::new();
        for group in groups {
            for event in run.expecting_effects() {
                let committed_past = event.positions.iter().any(|p| {
                    run.cluster
                        .committed_offset(group, &p.topic, p.partition)
                        .is_some_and(|c| c > p.offset)
                });
                let missing: Vec<&str> = counts
                    .iter()
                    .filter(|(_, c)| c.get(&event.event_id).copied().unwrap_or(0) == 0)
                    .map(|(t, _)| t.as_str())
                    .collect();
                let position = &event.positions[0];
                let committed = run
                    .cluster
                    .committed_offset(group, &position.topic, position.partition)
                    .map_or_else(|| "nothing".to_string(), |c| format!("offset {c}"));
                let line = if committed_past && !missing.is_empty() {
                    format!(
                        "{} ({position}): group {group:?} committed {committed}, past it, but \
                         {} {} no output for it",
                        event.event_id,
                        missing.join(", "),
                        if missing.len() == 1 { "holds" } else { "hold" }
                    )
                } else if !committed_past && missing.len() < counts.len() {
                    format!(
                        "{} ({position}): its outputs are committed but group {group:?} \
                         committed {committed}: whoever consumes the partition next outputs it \
                         again",
                        event.event_id
                    )
                } else {
                    continue;
                };
                details.push(line);
                if !event_ids.contains(&event.event_id) {
                    event_ids.push(event.event_id.clone());
                }
            }
        }
        if details.is_empty() {
            return None;
        }
        Some(Violation {
            invariant: self.name().into(),
            summary: format!(
                "{} event{} whose committed offset disagrees with its outputs",
                event_ids.len(),
                if event_ids.len() == 1 { "" } else { "s" }
            ),
            event_ids,
            details,
        })
    }
}
