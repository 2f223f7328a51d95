//! Black-box verification of consumer processes in any language: the parts that run a consumer
//! program unchanged. The supervisor starts and restarts its instances; the effect service
//! records their side effects and fires faults at them; the wire proxy records the Kafka side
//! and fires faults at requests; one black-box run puts them together, crash-point
//! enumeration plans the runs, and `history_of` tells a run in the history's vocabulary.
//! `check::BlackBox` judges the runs.

mod black_box;
mod crash_points;
mod effect_service;
mod environment;
mod history_of;
mod left_behind;
mod process_tree;
mod shrink;
mod supervisor;
mod wire_proxy;

pub(crate) use black_box::{BlackBoxCase, BlackBoxOutcome, Ending, InputEvent, run_black_box};
pub(crate) use crash_points::{
    CrashPoint, FaultPlan, Probe, crash_points, enumeration, outages, pilot, probes,
};
pub(crate) use effect_service::{EffectFaults, EffectService, FiredEffectFault, Malformed};
pub(crate) use environment::{EnvTemplate, InstanceAddresses, environment_of};
pub(crate) use history_of::{attempts_of, history_of, published_of};
pub(crate) use left_behind::{LeftBehind, read_left_behind};
pub(crate) use shrink::{Shrunk, shrink_events};
pub(crate) use supervisor::{ConsumerCommand, Ended, Life, Supervisor};
pub(crate) use wire_proxy::{WireEvent, WireFaults, WireProxy};

use crate::history::{Incarnation, InstanceId};

/// Locks `m`; a thread that panicked while holding it left data the parts still read (logs,
/// counters), so the lock is taken anyway.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the effect service and the wire proxy ask of whoever runs the consumer processes.
pub(crate) trait Callers: Send + Sync {
    /// The incarnation of `instance` running now.
    fn incarnation(&self, instance: InstanceId) -> Incarnation;
    /// Kills `instance`'s process at once (SIGKILL), as a crash would.
    fn kill(&self, instance: InstanceId);
}

/// An error running consumer processes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The consumer command makes no sense.
    #[error("{0}")]
    Command(String),
    /// The consumer command could not be started.
    #[error("could not start the consumer command `{command}`: {why}")]
    Spawn {
        /// The command.
        command: String,
        /// What the system said.
        why: String,
    },
    /// A loopback listener could not be opened.
    #[error("could not listen on loopback: {0}")]
    Listen(String),
    /// An environment variable for the instances makes no sense.
    #[error("environment: {0}")]
    Environment(String),
    /// A fault the part it was given to cannot fire.
    #[error("{0}")]
    Fault(String),
    /// The broker could not be reached or used to write the input.
    #[error("broker: {0}")]
    Broker(String),
    /// The ledger file could not be opened, written or read.
    #[error("the effect ledger {path:?}: {why}")]
    Ledger {
        /// The file.
        path: std::path::PathBuf,
        /// What SQLite said.
        why: String,
    },
}

#[cfg(test)]
pub(crate) mod python_tests;
#[cfg(test)]
pub(crate) mod tests;
