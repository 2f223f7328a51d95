//! The simulated clients: rdkafka's types, backed by the clients of the current
//! effectively-once run (its public API only).

mod base;
mod base_producer;
mod context;
mod delivery;
mod join;
mod message;
mod producer;
mod stream;
mod traits;

pub use base::BaseConsumer;
pub use base_producer::{BaseProducer, ThreadedProducer};
pub use context::ConsumerContext;
pub use delivery::{DeliveryResult, ProducerContext};
pub use message::BorrowedMessage;
pub use producer::{FutureProducer, Producer};
pub use stream::{MessageStream, StreamConsumer, StreamPartitionQueue};
pub use traits::Consumer;

/// The consumer group metadata a transactional producer takes, as the kit hands it out.
pub type ConsumerGroupMetadata = effectively_once::clients::GroupMetadata;
