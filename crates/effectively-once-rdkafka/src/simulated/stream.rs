//! `StreamConsumer`: the kit's consumer of the current run, under rdkafka's name.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use effectively_once::{ConsumerHandle, KafkaConsumer};
use futures_core::Stream;
use rdkafka::config::{FromClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::{CommitMode, DefaultConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::OwnedMessage;
use rdkafka::util::{DefaultRuntime, Timeout};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::ConsumerGroupMetadata;
use super::context::{self, ConsumerContext};
use super::join;
use super::message::BorrowedMessage;
use super::traits::Consumer;

/// rdkafka's `StreamConsumer`, simulated: `ClientConfig::create()` (or
/// `create_with_context`) makes the kit's consumer in the run of the calling task, with the
/// same configuration checks as `InstanceContext::create_consumer`; the context's callbacks
/// run where librdkafka runs them. `R` (rdkafka's async runtime) is only named: the kit runs
/// on tokio.
pub struct StreamConsumer<C = DefaultConsumerContext, R = DefaultRuntime>
where
    C: ConsumerContext + 'static,
{
    consumer: Arc<effectively_once::Consumer>,
    context: Arc<C>,
    _runtime: PhantomData<fn() -> R>,
}

impl<R> FromClientConfig for StreamConsumer<DefaultConsumerContext, R> {
    fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        Self::from_config_and_context(config, DefaultConsumerContext)
    }
}

impl<C: ConsumerContext + 'static, R> FromClientConfigAndContext<C> for StreamConsumer<C, R> {
    fn from_config_and_context(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let instance = join::instance("StreamConsumer")?;
        let context = Arc::new(context);
        let consumer = match context::handler(&context) {
            Some(handler) => instance.create_consumer_with_handler(config, handler)?,
            None => instance.create_consumer(config)?,
        };
        Ok(StreamConsumer {
            consumer: Arc::new(consumer),
            context,
            _runtime: PhantomData,
        })
    }
}

impl<C: ConsumerContext + 'static, R> StreamConsumer<C, R> {
    /// Waits for the next message; rebalances and their callbacks happen inside. Dropping the
    /// future consumes nothing (cancel-safe, as rdkafka's).
    pub async fn recv(&self) -> KafkaResult<BorrowedMessage<'_>> {
        self.consumer.recv().await.map(BorrowedMessage::new)
    }

    /// Splits a partition's messages off into a queue of their own, as rdkafka's: from then
    /// on [`StreamPartitionQueue::recv`] hands them out and [`recv`](Self::recv) does not.
    /// Keep polling `recv`: rebalances and callbacks happen there. The queue stays the
    /// partition's across rebalances; once dropped, the partition's messages go nowhere until
    /// it is split again (as librdkafka, measured on its mock cluster).
    pub fn split_partition_queue(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
    ) -> Option<StreamPartitionQueue<C, R>> {
        let queue = self.consumer.split_partition_queue(topic, partition)?;
        Some(StreamPartitionQueue {
            queue,
            _consumer: self.clone(),
        })
    }

    /// The messages as a stream that never ends, each item one `recv`.
    pub fn stream(&self) -> MessageStream<'_, C> {
        MessageStream {
            source: Source::Consumer(&self.consumer),
            next: None,
            _context: PhantomData,
        }
    }
}

impl<C: ConsumerContext + 'static, R> std::fmt::Debug for StreamConsumer<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamConsumer").finish_non_exhaustive()
    }
}

/// The stream of a [`StreamConsumer`]'s messages, as rdkafka's `MessageStream`. Dropping it
/// (with a `recv` in flight) consumes nothing.
pub struct MessageStream<'a, C: ConsumerContext + 'static = DefaultConsumerContext> {
    source: Source<'a>,
    next: Option<Pin<Box<dyn Future<Output = KafkaResult<OwnedMessage>> + Send + 'a>>>,
    _context: PhantomData<fn() -> C>,
}

/// Where a [`MessageStream`] receives from: the consumer, or one of its partition queues.
#[derive(Clone, Copy)]
enum Source<'a> {
    Consumer(&'a effectively_once::Consumer),
    Queue(&'a effectively_once::clients::PartitionQueue),
}

impl<'a, C: ConsumerContext + 'static> Stream for MessageStream<'a, C> {
    type Item = KafkaResult<BorrowedMessage<'a>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let source = self.source;
        let next = self.next.get_or_insert_with(|| match source {
            Source::Consumer(consumer) => Box::pin(consumer.recv()),
            Source::Queue(queue) => Box::pin(queue.recv()),
        });
        match next.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.next = None;
                Poll::Ready(Some(result.map(BorrowedMessage::new)))
            }
        }
    }
}

/// A queue of one partition of a [`StreamConsumer`], as rdkafka's `StreamPartitionQueue`
/// (see [`StreamConsumer::split_partition_queue`]). It keeps the consumer alive.
pub struct StreamPartitionQueue<C = DefaultConsumerContext, R = DefaultRuntime>
where
    C: ConsumerContext + 'static,
{
    queue: effectively_once::clients::PartitionQueue,
    _consumer: Arc<StreamConsumer<C, R>>,
}

impl<C: ConsumerContext + 'static, R> StreamPartitionQueue<C, R> {
    /// Waits for the partition's next message (cancel-safe, as rdkafka's).
    pub async fn recv(&self) -> KafkaResult<BorrowedMessage<'_>> {
        self.queue.recv().await.map(BorrowedMessage::new)
    }

    /// The partition's messages as a stream that never ends, each item one `recv`.
    pub fn stream(&self) -> MessageStream<'_, C> {
        MessageStream {
            source: Source::Queue(&self.queue),
            next: None,
            _context: PhantomData,
        }
    }
}

impl<C: ConsumerContext + 'static, R> std::fmt::Debug for StreamPartitionQueue<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPartitionQueue")
            .finish_non_exhaustive()
    }
}

impl<C: ConsumerContext + 'static> std::fmt::Debug for MessageStream<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStream").finish_non_exhaustive()
    }
}

impl<C: ConsumerContext + 'static, R> Consumer<C> for StreamConsumer<C, R> {
    fn context(&self) -> &Arc<C> {
        &self.context
    }
    fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        self.consumer.subscribe(topics)
    }
    fn unsubscribe(&self) {
        self.consumer.unsubscribe()
    }
    fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        self.consumer.commit(offsets, mode)
    }
    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
        self.consumer.commit_consumer_state(mode)
    }
    fn commit_message(&self, message: &BorrowedMessage<'_>, mode: CommitMode) -> KafkaResult<()> {
        KafkaConsumer::commit_message(&self.consumer, &message.position(), mode)
    }
    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        self.consumer.store_offset(topic, partition, offset)
    }
    fn store_offset_from_message(&self, message: &BorrowedMessage<'_>) -> KafkaResult<()> {
        KafkaConsumer::store_offset_from_message(&self.consumer, &message.position())
    }
    fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        self.consumer.store_offsets(offsets)
    }
    fn subscription(&self) -> KafkaResult<TopicPartitionList> {
        self.consumer.subscription()
    }
    fn assignment(&self) -> KafkaResult<TopicPartitionList> {
        self.consumer.assignment()
    }
    fn committed<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<TopicPartitionList> {
        self.consumer.committed(timeout.into())
    }
    fn position(&self) -> KafkaResult<TopicPartitionList> {
        self.consumer.position()
    }
    fn fetch_watermarks<T: Into<Timeout>>(
        &self,
        topic: &str,
        partition: i32,
        timeout: T,
    ) -> KafkaResult<(i64, i64)> {
        self.consumer
            .fetch_watermarks(topic, partition, timeout.into())
    }

    fn seek<T: Into<Timeout>>(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: T,
    ) -> KafkaResult<()> {
        self.consumer.seek(topic, partition, offset, timeout.into())
    }

    fn seek_partitions<T: Into<Timeout>>(
        &self,
        topic_partition_list: TopicPartitionList,
        timeout: T,
    ) -> KafkaResult<TopicPartitionList> {
        self.consumer
            .seek_partitions(topic_partition_list, timeout.into())
    }

    fn committed_offsets<T: Into<Timeout>>(
        &self,
        tpl: TopicPartitionList,
        timeout: T,
    ) -> KafkaResult<TopicPartitionList> {
        self.consumer.committed_offsets(tpl, timeout.into())
    }

    fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        self.consumer.pause(partitions)
    }

    fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.consumer.assign(assignment)
    }

    fn unassign(&self) -> KafkaResult<()> {
        self.consumer.unassign()
    }

    fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.consumer.incremental_assign(assignment)
    }

    fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.consumer.incremental_unassign(assignment)
    }

    fn assignment_lost(&self) -> bool {
        self.consumer.assignment_lost()
    }

    fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.consumer.rebalance_protocol()
    }

    fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        self.consumer.resume(partitions)
    }
}
