//! `ConsumerContext`: the user's callbacks, and how they reach the kit's consumer.

use std::any::TypeId;
use std::sync::Arc;
use std::time::Duration;

use effectively_once::{ConsumerHandle, RebalanceHandler};
use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{DefaultConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::util::Timeout;

use super::base::{self, BaseConsumer};

/// Consumer callbacks, in place of rdkafka's `ConsumerContext`: the same methods with the same
/// signatures (the consumer a callback gets is the simulated [`BaseConsumer`]), so an
/// `impl ConsumerContext for MyContext` written for rdkafka compiles unchanged.
///
/// The kit calls them where librdkafka does: rebalances inside `recv` (and the revoke of the
/// consumer's close, when it is dropped), commit callbacks after automatic commits. rdkafka's
/// `rebalance` method, which performs the assignment itself, is not offered: override
/// `pre_rebalance` and `post_rebalance`.
pub trait ConsumerContext: ClientContext + Sized {
    /// Before the assignment changes (`Rebalance::Revoke`: the place to commit what was
    /// processed).
    #[allow(unused_variables)]
    fn pre_rebalance(&self, base_consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {}

    /// After the assignment changed.
    #[allow(unused_variables)]
    fn post_rebalance(&self, base_consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {}

    /// After one of the consumer's automatic commits completed.
    #[allow(unused_variables)]
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {}

    /// rdkafka's main-queue poll interval; the simulated consumer has no main queue and does
    /// not ask.
    fn main_queue_min_poll_interval(&self) -> Timeout {
        Timeout::After(Duration::from_secs(1))
    }
}

impl ConsumerContext for DefaultConsumerContext {}

/// The kit's rebalance handler for a context; `None` for rdkafka's default context, which has
/// no callbacks (so the consumer is the kit's plain one, as `create_consumer` makes it).
pub(crate) fn handler<C: ConsumerContext + 'static>(context: &Arc<C>) -> Option<ContextHandler<C>> {
    (TypeId::of::<C>() != TypeId::of::<DefaultConsumerContext>()).then(|| ContextHandler {
        context: context.clone(),
    })
}

/// Hands the kit's callbacks to a [`ConsumerContext`].
pub(crate) struct ContextHandler<C> {
    context: Arc<C>,
}

impl<C: ConsumerContext + 'static> RebalanceHandler for ContextHandler<C> {
    fn pre_rebalance(&self, consumer: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
        base::lend(&self.context, consumer, |context, base| {
            context.pre_rebalance(base, rebalance)
        });
    }

    fn post_rebalance(&self, consumer: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
        base::lend(&self.context, consumer, |context, base| {
            context.post_rebalance(base, rebalance)
        });
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.context.commit_callback(result, offsets);
    }
}
