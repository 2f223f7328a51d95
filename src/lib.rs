//! Prove a Kafka consumer's delivery semantics.
#![deny(missing_docs)]

mod client;
mod effect;
mod error;
mod fault;
mod harness;
mod history;
mod record;
mod sim;
mod store;

pub use client::{
    ConsumerHandle, KafkaConsumer, KafkaProducer, RebalanceContext, RebalanceHandler,
};
pub use effect::{EffectError, EffectSink};
pub use error::Error;
pub use fault::{Anchor, Fault, FaultError, FaultRule, FaultSchedule, Operation};
pub use harness::{
    ClusterSnapshot, InputRecord, InstanceContext, InstanceExit, LoggedRecord, Outcome, Simulation,
    SimulationBuilder,
};
pub use history::{
    CommitKind, EffectOutcome, History, HistoryEntry, HistoryEvent, Incarnation, InstanceId, Lag,
    MemberRemoval,
};
pub use record::{RecordPosition, TopicPartition};
pub use sim::{SimConsumer, SimProducer};
pub use store::DurableStore;
