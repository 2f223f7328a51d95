//! A run: `n` instances of the user's consumer on a backend, through a fault plan.
//!
//! A [`Simulation`] runs `n` instances of the user's consumer, each started by a factory from an
//! [`InstanceContext`]. The run owns everything that is not the cluster: the instances (start,
//! crash, restart, freeze), the fault plan and the one interception step every client call,
//! effect and store commit goes through ([`core`]), the history, and the driver loop
//! ([`driver`]). The cluster is a [`backend::Backend`]: the simulator on a paused, virtual clock
//! or librdkafka against a real broker; the run knows neither. Instances crash where the fault
//! schedule says, restart after a delay as a new incarnation, and the run goes on until it
//! quiesces (everything consumed and committed, nothing happening), every instance stopped for
//! good, or the time limit is reached. The result is an [`Outcome`]: the history and a
//! snapshot of the cluster.

pub(crate) mod backend;
mod base_client;
mod base_consumer;
mod blocking;
mod builder;
pub(crate) mod client;
mod context;
pub(crate) mod core;
mod current;
pub(crate) mod driver;
pub(crate) mod effect;
pub(crate) mod fault_plan;
pub(crate) mod freeze;
pub(crate) mod progress;
pub(crate) mod rng;
pub(crate) mod store;
pub(crate) mod store_effects;
pub(crate) mod store_progress;

pub use base_client::{BaseProducer, ThreadedProducer};
pub use base_consumer::BaseConsumer;
pub use blocking::{BlockingContext, ThreadError};
pub(crate) use builder::Config;
pub use builder::{InputRecord, SimulationBuilder};
pub use client::{Consumer, PartitionQueue, Producer};
pub use context::{InstanceContext, InstanceExit};
pub(crate) use driver::panic_message;

/// A configured simulation; [`run`](Self::run) it with a consumer factory, as often as needed:
/// each run starts from scratch and the same settings give the same history.
#[derive(Clone, Debug)]
pub struct Simulation {
    pub(crate) config: Config,
}

impl Simulation {
    /// Starts building a simulation.
    pub fn builder() -> SimulationBuilder {
        SimulationBuilder::default()
    }
}
