//! The cluster as a run left it: every partition's records and every group's committed
//! offsets, read off the backend once the run stopped.

use std::collections::BTreeMap;

use super::position::TopicPartition;

/// One record in a [`ClusterSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRecord {
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its payload.
    pub payload: Option<Vec<u8>>,
    /// True for control records (transaction markers), which consumers never see.
    pub control: bool,
    /// True for records of an aborted transaction, which `read_committed` consumers never see.
    pub aborted: bool,
    /// True for records of a transaction that was still open when the run stopped.
    pub open: bool,
}

/// The cluster's state when the run stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    logs: BTreeMap<TopicPartition, Vec<LoggedRecord>>,
    committed: BTreeMap<(String, TopicPartition), i64>,
}

impl ClusterSnapshot {
    /// The records of a partition (empty if it does not exist).
    pub fn records(&self, topic: &str, partition: i32) -> &[LoggedRecord] {
        self.logs
            .get(&TopicPartition::new(topic, partition))
            .map_or(&[], Vec::as_slice)
    }

    /// The end offset (high watermark) of a partition.
    pub fn end_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.logs
            .get(&TopicPartition::new(topic, partition))
            .map(|r| r.len() as i64)
    }

    /// The records of `topic` a `read_committed` consumer reads, with their partitions: data
    /// records outside transactions or of committed ones (no markers, nothing aborted, nothing
    /// of a transaction still open).
    pub fn committed_records<'a>(
        &'a self,
        topic: &'a str,
    ) -> impl Iterator<Item = (i32, &'a LoggedRecord)> + 'a {
        self.logs
            .iter()
            .filter(move |(tp, _)| tp.topic == topic)
            .flat_map(|(tp, records)| records.iter().map(move |r| (tp.partition, r)))
            .filter(|(_, r)| !r.control && !r.aborted && !r.open)
    }

    /// A group's committed offset for a partition.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.committed
            .get(&(group.to_string(), TopicPartition::new(topic, partition)))
            .copied()
    }

    pub(crate) fn from_parts(
        logs: BTreeMap<TopicPartition, Vec<LoggedRecord>>,
        committed: BTreeMap<(String, TopicPartition), i64>,
    ) -> Self {
        ClusterSnapshot { logs, committed }
    }

    /// Takes the transactional flags (aborted, marker) of the input partitions from the
    /// record the backend kept of what it wrote: a broker's `read_committed` readers are not
    /// trusted to tell aborted records apart (see the self-check). Partitions whose content
    /// differs from what was written keep what the broker said.
    pub(crate) fn with_input_flags(mut self, written: &ClusterSnapshot) -> Self {
        for (tp, records) in &written.logs {
            let Some(read) = self.logs.get_mut(tp) else {
                continue;
            };
            let same = read.len() == records.len()
                && read
                    .iter()
                    .zip(records)
                    .all(|(r, w)| r.key == w.key && r.payload == w.payload);
            if !records.is_empty() && same {
                read.clone_from(records);
            }
        }
        self
    }
}
