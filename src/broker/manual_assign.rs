//! Manual assignment on a real broker (`assign`, `unassign`, `incremental_assign`,
//! `incremental_unassign`): librdkafka's own calls, recorded in the history with the offset
//! each partition starts from, as the simulator records them.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use super::consumer::{BrokerContext, Owner, offsets_in, partitions};
use crate::history::{HistoryEvent, TopicPartition};

/// The timeout of the look-ups that resolve where a partition starts.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Which manual assignment call.
#[derive(Clone, Copy, Debug)]
pub(super) enum Change<'a> {
    /// `assign`: the list replaces the assignment.
    Assign(&'a TopicPartitionList),
    /// `unassign`.
    Unassign,
    /// `incremental_assign`.
    Add(&'a TopicPartitionList),
    /// `incremental_unassign`.
    Remove(&'a TopicPartitionList),
}

impl Owner {
    /// Makes `change` on `consumer` and records it when librdkafka accepted it.
    pub(super) fn change_assignment(
        &self,
        consumer: &BaseConsumer<BrokerContext>,
        change: Change<'_>,
    ) -> KafkaResult<()> {
        let before = Consumer::assignment(consumer)
            .map(|l| partitions(&l))
            .unwrap_or_default();
        match change {
            Change::Assign(list) => Consumer::assign(consumer, list)?,
            Change::Unassign => Consumer::unassign(consumer)?,
            Change::Add(list) => Consumer::incremental_assign(consumer, list)?,
            Change::Remove(list) => Consumer::incremental_unassign(consumer, list)?,
        }
        let (removed, added) = match change {
            Change::Assign(list) => {
                let kept = partitions(list);
                let removed = before.into_iter().filter(|tp| !kept.contains(tp)).collect();
                (removed, Some(list))
            }
            Change::Unassign => (before, None),
            Change::Add(list) => (Vec::new(), Some(list)),
            Change::Remove(list) => (partitions(list), None),
        };
        if !removed.is_empty() {
            self.record(HistoryEvent::PartitionsUnassigned {
                group: self.group.clone(),
                partitions: removed,
            });
        }
        if let Some(list) = added {
            let starts = self.starts(consumer, list);
            self.record(HistoryEvent::PartitionsAssignedManually {
                group: self.group.clone(),
                partitions: starts,
            });
        }
        Ok(())
    }

    /// Where each partition of `list` starts, as librdkafka resolves it: an absolute offset
    /// as given; `Beginning`, `End` and `OffsetTail` from the watermarks; `Invalid` and
    /// `Stored` from the group's committed offset, else `auto.offset.reset`.
    fn starts(
        &self,
        consumer: &BaseConsumer<BrokerContext>,
        list: &TopicPartitionList,
    ) -> Vec<(TopicPartition, i64)> {
        let committed = consumer
            .committed_offsets(list.clone(), LOOKUP_TIMEOUT)
            .map(|l| offsets_in(&l))
            .unwrap_or_default();
        self.note_committed(&committed);
        let watermarks = |tp: &TopicPartition| {
            consumer
                .fetch_watermarks(&tp.topic, tp.partition, LOOKUP_TIMEOUT)
                .unwrap_or((0, 0))
        };
        list.elements()
            .iter()
            .map(|e| {
                let tp = TopicPartition::new(e.topic(), e.partition());
                let start = match e.offset() {
                    Offset::Offset(o) => o,
                    Offset::Beginning => watermarks(&tp).0,
                    Offset::End => watermarks(&tp).1,
                    Offset::OffsetTail(n) => (watermarks(&tp).1 - n).max(watermarks(&tp).0),
                    _ => match committed.iter().find(|(c, _)| *c == tp) {
                        Some((_, o)) => *o,
                        None if self.reset_latest => watermarks(&tp).1,
                        None => watermarks(&tp).0,
                    },
                };
                (tp, start)
            })
            .collect()
    }
}
