//! `ProducerContext` and `DeliveryResult`: delivery callbacks, and how the kit's reports
//! reach them.

use std::marker::PhantomData;
use std::sync::Arc;

use effectively_once::clients::{DeliveryHandler, DeliveryReport};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DefaultProducerContext, NoCustomPartitioner, Partitioner};
use rdkafka::util::IntoOpaque;

use super::message::BorrowedMessage;

/// A delivery report, as rdkafka's `DeliveryResult<'a>`: the delivered message (with its
/// partition and offset), or the error with the message that was not delivered (offset
/// `-1001`, key and payload handed back), over the simulated [`BorrowedMessage`].
pub type DeliveryResult<'a> = Result<BorrowedMessage<'a>, (KafkaError, BorrowedMessage<'a>)>;

/// Producer callbacks, in place of rdkafka's `ProducerContext`: the same items with the same
/// signatures (the report is the simulated [`DeliveryResult`]), so an
/// `impl ProducerContext for MyContext` written for rdkafka compiles unchanged.
///
/// `delivery` is called where librdkafka calls it: inside a `BaseProducer`'s `poll` and
/// `flush` (and its drop, for the records it purges), on a `ThreadedProducer`'s background
/// task. A custom partitioner is not simulated: a context that returns one from
/// `get_custom_partitioner` is refused at `create_with_context`.
pub trait ProducerContext<Part: Partitioner = NoCustomPartitioner>: ClientContext {
    /// What `send` carries along to the callback (`BaseRecord::with_opaque_to`).
    type DeliveryOpaque: IntoOpaque;

    /// A record was delivered, or failed for good.
    fn delivery(&self, delivery_result: &DeliveryResult<'_>, delivery_opaque: Self::DeliveryOpaque);

    /// A custom partitioner; the simulated producers take none.
    fn get_custom_partitioner(&self) -> Option<&Part> {
        None
    }
}

/// rdkafka's inert context: reports are served and dropped.
impl ProducerContext for DefaultProducerContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// Hands the kit's delivery reports to a [`ProducerContext`].
pub(crate) struct ContextDelivery<C, Part> {
    pub(crate) context: Arc<C>,
    _partitioner: PhantomData<fn() -> Part>,
}

impl<C, Part> ContextDelivery<C, Part> {
    pub(crate) fn new(context: Arc<C>) -> Self {
        ContextDelivery {
            context,
            _partitioner: PhantomData,
        }
    }
}

impl<C, Part> DeliveryHandler for ContextDelivery<C, Part>
where
    C: ProducerContext<Part> + 'static,
    Part: Partitioner + 'static,
{
    type DeliveryOpaque = C::DeliveryOpaque;

    fn delivery(&self, report: &DeliveryReport, opaque: C::DeliveryOpaque) {
        let result: DeliveryResult<'_> = match report {
            Ok(message) => Ok(BorrowedMessage::new(message.clone())),
            Err((error, message)) => Err((error.clone(), BorrowedMessage::new(message.clone()))),
        };
        self.context.delivery(&result, opaque);
    }
}
