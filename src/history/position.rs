//! Names for partitions and records, shared by the history, fault anchors and the backends.

use std::fmt;

/// A partition of a topic, printed as `topic[partition]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Names `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The record at `offset` in this partition.
    pub fn at(&self, offset: i64) -> RecordPosition {
        RecordPosition {
            topic: self.topic.clone(),
            partition: self.partition,
            offset,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// Where a record sits in the log, printed as `topic[partition]@offset`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPosition {
    /// The topic name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
}

impl Clone for RecordPosition {
    fn clone(&self) -> Self {
        RecordPosition {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// Reuses the topic name's allocation.
    fn clone_from(&mut self, source: &Self) {
        self.topic.clone_from(&source.topic);
        self.partition = source.partition;
        self.offset = source.offset;
    }
}

impl RecordPosition {
    /// The partition this record belongs to.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}

impl fmt::Display for RecordPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]@{}", self.topic, self.partition, self.offset)
    }
}
