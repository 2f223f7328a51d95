//! The cluster as a run left it: every partition's records and every group's committed
//! offsets, read off the backend once the run stopped.
//!
//! The simulator hands its partitions' logs over as they are (records shared, not copied); a
//! partition's [`LoggedRecord`]s are built the first time they are read, so a run whose
//! snapshot nobody reads pays nothing for it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

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

/// A partition's log as a backend handed it over, read into [`LoggedRecord`]s on demand.
pub(crate) trait PartitionLog: Send + Sync {
    /// How many offsets the log holds (its end offset).
    fn len(&self) -> usize;
    /// The records, at offsets `0..len()`.
    fn records(&self) -> Vec<LoggedRecord>;
}

/// One partition's records: built from the backend's log the first time they are read.
struct Log {
    records: OnceLock<Vec<LoggedRecord>>,
    source: Option<Arc<dyn PartitionLog>>,
}

impl Log {
    fn built(records: Vec<LoggedRecord>) -> Self {
        Log {
            records: OnceLock::from(records),
            source: None,
        }
    }

    fn records(&self) -> &Vec<LoggedRecord> {
        self.records.get_or_init(|| {
            self.source
                .as_ref()
                .map_or_else(Vec::new, |source| source.records())
        })
    }

    fn records_mut(&mut self) -> &mut Vec<LoggedRecord> {
        self.records();
        self.records.get_mut().expect("built just above")
    }

    fn len(&self) -> usize {
        match (self.records.get(), &self.source) {
            (Some(records), _) => records.len(),
            (None, Some(source)) => source.len(),
            (None, None) => 0,
        }
    }
}

impl Clone for Log {
    fn clone(&self) -> Self {
        Log {
            records: self.records.clone(),
            source: self.source.clone(),
        }
    }
}

/// The cluster's state when the run stopped.
#[derive(Clone, Default)]
pub struct ClusterSnapshot {
    logs: BTreeMap<TopicPartition, Log>,
    committed: BTreeMap<(String, TopicPartition), i64>,
}

/// Prints as the plain maps it holds: every partition's records, then the committed offsets.
impl fmt::Debug for ClusterSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Logs<'a>(&'a BTreeMap<TopicPartition, Log>);
        impl fmt::Debug for Logs<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(tp, log)| (tp, log.records())))
                    .finish()
            }
        }
        f.debug_struct("ClusterSnapshot")
            .field("logs", &Logs(&self.logs))
            .field("committed", &self.committed)
            .finish()
    }
}

impl PartialEq for ClusterSnapshot {
    fn eq(&self, other: &Self) -> bool {
        self.committed == other.committed
            && self.logs.len() == other.logs.len()
            && self
                .logs
                .iter()
                .zip(&other.logs)
                .all(|((a, x), (b, y))| a == b && x.records() == y.records())
    }
}

impl Eq for ClusterSnapshot {}

impl ClusterSnapshot {
    /// The records of a partition (empty if it does not exist).
    pub fn records(&self, topic: &str, partition: i32) -> &[LoggedRecord] {
        self.logs
            .get(&TopicPartition::new(topic, partition))
            .map_or(&[], |log| log.records().as_slice())
    }

    /// The end offset (high watermark) of a partition.
    pub fn end_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.logs
            .get(&TopicPartition::new(topic, partition))
            .map(|log| log.len() as i64)
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
            .flat_map(|(tp, log)| log.records().iter().map(move |r| (tp.partition, r)))
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
        let logs = logs
            .into_iter()
            .map(|(tp, r)| (tp, Log::built(r)))
            .collect();
        ClusterSnapshot { logs, committed }
    }

    /// A snapshot of partition logs handed over by the backend, read when they are read.
    pub(crate) fn from_logs(
        logs: impl IntoIterator<Item = (TopicPartition, Arc<dyn PartitionLog>)>,
        committed: BTreeMap<(String, TopicPartition), i64>,
    ) -> Self {
        let logs = logs
            .into_iter()
            .map(|(tp, source)| {
                let log = Log {
                    records: OnceLock::new(),
                    source: Some(source),
                };
                (tp, log)
            })
            .collect();
        ClusterSnapshot { logs, committed }
    }

    /// Takes the transactional flags (aborted, marker) of the input partitions from the
    /// record the backend kept of what it wrote: a broker's `read_committed` readers are not
    /// trusted to tell aborted records apart (see the self-check). Partitions whose content
    /// differs from what was written keep what the broker said.
    pub(crate) fn with_input_flags(mut self, written: &ClusterSnapshot) -> Self {
        for (tp, records) in &written.logs {
            let records = records.records();
            let Some(read) = self.logs.get_mut(tp).map(Log::records_mut) else {
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
