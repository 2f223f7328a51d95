//! What a broker consumer's rebalance callback gets: the consumer being polled, behind the
//! kit's [`ConsumerHandle`].

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::consumer::{BrokerContext, Owner};
use super::manual_assign::Change;
use super::positioning;
use crate::client::{ConsumerHandle, GroupMetadata, GroupMetadataRepr, explicit_offsets};
use crate::history::{Operation, TopicPartition};
use crate::run::core::dead_error;

/// What a rebalance callback gets: the consumer being polled. Commits through it are
/// interception points; a crash makes them return an error instead of unwinding.
pub(super) struct CallbackHandle<'a> {
    pub(super) consumer: &'a BaseConsumer<BrokerContext>,
}

impl CallbackHandle<'_> {
    fn owner(&self) -> &Owner {
        &self.consumer.context().owner
    }

    fn commit_offsets(
        &self,
        operation: Operation,
        offsets: Vec<(TopicPartition, i64)>,
        mode: CommitMode,
    ) -> KafkaResult<()> {
        self.owner()
            .commit(self.consumer, operation, None, offsets, mode)
            .unwrap_or_else(|()| Err(dead_error()))
    }
}

impl ConsumerHandle for CallbackHandle<'_> {
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        Consumer::subscribe(self.consumer, topics)
    }
    fn unsubscribe(&self) {
        Consumer::unsubscribe(self.consumer)
    }
    fn assignment(&self) -> KafkaResult<TopicPartitionList> {
        Consumer::assignment(self.consumer)
    }
    fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        let change = Change::Assign(assignment);
        self.owner().change_assignment(self.consumer, change)
    }
    fn unassign(&self) -> KafkaResult<()> {
        let change = Change::Unassign;
        self.owner().change_assignment(self.consumer, change)
    }
    fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        let change = Change::Add(assignment);
        self.owner().change_assignment(self.consumer, change)
    }
    fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        let change = Change::Remove(assignment);
        self.owner().change_assignment(self.consumer, change)
    }
    fn assignment_lost(&self) -> bool {
        Consumer::assignment_lost(self.consumer)
    }
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        Consumer::rebalance_protocol(self.consumer)
    }
    fn subscription(&self) -> KafkaResult<TopicPartitionList> {
        Consumer::subscription(self.consumer)
    }
    fn fetch_watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Timeout,
    ) -> KafkaResult<(i64, i64)> {
        Consumer::fetch_watermarks(self.consumer, topic, partition, timeout)
    }
    fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        self.commit_offsets(Operation::Commit, explicit_offsets(offsets)?, mode)
    }
    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
        let offsets = self.owner().stored_offsets(self.consumer)?;
        self.commit_offsets(Operation::Commit, offsets, mode)
    }
    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        Consumer::store_offset(self.consumer, topic, partition, offset)
    }
    fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        Consumer::store_offsets(self.consumer, offsets)
    }
    fn position(&self) -> KafkaResult<TopicPartitionList> {
        Consumer::position(self.consumer)
    }
    fn committed(&self, timeout: Timeout) -> KafkaResult<TopicPartitionList> {
        Consumer::committed(self.consumer, timeout)
    }
    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Timeout,
    ) -> KafkaResult<()> {
        let tp = TopicPartition::new(topic, partition);
        positioning::seek(self.owner(), self.consumer, &tp, offset, timeout)
            .unwrap_or_else(|()| Err(dead_error()))
    }
    fn seek_partitions(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        positioning::seek_partitions(self.owner(), self.consumer, partitions, timeout)
            .unwrap_or_else(|()| Err(dead_error()))
    }
    fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        positioning::pause(self.owner(), self.consumer, partitions, true)
    }
    fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        positioning::pause(self.owner(), self.consumer, partitions, false)
    }
    fn committed_offsets(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        Consumer::committed_offsets(self.consumer, partitions, timeout)
    }
    fn group_metadata(&self) -> Option<GroupMetadata> {
        Consumer::group_metadata(self.consumer)
            .map(|m| GroupMetadata(GroupMetadataRepr::Rdkafka(m)))
    }
}
