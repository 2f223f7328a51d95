//! Topics, partitions and their logs.

use std::collections::{BTreeMap, VecDeque};

/// What occupies an offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// An application record.
    Data,
    /// A transaction marker. Markers occupy offsets but are never delivered to applications;
    /// transactions arrive in a later version, the log already leaves room for them.
    #[allow(dead_code)]
    Control,
}

/// One record as the broker stores it.
#[derive(Clone, Debug)]
pub(crate) struct StoredRecord {
    pub kind: RecordKind,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// CreateTime in milliseconds (virtual).
    pub timestamp: i64,
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
}

impl Partition {
    /// The offset the next record will get (the high watermark: every append is replicated
    /// at once in the simulator).
    pub(crate) fn end_offset(&self) -> i64 {
        self.records.len() as i64
    }

    /// Appends without producer bookkeeping.
    pub(crate) fn append(&mut self, record: StoredRecord) -> i64 {
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
            key: None,
            payload: Some(b"x".to_vec()),
            headers: Vec::new(),
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
