//! The rest of rdkafka's client surface, beyond the consumer and producer traits at the root:
//! low-level producers with delivery callbacks, the synchronous consumer, partition queues, and
//! the group metadata a consumer hands a transactional producer.
//!
//! # Low-level producers
//!
//! As rdkafka's `producer` module has them: [`KafkaBaseProducer`] (the
//! API of rdkafka's `BaseProducer` and `ThreadedProducer`), whose `send` enqueues and whose
//! delivery reports reach a [`DeliveryHandler`]; in production wrap the handler in a
//! [`DeliveryContext`], in tests create the kit's [`BaseProducer`] or [`ThreadedProducer`]
//! with [`InstanceContext::create_base_producer`](crate::InstanceContext::create_base_producer)
//! or [`create_threaded_producer`](crate::InstanceContext::create_threaded_producer).
//!
//! ```no_run
//! use effectively_once::clients::{DeliveryContext, DeliveryHandler, DeliveryReport};
//! use rdkafka::producer::BaseProducer;
//!
//! struct Failures;
//! impl DeliveryHandler for Failures {
//!     type DeliveryOpaque = ();
//!     fn delivery(&self, report: &DeliveryReport, _: ()) {
//!         if let Err((error, _)) = report {
//!             eprintln!("not delivered: {error}");
//!         }
//!     }
//! }
//!
//! # fn f() -> rdkafka::error::KafkaResult<()> {
//! let production: BaseProducer<DeliveryContext<Failures>> = rdkafka::ClientConfig::new()
//!     .set("bootstrap.servers", "kafka:9092")
//!     .create_with_context(DeliveryContext(Failures))?;
//! # Ok(()) }
//! ```
//!
//! # Synchronous consumers
//!
//! As rdkafka's `BaseConsumer`, for programs that `poll(timeout)` in a plain thread:
//! [`KafkaBaseConsumer`] is the trait such a program is written against (rdkafka's
//! `BaseConsumer` implements it). In tests the program runs on a thread of its own, started by
//! [`InstanceContext::run_blocking`](crate::InstanceContext::run_blocking) in lockstep with the
//! run; its [`BlockingContext`] creates the kit's [`BaseConsumer`] and runs the kit's futures
//! (effects, sends) with [`block_on`](BlockingContext::block_on). A program that returns an
//! error ends with a [`ThreadError`] carrying its text.
//!
//! ```no_run
//! use effectively_once::clients::KafkaBaseConsumer;
//! use rdkafka::ClientConfig;
//! use rdkafka::consumer::BaseConsumer;
//!
//! # fn poll_loop<C: KafkaBaseConsumer>(consumer: &C) -> Result<(), rdkafka::error::KafkaError> { Ok(()) }
//! # fn f() -> Result<(), rdkafka::error::KafkaError> {
//! // Production: rdkafka's own consumer.
//! let consumer: BaseConsumer = ClientConfig::new()
//!     .set("bootstrap.servers", "kafka:9092")
//!     .set("group.id", "notification-service")
//!     .create()?;
//! poll_loop(&consumer)?;
//! # Ok(()) }
//! # fn test(ctx: effectively_once::InstanceContext) {
//! // Test: the same loop on a thread of the instance.
//! let instance = ctx.run_blocking(|ctx| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     let consumer = ctx.create_base_consumer(&ClientConfig::new())?;
//!     Ok(poll_loop(&consumer)?)
//! });
//! # }
//! ```
//!
//! # Partition queues
//!
//! One partition's records split off a consumer with
//! [`KafkaConsumer::split_partition_queue`](crate::KafkaConsumer::split_partition_queue), as
//! rdkafka's `StreamPartitionQueue`, so that a program can run one task per partition.
//!
//! [`KafkaPartitionQueue`] is the trait a generic consumer calls `recv` and `stream` through;
//! [`PartitionQueue`] is the kit's queue (of a [`Consumer`](crate::Consumer)), rdkafka's
//! `StreamPartitionQueue` the production one.

pub use crate::client::{
    ArcPartitionQueue, DeliveryContext, DeliveryHandler, DeliveryReport, GroupMetadata,
    KafkaBaseConsumer, KafkaBaseProducer, KafkaPartitionQueue,
};
pub use crate::run::{
    BaseConsumer, BaseProducer, BlockingContext, PartitionQueue, ThreadError, ThreadedProducer,
};
