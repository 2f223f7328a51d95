//! What a run produced: its history, the cluster it left, and what the faults reached.

use std::collections::BTreeMap;

use rusqlite::Connection;

use crate::broker::self_check::SelfCheck;
use crate::history::{ClusterSnapshot, RecordPosition};

use crate::history::History;
use crate::history::Operation;
use crate::scenario::FaultRule;

/// What a run produced.
pub struct Outcome {
    pub(crate) history: History,
    pub(crate) cluster: ClusterSnapshot,
    pub(crate) self_check: Option<SelfCheck>,
    pub(crate) unfired: Vec<FaultRule>,
    pub(crate) operations: BTreeMap<Operation, u64>,
    pub(crate) store: Connection,
    pub(crate) inputs: Vec<Option<RecordPosition>>,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("history", &self.history)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Outcome {
    /// Everything that happened.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The cluster when the run stopped.
    pub fn cluster(&self) -> &ClusterSnapshot {
        &self.cluster
    }

    /// On a real broker: what it honours ([`BrokerProvider::self_check`](crate::broker::BrokerProvider::self_check)).
    pub fn broker_self_check(&self) -> Option<&SelfCheck> {
        self.self_check.as_ref()
    }

    /// The fault rules whose anchor was never reached: they did not fire, so the run did not
    /// test what they describe. Check this is empty when a test relies on its faults.
    pub fn unfired_faults(&self) -> &[FaultRule] {
        &self.unfired
    }

    /// Where each input record landed, in the order they were produced
    /// ([`SimulationBuilder::produce`](crate::SimulationBuilder::produce) and `produce_at`);
    /// `None` for a record the run stopped before writing.
    pub fn inputs(&self) -> &[Option<RecordPosition>] {
        &self.inputs
    }

    /// How many times the instances reached each interception point (each [`Operation`]),
    /// faults or not: which operations the consumer performs.
    pub fn operations(&self) -> &BTreeMap<Operation, u64> {
        &self.operations
    }

    /// Reads the scenario's durable database as the run left it.
    pub fn read_store<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        f(&self.store)
    }
}
