//! Names for partitions and records, shared by the history, fault anchors and the backends.

use std::fmt;

use super::topic_name::TopicName;

/// A partition of a topic, printed as `topic[partition]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: TopicName,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Names `partition` of `topic`.
    pub fn new(topic: impl Into<TopicName>, partition: i32) -> Self {
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
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPosition {
    /// The topic name.
    pub topic: TopicName,
    /// The partition index.
    pub partition: i32,
    /// The record's offset in its partition.
    pub offset: i64,
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
