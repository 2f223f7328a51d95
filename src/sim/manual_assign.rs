//! Manual assignment (`assign`, `unassign`, `incremental_assign`, `incremental_unassign`), as
//! librdkafka does it: the consumer takes the partitions it names, outside any group
//! rebalance (no join, no callbacks), each from the offset it gives, the group's committed
//! offset or `auto.offset.reset`. Its commits carry no member and generation -1, which the
//! coordinator accepts only while the group has no active members ([`super::group`]).

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::World;
use super::config::OffsetReset;
use super::consumer::ConsumerState;
use crate::history::{HistoryEvent, TopicPartition};

/// Which manual assignment call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Change<'a> {
    /// `assign`: the list replaces the assignment.
    Assign(&'a TopicPartitionList),
    /// `unassign`.
    Unassign,
    /// `incremental_assign`.
    Add(&'a TopicPartitionList),
    /// `incremental_unassign`.
    Remove(&'a TopicPartitionList),
}

/// librdkafka's answer to an incremental call on a member of an eager-protocol group.
fn eager_state_error() -> KafkaError {
    KafkaError::Subscription("_STATE".into())
}

impl World {
    /// Makes `change` to the consumer `c`'s assignment and records it.
    pub(crate) fn change_assignment(
        &mut self,
        c: &mut ConsumerState,
        change: Change<'_>,
    ) -> KafkaResult<()> {
        let in_group = c.member.is_some();
        let (removed, added): (Vec<TopicPartition>, Vec<(TopicPartition, Offset)>) = match change {
            Change::Assign(list) => {
                let added = entries(list);
                let removed = c
                    .assignment
                    .iter()
                    .filter(|tp| !added.iter().any(|(a, _)| a == *tp))
                    .cloned()
                    .collect();
                (removed, added)
            }
            Change::Unassign => (c.assignment.clone(), Vec::new()),
            Change::Add(_) | Change::Remove(_) if in_group => {
                return Err(eager_state_error());
            }
            Change::Add(list) => {
                let added = entries(list);
                if added.iter().any(|(tp, _)| c.assignment.contains(tp)) {
                    return Err(KafkaError::Subscription("_CONFLICT".into()));
                }
                (Vec::new(), added)
            }
            Change::Remove(list) => {
                let removed: Vec<TopicPartition> =
                    entries(list).into_iter().map(|(tp, _)| tp).collect();
                if removed.iter().any(|tp| !c.assignment.contains(tp)) {
                    return Err(KafkaError::Subscription("_INVALID_ARG".into()));
                }
                (removed, Vec::new())
            }
        };
        c.lost = false;
        if c.assigned && c.group_assignment.is_none() {
            c.group_assignment = Some(c.assignment.clone());
        }
        if matches!(change, Change::Assign(_) | Change::Unassign) {
            // librdkafka clears the whole assignment first: every partition starts over.
            c.assignment.clear();
            c.positions.clear();
            c.starts.clear();
            c.stored.clear();
            c.eof_reported.clear();
            c.assigned_offsets.clear();
        }
        for tp in &removed {
            c.assignment.retain(|a| a != tp);
            c.positions.remove(tp);
            c.starts.remove(tp);
            c.stored.remove(tp);
            c.eof_reported.remove(tp);
            c.assigned_offsets.remove(tp);
        }
        let group = c.settings.group_id.clone();
        if !removed.is_empty() {
            self.record(
                Some(c.incarnation),
                HistoryEvent::PartitionsUnassigned {
                    group: group.clone(),
                    partitions: removed,
                },
            );
        }
        if matches!(change, Change::Assign(_) | Change::Add(_)) {
            let mut starts = Vec::new();
            for (tp, offset) in added {
                c.assignment.push(tp.clone());
                let raw = match offset {
                    Offset::Invalid => Offset::Stored,
                    other => other,
                };
                if let Some(raw) = raw.to_raw() {
                    c.assigned_offsets.insert(tp.clone(), raw);
                }
                if let Some(start) = self.start_of(c, &tp, offset) {
                    c.positions.insert(tp.clone(), start);
                    c.starts.insert(tp.clone(), start);
                    starts.push((tp, start));
                }
            }
            self.record(
                Some(c.incarnation),
                HistoryEvent::PartitionsAssignedManually {
                    group,
                    partitions: starts,
                },
            );
        }
        self.touch();
        Ok(())
    }

    /// Where a manually assigned partition starts: an absolute offset as given; `Beginning`,
    /// `End` and `OffsetTail` from the log; `Invalid` and `Stored` from the group's committed
    /// offset, else `auto.offset.reset` (`error`: the consumer reports `_AUTO_OFFSET_RESET`
    /// and the partition has no position).
    fn start_of(&self, c: &mut ConsumerState, tp: &TopicPartition, offset: Offset) -> Option<i64> {
        let end = self.end_offset(tp).unwrap_or(0);
        match offset {
            Offset::Offset(o) => Some(o),
            Offset::Beginning => Some(0),
            Offset::End => Some(end),
            Offset::OffsetTail(n) => Some((end - n).max(0)),
            Offset::Invalid | Offset::Stored => {
                let committed = self
                    .groups
                    .get(&c.settings.group_id)
                    .and_then(|g| g.committed.get(tp))
                    .copied();
                match (committed, c.settings.auto_offset_reset) {
                    (Some(o), _) => Some(o),
                    (None, OffsetReset::Earliest) => Some(0),
                    (None, OffsetReset::Latest) => Some(end),
                    (None, OffsetReset::Error) => {
                        c.errors.push_back(KafkaError::MessageConsumption(
                            RDKafkaErrorCode::AutoOffsetReset,
                        ));
                        None
                    }
                }
            }
        }
    }
}

/// The partitions of a list, each with its offset, first occurrence kept.
fn entries(list: &TopicPartitionList) -> Vec<(TopicPartition, Offset)> {
    let mut out: Vec<(TopicPartition, Offset)> = Vec::new();
    for e in list.elements() {
        let tp = TopicPartition::new(e.topic(), e.partition());
        if !out.iter().any(|(seen, _)| *seen == tp) {
            out.push((tp, e.offset()));
        }
    }
    out
}
