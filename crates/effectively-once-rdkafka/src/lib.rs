//! rdkafka, as a drop-in whose clients join an [effectively-once] run in tests.
//!
//! Depend on this crate under the name `rdkafka`, plainly for production and with the
//! `simulated` feature for tests:
//!
//! ```toml
//! [dependencies]
//! rdkafka = { package = "effectively-once-rdkafka", version = "0.1" }
//! [dev-dependencies]
//! rdkafka = { package = "effectively-once-rdkafka", version = "0.1", features = ["simulated"] }
//! effectively-once = "0.1"
//! ```
//!
//! Without `simulated` this crate is `pub use rdkafka::*` (rdkafka 0.39, its features passed
//! through): `cargo build` and `cargo run` link plain rdkafka and nothing of the kit. Cargo's
//! feature resolver turns a dev-dependency's features on only for tests, examples and
//! benchmarks, so there the same paths name simulated clients instead:
//! [`consumer::StreamConsumer`] (and `stream_consumer::StreamPartitionQueue`),
//! [`consumer::BaseConsumer`] (what rebalance callbacks get), the
//! [`consumer::Consumer`] and [`consumer::ConsumerContext`] traits,
//! [`message::BorrowedMessage`], [`producer::FutureProducer`], the low-level
//! [`producer::BaseProducer`] and [`producer::ThreadedProducer`] (whose delivery reports reach
//! a [`producer::ProducerContext`] as a [`producer::DeliveryResult`]) and the
//! [`producer::Producer`] trait. `ClientConfig` stays rdkafka's own: `create()` and
//! `create_with_context()` build the simulated clients from the same configuration, in the
//! effectively-once run of the calling task. Everything else (messages, errors, offsets,
//! `TopicPartitionList`, `BaseRecord`) is rdkafka's.
//!
//! **Where clients are created**: in the instance's own task (the future the kit's factory
//! returns) or in a task spawned with `InstanceContext::spawn`. Anywhere else (a plain
//! `tokio::spawn`, another thread, outside a run) `create()` returns
//! `KafkaError::ClientCreation` saying so.
//!
//! [effectively-once]: https://docs.rs/effectively-once

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub use rdkafka::*;

#[cfg(feature = "simulated")]
mod simulated;

/// Kafka consumers: rdkafka's module, with the simulated `StreamConsumer`, `BaseConsumer`,
/// `MessageStream`, `Consumer`, `ConsumerContext` and `ConsumerGroupMetadata`.
#[cfg(feature = "simulated")]
pub mod consumer {
    pub use crate::simulated::{
        BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, MessageStream,
        StreamConsumer,
    };
    pub use rdkafka::consumer::*;

    /// rdkafka's `stream_consumer` module, with the simulated types.
    pub mod stream_consumer {
        pub use crate::simulated::{MessageStream, StreamConsumer, StreamPartitionQueue};
    }

    /// rdkafka's `base_consumer` module, with the simulated `BaseConsumer`.
    pub mod base_consumer {
        pub use crate::simulated::BaseConsumer;
        pub use rdkafka::consumer::base_consumer::*;
    }
}

/// Kafka messages: rdkafka's module, with the simulated `BorrowedMessage` and the
/// `DeliveryResult` over it.
#[cfg(feature = "simulated")]
pub mod message {
    pub use crate::simulated::{BorrowedMessage, DeliveryResult};
    pub use rdkafka::message::*;
}

/// Kafka producers: rdkafka's module, with the simulated `FutureProducer`, `BaseProducer`,
/// `ThreadedProducer`, `Producer`, `ProducerContext` and `DeliveryResult`.
#[cfg(feature = "simulated")]
pub mod producer {
    pub use crate::simulated::{
        BaseProducer, DeliveryResult, FutureProducer, Producer, ProducerContext, ThreadedProducer,
    };
    pub use rdkafka::producer::*;

    /// rdkafka's `base_producer` module, with the simulated `BaseProducer`, `ThreadedProducer`
    /// and `DeliveryResult`.
    pub mod base_producer {
        pub use crate::simulated::{BaseProducer, DeliveryResult, ThreadedProducer};
        pub use rdkafka::producer::base_producer::*;
    }

    /// rdkafka's `future_producer` module, with the simulated `FutureProducer`.
    pub mod future_producer {
        pub use crate::simulated::FutureProducer;
        pub use rdkafka::producer::future_producer::*;
    }
}
