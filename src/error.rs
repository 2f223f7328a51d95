//! Errors of the kit itself (bad settings, infrastructure), as opposed to verdicts about the
//! consumer under test.

use crate::scenario::FaultError;

/// An error setting up or running a simulation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A builder setting makes no sense.
    #[error("invalid simulation setting: {0}")]
    InvalidSetting(String),
    /// A record names a topic the simulation does not declare.
    #[error("unknown topic {0:?}: declare it with SimulationBuilder::topic")]
    UnknownTopic(String),
    /// A record names a partition its topic does not have.
    #[error("topic {topic:?} has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        partitions: i32,
    },
    /// The fault schedule is invalid.
    #[error("invalid fault schedule: {0}")]
    Fault(#[from] FaultError),
    /// `run` was called from inside a tokio runtime.
    #[error(
        "Simulation::run was called from inside a tokio runtime; the simulation runs its own \
         runtime with a virtual clock: call it from a plain #[test] (not #[tokio::test]) or \
         from tokio::task::spawn_blocking"
    )]
    NestedRuntime,
    /// The runtime could not be built.
    #[error("could not start the simulation runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A real broker could not be started, reached or used.
    #[error("real broker: {0}")]
    Broker(#[from] crate::broker::BrokerError),
    /// The query of [`SimulationBuilder::progress_from_store`](crate::SimulationBuilder::progress_from_store)
    /// (or `Verifier::progress_from_store`) could not be run on the durable store, or its rows
    /// are not `(topic, partition, next_offset)`.
    #[error("progress_from_store: the query {query:?} failed: {why}")]
    StoreProgress {
        /// The query.
        query: String,
        /// What went wrong.
        why: String,
    },
    /// The scenario's durable store could not be created.
    #[error("could not create the scenario's durable store: {0}")]
    Store(#[from] rusqlite::Error),
}
