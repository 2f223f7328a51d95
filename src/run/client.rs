//! The clients an instance creates: the backend's own consumer and producer, behind the
//! rdkafka-shaped traits.

use std::future::Future;
use std::sync::Arc;

use rdkafka::consumer::{CommitMode, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage, Timestamp, ToBytes};
use rdkafka::producer::FutureRecord;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::backend::{ConsumerClient, PartitionQueueClient, ProducerClient};
use crate::client::{
    ConsumerHandle, GroupMetadata, KafkaConsumer, KafkaPartitionQueue, KafkaProducer,
};
use crate::history::TopicPartition;

/// The consumer an [`InstanceContext`](crate::InstanceContext) creates from the same
/// `ClientConfig` production uses: the simulator's, or librdkafka's on a real broker. It
/// implements [`KafkaConsumer`]; messages are [`OwnedMessage`]s.
///
/// It behaves as librdkafka's consumer: `recv` polls the group (joins, rebalances and their
/// callbacks happen inside it), `enable.auto.offset.store` stores each offset as the message is
/// handed out, `enable.auto.commit` commits stored offsets every `auto.commit.interval.ms` and
/// when partitions are revoked or the consumer is dropped. Every call is an interception point
/// of the fault schedule. Once its instance crashed, any use of it unwinds the calling task.
pub struct Consumer {
    inner: Box<dyn ConsumerClient>,
}

impl Consumer {
    pub(crate) fn new(inner: Box<dyn ConsumerClient>) -> Self {
        Consumer { inner }
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").finish_non_exhaustive()
    }
}

impl ConsumerHandle for Consumer {
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        self.inner.subscribe(topics)
    }
    fn unsubscribe(&self) {
        self.inner.unsubscribe()
    }
    fn assignment(&self) -> KafkaResult<TopicPartitionList> {
        self.inner.assignment()
    }
    fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.inner.assign(assignment)
    }
    fn unassign(&self) -> KafkaResult<()> {
        self.inner.unassign()
    }
    fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.inner.incremental_assign(assignment)
    }
    fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.inner.incremental_unassign(assignment)
    }
    fn assignment_lost(&self) -> bool {
        self.inner.assignment_lost()
    }
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.inner.rebalance_protocol()
    }
    fn subscription(&self) -> KafkaResult<TopicPartitionList> {
        self.inner.subscription()
    }
    fn fetch_watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Timeout,
    ) -> KafkaResult<(i64, i64)> {
        self.inner.fetch_watermarks(topic, partition, timeout)
    }
    fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        self.inner.commit(offsets, mode)
    }
    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
        self.inner.commit_consumer_state(mode)
    }
    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        self.inner.store_offset(topic, partition, offset)
    }
    fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        self.inner.store_offsets(offsets)
    }
    fn position(&self) -> KafkaResult<TopicPartitionList> {
        self.inner.position()
    }
    fn committed(&self, timeout: Timeout) -> KafkaResult<TopicPartitionList> {
        self.inner.committed(timeout)
    }
    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Timeout,
    ) -> KafkaResult<()> {
        self.inner.seek(topic, partition, offset, timeout)
    }
    fn seek_partitions(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        self.inner.seek_partitions(partitions, timeout)
    }
    fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        self.inner.pause(partitions)
    }
    fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        self.inner.resume(partitions)
    }
    fn committed_offsets(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        self.inner.committed_offsets(partitions, timeout)
    }
    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.inner.group_metadata()
    }
}

impl KafkaConsumer for Consumer {
    type Message<'a> = OwnedMessage;
    type PartitionQueue = PartitionQueue;

    fn split_partition_queue(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
    ) -> Option<PartitionQueue> {
        let inner = self
            .inner
            .split_partition_queue(TopicPartition::new(topic, partition))?;
        Some(PartitionQueue {
            inner,
            _consumer: self.clone(),
        })
    }

    fn recv(&self) -> impl Future<Output = KafkaResult<OwnedMessage>> + Send {
        self.inner.recv()
    }

    fn commit_message(&self, message: &OwnedMessage, mode: CommitMode) -> KafkaResult<()> {
        self.inner.commit_message(message, mode)
    }

    fn store_offset_from_message(&self, message: &OwnedMessage) -> KafkaResult<()> {
        self.inner.store_offset_from_message(message)
    }
}

/// A partition's queue split off a [`Consumer`] with
/// [`KafkaConsumer::split_partition_queue`], as rdkafka's `StreamPartitionQueue`: it hands
/// out the partition's records (each through the fault schedule's `recv` interception point,
/// recorded as delivered like the consumer's), and keeps the consumer alive. Dropping it
/// leaves the partition's records undelivered until the partition is split again, as
/// librdkafka does.
pub struct PartitionQueue {
    inner: Box<dyn PartitionQueueClient>,
    _consumer: Arc<Consumer>,
}

impl std::fmt::Debug for PartitionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionQueue").finish_non_exhaustive()
    }
}

impl PartitionQueue {
    /// Waits for the partition's next message (cancel-safe), as
    /// [`KafkaPartitionQueue::recv`].
    pub fn recv(&self) -> impl Future<Output = KafkaResult<OwnedMessage>> + Send + '_ {
        PartitionQueueClient::recv(&*self.inner)
    }

    /// The partition's messages as an endless stream, as [`KafkaPartitionQueue::stream`].
    pub fn stream(
        &self,
    ) -> impl futures_core::Stream<Item = KafkaResult<OwnedMessage>> + Send + '_ {
        KafkaPartitionQueue::<Consumer>::stream(self)
    }
}

impl KafkaPartitionQueue<Consumer> for PartitionQueue {
    fn recv(&self) -> impl Future<Output = KafkaResult<OwnedMessage>> + Send {
        PartitionQueueClient::recv(&*self.inner)
    }
}

/// The producer an [`InstanceContext`](crate::InstanceContext) creates: the simulator's, or
/// librdkafka's `FutureProducer` on a real broker. It implements [`KafkaProducer`].
///
/// A lost acknowledgement ([`Fault::LoseAck`](crate::Fault::LoseAck)) makes librdkafka retry:
/// without `enable.idempotence` the retry appends a duplicate, with it the broker drops the
/// duplicate by (producer id, epoch, sequence); `acks=0` reports no offsets. On a real broker
/// the lost acknowledgement is played as librdkafka's retry would land: a second copy without
/// idempotence, nothing with it.
pub struct Producer {
    inner: Box<dyn ProducerClient>,
}

impl Producer {
    pub(crate) fn new(inner: Box<dyn ProducerClient>) -> Self {
        Producer { inner }
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

impl KafkaProducer for Producer {
    fn send<K, P, T>(
        &self,
        record: FutureRecord<'_, K, P>,
        _queue_timeout: T,
    ) -> impl Future<Output = OwnedDeliveryResult> + Send
    where
        K: ToBytes + ?Sized + Sync,
        P: ToBytes + ?Sized + Sync,
        T: Into<Timeout> + Send,
    {
        self.inner.send(OutgoingRecord::from_record(record))
    }

    fn init_transactions<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.inner.init_transactions(timeout.into())
    }

    fn begin_transaction(&self) -> KafkaResult<()> {
        self.inner.begin_transaction()
    }

    /// Group metadata from a consumer of another backend is an `InvalidArgument` error.
    fn send_offsets_to_transaction<T: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: T,
    ) -> KafkaResult<()> {
        self.inner
            .send_offsets_to_transaction(offsets, metadata, timeout.into())
    }

    fn commit_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.inner.commit_transaction(timeout.into())
    }

    fn abort_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.inner.abort_transaction(timeout.into())
    }
}

/// A record on its way out, detached from the caller's borrows.
#[derive(Clone, Debug)]
pub(crate) struct OutgoingRecord {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl OutgoingRecord {
    pub(crate) fn from_record<K: ToBytes + ?Sized, P: ToBytes + ?Sized>(
        record: FutureRecord<'_, K, P>,
    ) -> Self {
        Self::from_parts(
            record.topic,
            record.partition,
            record.key.map(|k| k.to_bytes()),
            record.payload.map(|p| p.to_bytes()),
            record.timestamp,
            record.headers.as_ref(),
        )
    }

    /// A record from the fields of a `FutureRecord` or a `BaseRecord`.
    pub(crate) fn from_parts(
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        timestamp: Option<i64>,
        headers: Option<&OwnedHeaders>,
    ) -> Self {
        let headers = headers
            .map(|h| {
                (0..h.count())
                    .map(|i| {
                        let header = h.get(i);
                        (header.key.to_string(), header.value.map(<[u8]>::to_vec))
                    })
                    .collect()
            })
            .unwrap_or_default();
        OutgoingRecord {
            topic: topic.to_string(),
            partition,
            key: key.map(<[u8]>::to_vec),
            payload: payload.map(<[u8]>::to_vec),
            timestamp,
            headers,
        }
    }

    /// The message handed back with a delivery error, as rdkafka does.
    pub(crate) fn into_message(self, partition: i32, timestamp: i64) -> OwnedMessage {
        self.into_message_at(partition, -1, timestamp)
    }

    /// The message as a delivery report carries it, at `offset` (`-1001` when it was not
    /// delivered, as librdkafka reports it).
    pub(crate) fn into_message_at(
        self,
        partition: i32,
        offset: i64,
        timestamp: i64,
    ) -> OwnedMessage {
        let headers = (!self.headers.is_empty()).then(|| {
            self.headers
                .iter()
                .fold(OwnedHeaders::new(), |h, (key, value)| {
                    h.insert(Header {
                        key: key.as_str(),
                        value: value.as_deref(),
                    })
                })
        });
        OwnedMessage::new(
            self.payload,
            self.key,
            self.topic,
            Timestamp::CreateTime(timestamp),
            partition,
            offset,
            headers,
        )
    }
}
