//! The client traits for rdkafka's own types: the production side of the same consumer code.

use std::future::Future;
use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
    StreamConsumer, stream_consumer::StreamPartitionQueue,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, ToBytes};
use rdkafka::producer::{
    FutureProducer, FutureRecord, Producer, future_producer::OwnedDeliveryResult,
};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::{
    ConsumerHandle, GroupMetadata, GroupMetadataRepr, KafkaBaseConsumer, KafkaConsumer,
    KafkaPartitionQueue, KafkaProducer, RebalanceHandler, foreign_group_metadata,
};

/// An rdkafka consumer context that forwards rebalance and commit callbacks to a
/// [`RebalanceHandler`], so the same handler serves production and tests.
///
/// ```no_run
/// use effectively_once::{ConsumerHandle, RebalanceContext, RebalanceHandler};
/// use rdkafka::consumer::{CommitMode, Rebalance, StreamConsumer};
/// use rdkafka::ClientConfig;
///
/// struct CommitOnRevoke;
/// impl RebalanceHandler for CommitOnRevoke {
///     fn pre_rebalance(&self, consumer: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
///         if let Rebalance::Revoke(_) = rebalance {
///             let _ = consumer.commit_consumer_state(CommitMode::Sync);
///         }
///     }
/// }
///
/// let consumer: StreamConsumer<RebalanceContext<CommitOnRevoke>> = ClientConfig::new()
///     .set("bootstrap.servers", "localhost:9092")
///     .set("group.id", "notification-service")
///     .create_with_context(RebalanceContext::new(CommitOnRevoke))?;
/// # Ok::<(), rdkafka::error::KafkaError>(())
/// ```
pub struct RebalanceContext<H> {
    handler: H,
}

impl<H: RebalanceHandler> RebalanceContext<H> {
    /// Wraps a handler.
    pub fn new(handler: H) -> Self {
        RebalanceContext { handler }
    }

    /// The wrapped handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }
}

impl<H: RebalanceHandler> ClientContext for RebalanceContext<H> {}

impl<H: RebalanceHandler> ConsumerContext for RebalanceContext<H> {
    fn pre_rebalance(&self, base_consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.handler.pre_rebalance(base_consumer, rebalance);
    }

    fn post_rebalance(&self, base_consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.handler.post_rebalance(base_consumer, rebalance);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.handler.commit_callback(result, offsets);
    }
}

/// `ConsumerHandle` for a type that implements rdkafka's `Consumer<C>`.
macro_rules! consumer_handle_via_rdkafka {
    ($ty:ident) => {
        impl<C: ConsumerContext + 'static> ConsumerHandle for $ty<C> {
            fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
                Consumer::subscribe(self, topics)
            }
            fn unsubscribe(&self) {
                Consumer::unsubscribe(self)
            }
            fn assignment(&self) -> KafkaResult<TopicPartitionList> {
                Consumer::assignment(self)
            }
            fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
                Consumer::assign(self, assignment)
            }
            fn unassign(&self) -> KafkaResult<()> {
                Consumer::unassign(self)
            }
            fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
                Consumer::incremental_assign(self, assignment)
            }
            fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
                Consumer::incremental_unassign(self, assignment)
            }
            fn assignment_lost(&self) -> bool {
                Consumer::assignment_lost(self)
            }
            fn rebalance_protocol(&self) -> RebalanceProtocol {
                Consumer::rebalance_protocol(self)
            }
            fn subscription(&self) -> KafkaResult<TopicPartitionList> {
                Consumer::subscription(self)
            }
            fn fetch_watermarks(
                &self,
                topic: &str,
                partition: i32,
                timeout: Timeout,
            ) -> KafkaResult<(i64, i64)> {
                Consumer::fetch_watermarks(self, topic, partition, timeout)
            }
            fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
                Consumer::commit(self, offsets, mode)
            }
            fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
                Consumer::commit_consumer_state(self, mode)
            }
            fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
                Consumer::store_offset(self, topic, partition, offset)
            }
            fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
                Consumer::store_offsets(self, offsets)
            }
            fn position(&self) -> KafkaResult<TopicPartitionList> {
                Consumer::position(self)
            }
            fn committed(&self, timeout: Timeout) -> KafkaResult<TopicPartitionList> {
                Consumer::committed(self, timeout)
            }
            fn seek(
                &self,
                topic: &str,
                partition: i32,
                offset: Offset,
                timeout: Timeout,
            ) -> KafkaResult<()> {
                Consumer::seek(self, topic, partition, offset, timeout)
            }
            fn seek_partitions(
                &self,
                partitions: TopicPartitionList,
                timeout: Timeout,
            ) -> KafkaResult<TopicPartitionList> {
                Consumer::seek_partitions(self, partitions, timeout)
            }
            fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
                Consumer::pause(self, partitions)
            }
            fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
                Consumer::resume(self, partitions)
            }
            fn committed_offsets(
                &self,
                partitions: TopicPartitionList,
                timeout: Timeout,
            ) -> KafkaResult<TopicPartitionList> {
                Consumer::committed_offsets(self, partitions, timeout)
            }
            fn group_metadata(&self) -> Option<GroupMetadata> {
                Consumer::group_metadata(self).map(|m| GroupMetadata(GroupMetadataRepr::Rdkafka(m)))
            }
        }
    };
}

consumer_handle_via_rdkafka!(BaseConsumer);
consumer_handle_via_rdkafka!(StreamConsumer);

impl<C: ConsumerContext + 'static> KafkaBaseConsumer for BaseConsumer<C> {
    type Message<'a> = BorrowedMessage<'a>;

    fn poll<T: Into<Timeout>>(&self, timeout: T) -> Option<KafkaResult<BorrowedMessage<'_>>> {
        BaseConsumer::poll(self, timeout)
    }

    fn iter(&self) -> impl Iterator<Item = KafkaResult<BorrowedMessage<'_>>> {
        BaseConsumer::iter(self)
    }

    fn commit_message(&self, message: &BorrowedMessage<'_>, mode: CommitMode) -> KafkaResult<()> {
        Consumer::commit_message(self, message, mode)
    }

    fn store_offset_from_message(&self, message: &BorrowedMessage<'_>) -> KafkaResult<()> {
        Consumer::store_offset_from_message(self, message)
    }
}

impl<C: ConsumerContext + 'static> KafkaConsumer for StreamConsumer<C> {
    type Message<'a> = BorrowedMessage<'a>;

    fn recv(&self) -> impl Future<Output = KafkaResult<BorrowedMessage<'_>>> + Send {
        StreamConsumer::recv(self)
    }

    fn stream(
        &self,
    ) -> impl futures_core::Stream<Item = KafkaResult<BorrowedMessage<'_>>> + Send + '_ {
        StreamConsumer::stream(self)
    }

    fn commit_message(&self, message: &BorrowedMessage<'_>, mode: CommitMode) -> KafkaResult<()> {
        Consumer::commit_message(self, message, mode)
    }

    fn store_offset_from_message(&self, message: &BorrowedMessage<'_>) -> KafkaResult<()> {
        Consumer::store_offset_from_message(self, message)
    }

    type PartitionQueue = StreamPartitionQueue<C>;

    fn split_partition_queue(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
    ) -> Option<StreamPartitionQueue<C>> {
        StreamConsumer::split_partition_queue(self, topic, partition)
    }
}

impl<C: ConsumerContext + 'static> KafkaPartitionQueue<StreamConsumer<C>>
    for StreamPartitionQueue<C>
{
    fn recv(&self) -> impl Future<Output = KafkaResult<BorrowedMessage<'_>>> + Send {
        StreamPartitionQueue::recv(self)
    }

    fn stream(
        &self,
    ) -> impl futures_core::Stream<Item = KafkaResult<BorrowedMessage<'_>>> + Send + '_ {
        StreamPartitionQueue::stream(self)
    }
}

impl<C: ClientContext + 'static> KafkaProducer for FutureProducer<C> {
    fn send<K, P, T>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: T,
    ) -> impl Future<Output = OwnedDeliveryResult> + Send
    where
        K: ToBytes + ?Sized + Sync,
        P: ToBytes + ?Sized + Sync,
        T: Into<Timeout> + Send,
    {
        FutureProducer::send(self, record, queue_timeout)
    }

    fn init_transactions<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        Producer::init_transactions(self, timeout)
    }

    fn begin_transaction(&self) -> KafkaResult<()> {
        Producer::begin_transaction(self)
    }

    /// Group metadata from a simulated consumer is an `InvalidArgument` error.
    fn send_offsets_to_transaction<T: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: T,
    ) -> KafkaResult<()> {
        match &metadata.0 {
            GroupMetadataRepr::Rdkafka(m) => {
                Producer::send_offsets_to_transaction(self, offsets, m, timeout)
            }
            GroupMetadataRepr::Simulated { .. } => Err(foreign_group_metadata()),
        }
    }

    fn commit_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        Producer::commit_transaction(self, timeout)
    }

    fn abort_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        Producer::abort_transaction(self, timeout)
    }
}
