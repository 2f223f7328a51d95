//! Topics, partitions and their logs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::config::IsolationLevel as Isolation;
use crate::history::{LoggedRecord, PartitionLog};

/// What occupies an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// An application record.
    Data,
    /// A transaction marker (commit or abort). Markers occupy offsets but are never delivered
    /// to applications.
    Control,
}

/// One record as the broker stores it. Its key and payload are shared (with the run's input,
/// the cluster snapshot, the history's key text), never copied inside the cluster.
#[derive(Clone, Debug)]
pub(crate) struct StoredRecord {
    pub kind: RecordKind,
    /// The producer id of a record written inside a transaction.
    pub transaction: Option<i64>,
    pub key: Option<Arc<[u8]>>,
    pub payload: Option<Arc<[u8]>>,
    pub headers: Box<[(String, Option<Vec<u8>>)]>,
    /// CreateTime in milliseconds (virtual).
    pub timestamp: i64,
}

impl StoredRecord {
    /// The key as the history shows it (see [`key_text`](crate::history::key_text)).
    pub(crate) fn key_text(&self) -> Option<Arc<str>> {
        self.key.as_ref().map(crate::history::key_text)
    }
}

/// How many recent batches the broker remembers per idempotent producer, as Kafka does.
const IDEMPOTENCE_WINDOW: usize = 5;

/// The broker's memory of one idempotent producer on one partition.
#[derive(Clone, Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    /// (sequence, offset) of the most recent batches.
    recent: VecDeque<(i32, i64)>,
}

/// What an append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Append {
    /// Appended at this offset.
    Appended(i64),
    /// The idempotent producer had already appended this sequence, at this offset.
    Duplicate(i64),
}

/// One partition's log. Offsets are dense: a record's offset is its index.
#[derive(Clone, Debug, Default)]
pub(crate) struct Partition {
    pub records: Vec<StoredRecord>,
    producers: BTreeMap<i64, ProducerEntry>,
    /// The first offset of each producer's open transaction on this partition.
    open: BTreeMap<i64, i64>,
    /// The aborted transactions: producer id, first offset, offset of the abort marker (the
    /// broker's aborted-transaction index).
    aborted: Vec<(i64, i64, i64)>,
    /// How many control records (transaction markers) the log holds.
    controls: usize,
}

impl Partition {
    /// The offset the next record will get (the high watermark: every append is replicated
    /// at once in the simulator).
    pub(crate) fn end_offset(&self) -> i64 {
        self.records.len() as i64
    }

    /// The last stable offset: the first offset of the earliest open transaction, or the high
    /// watermark when none is open. `read_committed` consumers never read past it.
    pub(crate) fn last_stable_offset(&self) -> i64 {
        self.open
            .values()
            .copied()
            .min()
            .unwrap_or_else(|| self.end_offset())
    }

    /// How far a consumer with `isolation` may read.
    pub(crate) fn fetch_limit(&self, isolation: Isolation) -> i64 {
        match isolation {
            Isolation::ReadCommitted => self.last_stable_offset(),
            Isolation::ReadUncommitted => self.end_offset(),
        }
    }

    /// Whether the record at `offset` is handed to a consumer with `isolation` (below its
    /// fetch limit): data records only, and for `read_committed` none of an aborted
    /// transaction.
    pub(crate) fn delivers(&self, offset: i64, isolation: Isolation) -> bool {
        // A log without markers and aborted transactions (the common case) delivers every
        // offset it holds: the record itself need not be read (every poll asks).
        if self.controls == 0 && self.aborted.is_empty() {
            return (0..self.end_offset()).contains(&offset);
        }
        let Some(record) = self.records.get(offset as usize) else {
            return false;
        };
        if record.kind == RecordKind::Control {
            return false;
        }
        isolation == Isolation::ReadUncommitted || !self.aborted_at(offset)
    }

    /// Whether a consumer with `isolation` positioned at `offset` has nothing left to
    /// consume: no record it would be handed from there to the end, and (`read_committed`) no
    /// open transaction whose outcome it waits for.
    pub(crate) fn settled_from(&self, offset: i64, isolation: Isolation) -> bool {
        if isolation == Isolation::ReadCommitted && !self.open.is_empty() {
            return false;
        }
        (offset.max(0)..self.end_offset()).all(|o| !self.delivers(o, isolation))
    }

    /// Whether the record at `offset` belongs to an aborted transaction.
    pub(crate) fn aborted_at(&self, offset: i64) -> bool {
        let Some(pid) = self.transaction_at(offset) else {
            return false;
        };
        self.aborted
            .iter()
            .any(|&(p, first, marker)| p == pid && (first..marker).contains(&offset))
    }

    /// Whether the record at `offset` belongs to a transaction still open.
    pub(crate) fn open_at(&self, offset: i64) -> bool {
        let Some(pid) = self.transaction_at(offset) else {
            return false;
        };
        self.open.get(&pid).is_some_and(|&first| offset >= first)
    }

    /// The producer id of the transaction the record at `offset` was written in, if any.
    fn transaction_at(&self, offset: i64) -> Option<i64> {
        self.records
            .get(offset as usize)
            .and_then(|r| r.transaction)
    }

    /// Notes that `producer_id`'s open transaction wrote at `offset` (the first write opens
    /// it on this partition).
    pub(crate) fn note_transactional_write(&mut self, producer_id: i64, offset: i64) {
        self.open.entry(producer_id).or_insert(offset);
    }

    /// Ends `producer_id`'s open transaction on this partition with a marker; returns the
    /// marker's offset.
    pub(crate) fn end_transaction(
        &mut self,
        producer_id: i64,
        commit: bool,
        timestamp: i64,
    ) -> i64 {
        let marker = self.append(StoredRecord {
            kind: RecordKind::Control,
            transaction: Some(producer_id),
            key: None,
            payload: None,
            headers: Box::default(),
            timestamp,
        });
        if let Some(first) = self.open.remove(&producer_id) {
            if !commit {
                self.aborted.push((producer_id, first, marker));
            }
        }
        marker
    }

    /// Appends without producer bookkeeping.
    pub(crate) fn append(&mut self, record: StoredRecord) -> i64 {
        self.controls += usize::from(record.kind == RecordKind::Control);
        self.records.push(record);
        self.end_offset() - 1
    }

    /// Appends a batch from an idempotent producer, dropping it when `(producer_id, epoch,
    /// sequence)` was already appended.
    pub(crate) fn append_idempotent(
        &mut self,
        producer_id: i64,
        epoch: i16,
        sequence: i32,
        record: StoredRecord,
    ) -> Append {
        let entry = self.producers.entry(producer_id).or_default();
        if entry.epoch == epoch {
            if let Some(&(_, offset)) = entry.recent.iter().find(|(s, _)| *s == sequence) {
                return Append::Duplicate(offset);
            }
        } else {
            entry.epoch = epoch;
            entry.recent.clear();
        }
        let offset = self.records.len() as i64;
        self.controls += usize::from(record.kind == RecordKind::Control);
        self.records.push(record);
        let entry = self
            .producers
            .get_mut(&producer_id)
            .expect("entry inserted above");
        entry.recent.push_back((sequence, offset));
        if entry.recent.len() > IDEMPOTENCE_WINDOW {
            entry.recent.pop_front();
        }
        Append::Appended(offset)
    }
}

/// The log as the run's outcome reads it, once the run is over.
impl PartitionLog for Partition {
    fn len(&self) -> usize {
        self.records.len()
    }

    fn records(&self) -> Vec<LoggedRecord> {
        self.records
            .iter()
            .enumerate()
            .map(|(offset, r)| LoggedRecord {
                offset: offset as i64,
                key: r.key.as_deref().map(<[u8]>::to_vec),
                payload: r.payload.as_deref().map(<[u8]>::to_vec),
                control: r.kind == RecordKind::Control,
                aborted: self.aborted_at(offset as i64),
                open: self.open_at(offset as i64),
            })
            .collect()
    }
}

/// A topic: a fixed number of partitions.
#[derive(Clone, Debug)]
pub(crate) struct Topic {
    pub partitions: Vec<Partition>,
}

impl Topic {
    pub(crate) fn new(partitions: i32) -> Self {
        Topic {
            partitions: (0..partitions).map(|_| Partition::default()).collect(),
        }
    }

    pub(crate) fn partition_count(&self) -> i32 {
        self.partitions.len() as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> StoredRecord {
        StoredRecord {
            kind: RecordKind::Data,
            transaction: None,
            key: None,
            payload: Some(Arc::from(&b"x"[..])),
            headers: Box::default(),
            timestamp: 0,
        }
    }

    #[test]
    fn idempotent_appends_drop_repeated_sequences_within_an_epoch() {
        let mut p = Partition::default();
        assert_eq!(p.append_idempotent(7, 0, 0, rec()), Append::Appended(0));
        assert_eq!(p.append_idempotent(7, 0, 0, rec()), Append::Duplicate(0));
        assert_eq!(p.append_idempotent(8, 0, 0, rec()), Append::Appended(1));
        assert_eq!(p.append_idempotent(7, 0, 1, rec()), Append::Appended(2));
        assert_eq!(p.append_idempotent(7, 1, 1, rec()), Append::Appended(3));
        assert_eq!(p.end_offset(), 4);
    }
}
