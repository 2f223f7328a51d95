//! `BaseProducer` and `ThreadedProducer`: the kit's low-level producers of the current run,
//! their delivery reports handed to the user's `ProducerContext`.

use std::sync::Arc;

use effectively_once::clients::KafkaBaseProducer;
use rdkafka::config::{FromClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, NoCustomPartitioner, Partitioner};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, TopicPartitionList};

use super::ConsumerGroupMetadata;
use super::delivery::{ContextDelivery, ProducerContext};
use super::join;
use super::producer::Producer;

/// The kit's producer behind a simulated `BaseProducer`.
type KitBase<C, Part> = effectively_once::clients::BaseProducer<ContextDelivery<C, Part>>;
/// The kit's producer behind a simulated `ThreadedProducer`.
type KitThreaded<C, Part> = effectively_once::clients::ThreadedProducer<ContextDelivery<C, Part>>;

/// The context, unless it asks for a custom partitioner (which is not simulated).
fn context<C, Part>(context: C, client: &str) -> KafkaResult<Arc<C>>
where
    C: ProducerContext<Part>,
    Part: Partitioner,
{
    if context.get_custom_partitioner().is_some() {
        return Err(KafkaError::ClientCreation(format!(
            "effectively-once-rdkafka: a simulated {client} takes no custom partitioner \
             (the context's `get_custom_partitioner` returned one); the simulator places \
             records with librdkafka's default partitioner"
        )));
    }
    Ok(Arc::new(context))
}

/// rdkafka's `BaseProducer`, simulated: `ClientConfig::create()` makes the kit's low-level
/// producer in the run of the calling task (idempotence, acks, `queue.buffering.max.messages`
/// and transactions as configured). `send` only enqueues; the context's `delivery` is called
/// from `poll` and `flush` on the caller's thread, and for the records purged by the drop.
pub struct BaseProducer<C = DefaultProducerContext, Part = NoCustomPartitioner>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + 'static,
{
    producer: KitBase<C, Part>,
}

impl<C, Part> std::fmt::Debug for BaseProducer<C, Part>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseProducer").finish_non_exhaustive()
    }
}

impl FromClientConfig for BaseProducer<DefaultProducerContext> {
    fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        Self::from_config_and_context(config, DefaultProducerContext)
    }
}

impl<C, Part> FromClientConfigAndContext<C> for BaseProducer<C, Part>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + 'static,
{
    fn from_config_and_context(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let context = self::context(context, "BaseProducer")?;
        let producer = join::instance("BaseProducer")?
            .create_base_producer(config, ContextDelivery::new(context))?;
        Ok(BaseProducer { producer })
    }
}

impl<C, Part> BaseProducer<C, Part>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + 'static,
{
    /// Serves the delivery reports that are ready (calling the context's `delivery`),
    /// waiting up to `timeout` for some.
    pub fn poll<T: Into<Timeout>>(&self, timeout: T) {
        self.producer.poll(timeout);
    }

    /// Enqueues a record and returns at once; a full queue (`QueueFull`) or an unknown
    /// partition hands the record back with the error.
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    pub fn send<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, C::DeliveryOpaque>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.producer.send(record)
    }

    /// The context the producer was created with (rdkafka's `Producer::context`).
    pub fn context(&self) -> &Arc<C> {
        &self.producer.handler().context
    }
}

/// rdkafka's `ThreadedProducer`, simulated: a [`BaseProducer`] whose delivery reports are
/// served by a background task of the instance (rdkafka's polling thread), which freezes and
/// dies with it. Clones share the producer, as rdkafka's do.
pub struct ThreadedProducer<C, Part = NoCustomPartitioner>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + 'static,
{
    producer: Arc<KitThreaded<C, Part>>,
}

impl<C, Part> Clone for ThreadedProducer<C, Part>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + 'static,
{
    fn clone(&self) -> Self {
        ThreadedProducer {
            producer: self.producer.clone(),
        }
    }
}

impl<C, Part> std::fmt::Debug for ThreadedProducer<C, Part>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedProducer").finish_non_exhaustive()
    }
}

impl FromClientConfig for ThreadedProducer<DefaultProducerContext, NoCustomPartitioner> {
    fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        Self::from_config_and_context(config, DefaultProducerContext)
    }
}

impl<C, Part> FromClientConfigAndContext<C> for ThreadedProducer<C, Part>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + Send + Sync + 'static,
{
    fn from_config_and_context(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let context = self::context(context, "ThreadedProducer")?;
        let producer = join::instance("ThreadedProducer")?
            .create_threaded_producer(config, ContextDelivery::new(context))?;
        Ok(ThreadedProducer {
            producer: Arc::new(producer),
        })
    }
}

impl<C, Part> ThreadedProducer<C, Part>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + 'static,
{
    /// As [`BaseProducer::send`].
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    pub fn send<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, C::DeliveryOpaque>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.producer.send(record)
    }

    /// Serves what the background task has not served yet; not normally needed.
    pub fn poll<T: Into<Timeout>>(&self, timeout: T) {
        self.producer.poll(timeout);
    }

    /// The context the producer was created with (rdkafka's `Producer::context`).
    pub fn context(&self) -> &Arc<C> {
        &self.producer.handler().context
    }
}

/// `Producer` for the low-level producers: each call goes to the kit's producer.
macro_rules! producer_via_kit {
    ($producer:ident) => {
        impl<C, Part> Producer<C, Part> for $producer<C, Part>
        where
            C: ProducerContext<Part> + 'static,
            Part: Partitioner + 'static,
        {
            fn flush<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
                self.producer.flush(timeout)
            }
            fn in_flight_count(&self) -> i32 {
                self.producer.in_flight_count()
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
    };
}

producer_via_kit!(BaseProducer);
producer_via_kit!(ThreadedProducer);
