//! `Consumer`: rdkafka's consumer trait, over the kit's consumer.

use std::sync::Arc;

use rdkafka::consumer::{CommitMode, DefaultConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::groups::GroupList;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::ConsumerGroupMetadata;
use super::context::ConsumerContext;
use super::message::BorrowedMessage;

/// The calls a simulated consumer does not offer (yet): each fails, saying so.
fn unsupported(call: &str) -> String {
    let message = format!("effectively-once-rdkafka: `{call}` is not simulated");
    tracing::warn!("{message}");
    message
}

fn unsupported_code(call: &str) -> RDKafkaErrorCode {
    unsupported(call);
    RDKafkaErrorCode::NotImplemented
}

/// The calls common to consumers, in place of rdkafka's `Consumer` trait: the same methods
/// with the same signatures, carried out by the kit's consumer with librdkafka's semantics.
///
/// `client()` is not offered (there is no librdkafka client). The calls the kit does not
/// simulate (lookups by timestamp, metadata and group lists) compile and return an
/// error that names them.
pub trait Consumer<C = DefaultConsumerContext>
where
    C: ConsumerContext,
{
    /// The context the consumer was created with.
    fn context(&self) -> &Arc<C>;

    /// The consumer's group metadata, for `Producer::send_offsets_to_transaction`.
    fn group_metadata(&self) -> Option<ConsumerGroupMetadata>;

    /// Subscribes to `topics`, replacing the subscription.
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()>;

    /// Drops the subscription (and leaves the group).
    fn unsubscribe(&self);

    /// Consumes exactly these partitions, from the offsets given (outside any group).
    fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()>;

    /// Drops the manual assignment.
    fn unassign(&self) -> KafkaResult<()>;

    /// Adds partitions to the assignment.
    fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()>;

    /// Removes partitions from the assignment.
    fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()>;

    /// Whether the current assignment was lost (a session timeout, a `max.poll.interval.ms`
    /// breach) rather than revoked.
    fn assignment_lost(&self) -> bool;

    /// Moves an assigned partition's fetch position to `offset`: the next record handed out
    /// is the one at `offset` (records already fetched are dropped).
    fn seek<T: Into<Timeout>>(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: T,
    ) -> KafkaResult<()>;

    /// [`seek`](Self::seek) for each listed partition; per-partition errors are in the list
    /// returned.
    fn seek_partitions<T: Into<Timeout>>(
        &self,
        topic_partition_list: TopicPartitionList,
        timeout: T,
    ) -> KafkaResult<TopicPartitionList>;

    /// Commits explicit offsets (the next offset to consume, per partition).
    fn commit(
        &self,
        topic_partition_list: &TopicPartitionList,
        mode: CommitMode,
    ) -> KafkaResult<()>;

    /// Commits the stored offsets of the assigned partitions.
    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()>;

    /// Commits `message.offset() + 1` for the message's partition.
    fn commit_message(&self, message: &BorrowedMessage<'_>, mode: CommitMode) -> KafkaResult<()>;

    /// Stores `offset + 1` for the next commit.
    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()>;

    /// Stores `message.offset() + 1` for the next commit.
    fn store_offset_from_message(&self, message: &BorrowedMessage<'_>) -> KafkaResult<()>;

    /// Stores the given offsets as they are.
    fn store_offsets(&self, tpl: &TopicPartitionList) -> KafkaResult<()>;

    /// The topics subscribed to.
    fn subscription(&self) -> KafkaResult<TopicPartitionList>;

    /// The partitions assigned to the consumer.
    fn assignment(&self) -> KafkaResult<TopicPartitionList>;

    /// The group's committed offsets for the assigned partitions.
    fn committed<T>(&self, timeout: T) -> KafkaResult<TopicPartitionList>
    where
        T: Into<Timeout>,
        Self: Sized;

    /// The group's committed offsets for the listed partitions, assigned or not.
    fn committed_offsets<T>(
        &self,
        tpl: TopicPartitionList,
        timeout: T,
    ) -> KafkaResult<TopicPartitionList>
    where
        T: Into<Timeout>;

    /// Not simulated.
    fn offsets_for_timestamp<T>(
        &self,
        timestamp: i64,
        timeout: T,
    ) -> KafkaResult<TopicPartitionList>
    where
        T: Into<Timeout>,
        Self: Sized,
    {
        let _ = (timestamp, timeout);
        Err(KafkaError::OffsetFetch(unsupported_code(
            "offsets_for_timestamp",
        )))
    }

    /// Not simulated.
    fn offsets_for_times<T>(
        &self,
        timestamps: TopicPartitionList,
        timeout: T,
    ) -> KafkaResult<TopicPartitionList>
    where
        T: Into<Timeout>,
        Self: Sized,
    {
        let _ = (timestamps, timeout);
        Err(KafkaError::OffsetFetch(unsupported_code(
            "offsets_for_times",
        )))
    }

    /// The position (next offset to hand out) of each assigned partition.
    fn position(&self) -> KafkaResult<TopicPartitionList>;

    /// Not simulated.
    fn fetch_metadata<T>(&self, topic: Option<&str>, timeout: T) -> KafkaResult<Metadata>
    where
        T: Into<Timeout>,
        Self: Sized,
    {
        let _ = (topic, timeout);
        Err(KafkaError::MetadataFetch(unsupported_code(
            "fetch_metadata",
        )))
    }

    /// A partition's low and high watermarks.
    fn fetch_watermarks<T>(
        &self,
        topic: &str,
        partition: i32,
        timeout: T,
    ) -> KafkaResult<(i64, i64)>
    where
        T: Into<Timeout>,
        Self: Sized;

    /// Not simulated.
    fn fetch_group_list<T>(&self, group: Option<&str>, timeout: T) -> KafkaResult<GroupList>
    where
        T: Into<Timeout>,
        Self: Sized,
    {
        let _ = (group, timeout);
        Err(KafkaError::GroupListFetch(unsupported_code(
            "fetch_group_list",
        )))
    }

    /// Stops handing out records of these partitions until they are resumed.
    fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()>;

    /// Hands out records of paused partitions again.
    fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()>;

    /// The group's rebalance protocol once joined (`None` before).
    fn rebalance_protocol(&self) -> RebalanceProtocol;
}
