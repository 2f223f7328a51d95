//! rdkafka's low-level producers as a trait: [`KafkaBaseProducer`] (`BaseProducer`,
//! `ThreadedProducer`), whose `send` only enqueues and whose delivery reports reach a
//! [`DeliveryHandler`] from `poll`/`flush` (or a background thread).

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{OwnedMessage, ToBytes};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::util::{IntoOpaque, Timeout};
use rdkafka::{ClientContext, TopicPartitionList};

use super::{GroupMetadata, GroupMetadataRepr, foreign_group_metadata};

/// A delivery report as a [`DeliveryHandler`] gets it: the delivered message (with its
/// partition and offset), or the error with the message that was not delivered (offset
/// `-1001`, payload and key handed back). rdkafka's [`DeliveryResult`] detached from the
/// client.
pub type DeliveryReport = Result<OwnedMessage, (KafkaError, OwnedMessage)>;

/// Delivery callbacks, as rdkafka's [`ProducerContext::delivery`]: written once, wrapped in a
/// [`DeliveryContext`] for rdkafka's producers in production, handed to
/// [`InstanceContext::create_base_producer`](crate::InstanceContext::create_base_producer) in
/// tests.
///
/// Called once per record that `send` accepted: on a `BaseProducer` from inside `poll` and
/// `flush` (on the caller's thread), on a `ThreadedProducer` from its background thread.
pub trait DeliveryHandler: Send + Sync + 'static {
    /// What `send` carries along to the callback ([`BaseRecord::with_opaque_to`]).
    type DeliveryOpaque: IntoOpaque;

    /// A record was delivered, or failed for good.
    fn delivery(&self, report: &DeliveryReport, opaque: Self::DeliveryOpaque);
}

/// No callback: reports are served and dropped (rdkafka's `DefaultProducerContext`).
impl DeliveryHandler for () {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryReport, _: ()) {}
}

/// A [`DeliveryHandler`] as rdkafka's [`ProducerContext`], for production:
/// `ClientConfig::create_with_context(DeliveryContext(handler))`.
#[derive(Debug, Clone, Default)]
pub struct DeliveryContext<H>(pub H);

impl<H: DeliveryHandler> ClientContext for DeliveryContext<H> {}

impl<H: DeliveryHandler> ProducerContext for DeliveryContext<H> {
    type DeliveryOpaque = H::DeliveryOpaque;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: H::DeliveryOpaque) {
        let report = match result {
            Ok(message) => Ok(message.detach()),
            Err((error, message)) => Err((error.clone(), message.detach())),
        };
        self.0.delivery(&report, opaque);
    }
}

/// A low-level producer: rdkafka's `BaseProducer` and `ThreadedProducer` API.
///
/// `send` enqueues the record and returns at once; its delivery report reaches the
/// producer's [`DeliveryHandler`] (or rdkafka `ProducerContext`) later. An at-least-once
/// forwarder commits its input only once the reports of its outputs said delivered.
///
/// ```no_run
/// use effectively_once::clients::KafkaBaseProducer;
/// use rdkafka::producer::BaseRecord;
/// use std::time::Duration;
///
/// fn forward<P: KafkaBaseProducer<DeliveryOpaque = ()>>(producer: &P, payload: &str) {
///     let mut record = BaseRecord::<str, str>::to("out").payload(payload);
///     while let Err((error, back)) = producer.send(record) {
///         eprintln!("{error}: queue full, serving delivery reports");
///         producer.poll(Duration::from_millis(100));
///         record = back;
///     }
///     producer.poll(Duration::ZERO);
/// }
/// ```
pub trait KafkaBaseProducer: Send + Sync {
    /// What each record carries to its delivery callback.
    type DeliveryOpaque: IntoOpaque;

    /// Enqueues a record. A full queue (`queue.buffering.max.messages` records whose reports
    /// were not served yet) is `QueueFull`, an unknown partition `UnknownPartition`: the error
    /// comes with the record handed back.
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    fn send<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, Self::DeliveryOpaque>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, Self::DeliveryOpaque>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized;

    /// Serves the delivery reports that are ready, waiting up to `timeout` for some.
    fn poll<T: Into<Timeout>>(&self, timeout: T);

    /// Waits until every enqueued record was delivered or failed and its report served
    /// (`KafkaError::Flush(_TIMED_OUT)` when `timeout` passes first).
    fn flush<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;

    /// Records enqueued or in flight, and reports not served yet.
    fn in_flight_count(&self) -> i32;

    /// As [`KafkaProducer::init_transactions`](super::KafkaProducer::init_transactions).
    fn init_transactions<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;
    /// As [`KafkaProducer::begin_transaction`](super::KafkaProducer::begin_transaction).
    fn begin_transaction(&self) -> KafkaResult<()>;
    /// As [`KafkaProducer::send_offsets_to_transaction`](super::KafkaProducer::send_offsets_to_transaction).
    fn send_offsets_to_transaction<T: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: T,
    ) -> KafkaResult<()>;
    /// As [`KafkaProducer::commit_transaction`](super::KafkaProducer::commit_transaction).
    fn commit_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;
    /// As [`KafkaProducer::abort_transaction`](super::KafkaProducer::abort_transaction).
    fn abort_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;
}

macro_rules! base_producer_via_rdkafka {
    ($producer:ident, $($bound:tt)+) => {
        impl<C: ProducerContext + $($bound)+> KafkaBaseProducer for $producer<C> {
            type DeliveryOpaque = C::DeliveryOpaque;

            fn send<'a, K, P>(
                &self,
                record: BaseRecord<'a, K, P, C::DeliveryOpaque>,
            ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, C::DeliveryOpaque>)>
            where
                K: ToBytes + ?Sized,
                P: ToBytes + ?Sized,
            {
                $producer::send(self, record)
            }

            fn poll<T: Into<Timeout>>(&self, timeout: T) {
                $producer::poll(self, timeout)
            }

            fn flush<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
                Producer::flush(self, timeout)
            }

            fn in_flight_count(&self) -> i32 {
                Producer::in_flight_count(self)
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
    };
}

base_producer_via_rdkafka!(BaseProducer, Send + Sync);
base_producer_via_rdkafka!(ThreadedProducer, 'static);
