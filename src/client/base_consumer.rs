//! rdkafka's synchronous consumer as a trait: [`KafkaBaseConsumer`] (`BaseConsumer`), whose
//! `poll(timeout)` blocks the calling thread for the next message.

use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::util::Timeout;

use super::ConsumerHandle;

/// A synchronous group consumer: rdkafka's `BaseConsumer` API, for programs that poll in a
/// plain thread instead of awaiting `recv`.
///
/// In production it is rdkafka's [`BaseConsumer`](rdkafka::consumer::BaseConsumer); in tests
/// the kit's [`BaseConsumer`](crate::clients::BaseConsumer), created inside
/// [`InstanceContext::run_blocking`](crate::InstanceContext::run_blocking).
///
/// ```no_run
/// use effectively_once::clients::KafkaBaseConsumer;
/// use rdkafka::consumer::CommitMode;
/// use rdkafka::message::Message;
/// use std::time::Duration;
///
/// type BoxError = Box<dyn std::error::Error + Send + Sync>;
///
/// fn run<C: KafkaBaseConsumer>(consumer: &C) -> Result<(), BoxError> {
///     consumer.subscribe(&["task-events"])?;
///     loop {
///         let message = match consumer.poll(Duration::from_millis(100)) {
///             None => continue,
///             Some(message) => message?,
///         };
///         println!("{:?}", message.payload());
///         consumer.commit_message(&message, CommitMode::Sync)?;
///     }
/// }
/// ```
pub trait KafkaBaseConsumer: ConsumerHandle {
    /// The message type `poll` yields: `BorrowedMessage` for rdkafka, `OwnedMessage` for the
    /// kit.
    type Message<'a>: Message + std::fmt::Debug
    where
        Self: 'a;

    /// Waits up to `timeout` for the next message (polling the group: rebalances and their
    /// callbacks happen inside this call): `None` when none came in time.
    fn poll<T: Into<Timeout>>(&self, timeout: T) -> Option<KafkaResult<Self::Message<'_>>>;

    /// The messages as an endless iterator, as rdkafka's `BaseConsumer::iter`: each item is
    /// what the next `poll` without a timeout returns.
    fn iter(&self) -> impl Iterator<Item = KafkaResult<Self::Message<'_>>> {
        std::iter::from_fn(move || {
            loop {
                if let Some(item) = self.poll(Timeout::Never) {
                    return Some(item);
                }
            }
        })
    }

    /// Commits `message.offset() + 1` for the message's partition.
    fn commit_message(&self, message: &Self::Message<'_>, mode: CommitMode) -> KafkaResult<()>;

    /// Stores `message.offset() + 1` for the next commit.
    fn store_offset_from_message(&self, message: &Self::Message<'_>) -> KafkaResult<()>;
}
