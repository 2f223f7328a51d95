//! Low-level producers, as rdkafka's `producer` module has them: [`KafkaBaseProducer`] (the
//! API of rdkafka's `BaseProducer` and `ThreadedProducer`), whose `send` enqueues and whose
//! delivery reports reach a [`DeliveryHandler`]; in production wrap the handler in a
//! [`DeliveryContext`], in tests create the kit's [`BaseProducer`] or [`ThreadedProducer`]
//! with [`InstanceContext::create_base_producer`](crate::InstanceContext::create_base_producer)
//! or [`create_threaded_producer`](crate::InstanceContext::create_threaded_producer).
//!
//! ```no_run
//! use effectively_once::producer::{DeliveryContext, DeliveryHandler, DeliveryReport};
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

pub use crate::client::{DeliveryContext, DeliveryHandler, DeliveryReport, KafkaBaseProducer};
pub use crate::run::{BaseProducer, ThreadedProducer};
