//! `FutureProducer` and the `Producer` trait: the kit's producer of the current run.

use std::marker::PhantomData;
use std::sync::Arc;

use effectively_once::KafkaProducer;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{FromClientConfig, FromClientConfigAndContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::ToBytes;
use rdkafka::producer::future_producer::{FutureProducerContext, OwnedDeliveryResult};
use rdkafka::producer::{DefaultProducerContext, FutureRecord, NoCustomPartitioner};
use rdkafka::util::{DefaultRuntime, Timeout};
use rdkafka::{ClientConfig, TopicPartitionList};

use super::ConsumerGroupMetadata;
use super::join;

/// rdkafka's `FutureProducer`, simulated: `ClientConfig::create()` makes the kit's producer
/// in the run of the calling task (idempotence, acks and transactions as configured). Clones
/// share the producer, as rdkafka's do. The context is kept but not called; `R` and `Part`
/// are only named.
pub struct FutureProducer<C = DefaultClientContext, R = DefaultRuntime, Part = NoCustomPartitioner>
{
    producer: Arc<effectively_once::Producer>,
    _context: Arc<C>,
    _types: PhantomData<fn() -> (R, Part)>,
}

impl<C, R, Part> Clone for FutureProducer<C, R, Part> {
    fn clone(&self) -> Self {
        FutureProducer {
            producer: self.producer.clone(),
            _context: self._context.clone(),
            _types: PhantomData,
        }
    }
}

impl<C, R, Part> std::fmt::Debug for FutureProducer<C, R, Part> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FutureProducer").finish_non_exhaustive()
    }
}

impl<R> FromClientConfig for FutureProducer<DefaultClientContext, R> {
    fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        Self::from_config_and_context(config, DefaultClientContext)
    }
}

impl<C: rdkafka::ClientContext + 'static, R> FromClientConfigAndContext<C>
    for FutureProducer<C, R>
{
    fn from_config_and_context(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let producer = join::instance("FutureProducer")?.create_producer(config)?;
        Ok(FutureProducer {
            producer: Arc::new(producer),
            _context: Arc::new(context),
            _types: PhantomData,
        })
    }
}

impl<C, R, Part> FutureProducer<C, R, Part> {
    /// Sends a record and waits for its delivery report (`queue_timeout` is not needed: the
    /// simulated queue is never full).
    pub async fn send<K, P, T>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: T,
    ) -> OwnedDeliveryResult
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
        T: Into<Timeout>,
    {
        let queue_timeout = queue_timeout.into();
        // The kit takes records whose key and payload are `Sync`; rdkafka's `send` does not ask.
        let key = record.key.map(|k| k.to_bytes().to_vec());
        let payload = record.payload.map(|p| p.to_bytes().to_vec());
        let mut bytes = FutureRecord::<[u8], [u8]>::to(record.topic);
        bytes.partition = record.partition;
        bytes.timestamp = record.timestamp;
        bytes.headers = record.headers;
        bytes.key = key.as_deref();
        bytes.payload = payload.as_deref();
        self.producer.send(bytes, queue_timeout).await
    }
}

/// The calls common to producers, in place of rdkafka's `Producer` trait: `flush`,
/// `in_flight_count` and the transactional calls, with rdkafka's signatures (`client()` and
/// `purge` are not offered; the simulated producers have an inherent `context()`).
pub trait Producer<C = DefaultProducerContext, Part = NoCustomPartitioner> {
    /// Waits until every record sent so far was delivered or failed and its report served
    /// (`KafkaError::Flush` when `timeout` passes first); a `FutureProducer`'s `send`
    /// returns with the delivery report, so nothing is left to wait for.
    fn flush<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;
    /// Records enqueued or in flight, and reports not served yet (a `FutureProducer`'s
    /// `send` returns with its report: 0).
    fn in_flight_count(&self) -> i32;
    /// Registers the `transactional.id`, fencing older producers with the same id.
    fn init_transactions<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;
    /// Opens a transaction.
    fn begin_transaction(&self) -> KafkaResult<()>;
    /// Adds consumer offsets to the open transaction.
    fn send_offsets_to_transaction<T: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        cgm: &ConsumerGroupMetadata,
        timeout: T,
    ) -> KafkaResult<()>;
    /// Commits the open transaction.
    fn commit_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;
    /// Aborts the open transaction.
    fn abort_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;
}

impl<C: rdkafka::ClientContext + 'static, R, Part> Producer<FutureProducerContext<C>, Part>
    for FutureProducer<C, R, Part>
{
    fn flush<T: Into<Timeout>>(&self, _timeout: T) -> KafkaResult<()> {
        Ok(())
    }
    fn in_flight_count(&self) -> i32 {
        0
    }
    fn init_transactions<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.producer.init_transactions(timeout)
    }
    fn begin_transaction(&self) -> KafkaResult<()> {
        self.producer.begin_transaction()
    }
    fn send_offsets_to_transaction<T: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        cgm: &ConsumerGroupMetadata,
        timeout: T,
    ) -> KafkaResult<()> {
        self.producer
            .send_offsets_to_transaction(offsets, cgm, timeout)
    }
    fn commit_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.producer.commit_transaction(timeout)
    }
    fn abort_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.producer.abort_transaction(timeout)
    }
}
