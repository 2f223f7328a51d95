//! The history of a run: every delivery, side effect, commit, crash, restart and rebalance, in
//! the order it happened, stamped with virtual time.
//!
//! The history is an append-only list of plain values. Invariants and reports read it and never
//! reach back into the simulator, so the same checkers work on any backend. Its [`Display`]
//! rendering is the run's timeline; the same seed renders the same bytes.
//!
//! [`Display`]: std::fmt::Display

mod event;
mod instance;
mod key_text;
pub(crate) mod operation;
mod position;
mod published;
mod snapshot;
mod store_rows;
mod topic_name;

pub use event::{AutoOffsetReset, CommitKind, EffectOutcome, HistoryEvent, Lag, MemberRemoval};
pub use instance::{Incarnation, InstanceId};
pub(crate) use key_text::{key_text, key_text_of};
pub(crate) use operation::human_duration;
pub(crate) use operation::{Fault, Operation};
pub use position::{RecordPosition, TopicPartition};
pub use published::{POISON_PAYLOAD, PublishedEvent, poison_event_id, poison_payload};
pub(crate) use snapshot::PartitionLog;
pub use snapshot::{ClusterSnapshot, LoggedRecord};
pub use store_rows::StoreRows;
pub use topic_name::TopicName;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// One history entry: when, who, what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Virtual time since the run started.
    pub at: Duration,
    /// The instance incarnation it happened in; `None` for the cluster itself (the run's
    /// input producer, the group coordinator's timers).
    pub incarnation: Option<Incarnation>,
    /// What happened.
    pub event: HistoryEvent,
}

impl fmt::Display for HistoryEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.at.as_micros();
        let lane = match self.incarnation {
            Some(inc) => inc.to_string(),
            None => "cluster".to_string(),
        };
        write!(
            f,
            "{:>6}.{:06}s  {lane:<7}  {}",
            micros / 1_000_000,
            micros % 1_000_000,
            self.event
        )
    }
}

/// Everything that happened in one run, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    entries: Vec<HistoryEntry>,
}

impl History {
    pub(crate) fn push(&mut self, entry: HistoryEntry) {
        tracing::debug!(target: "effectively_once::history", "{entry}");
        self.entries.push(entry);
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    /// The events, in order, without time or lane.
    pub fn events(&self) -> impl Iterator<Item = &HistoryEvent> {
        self.entries.iter().map(|e| &e.event)
    }

    /// How many times each event id's effect on `sink` took effect (performed, including
    /// "performed but reported failed"; deduplicated and failed calls do not count).
    pub fn effect_counts(&self, sink: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for event in self.events() {
            if let HistoryEvent::Effect {
                sink: s,
                event_id,
                outcome,
                ..
            } = event
            {
                if s == sink && outcome.took_effect() {
                    *counts.entry(event_id.clone()).or_insert(0) += 1;
                }
            }
        }
        counts
    }

    /// How the run ended: the last entry when it is an end marker (`Quiesced`,
    /// `AllInstancesStopped`, `TimeLimitReached`).
    pub fn end(&self) -> Option<&HistoryEvent> {
        self.entries.last().map(|e| &e.event).filter(|e| {
            matches!(
                e,
                HistoryEvent::Quiesced
                    | HistoryEvent::AllInstancesStopped { .. }
                    | HistoryEvent::TimeLimitReached { .. }
            )
        })
    }

    /// True when the run stopped because everything was processed and committed.
    pub fn quiesced(&self) -> bool {
        matches!(self.end(), Some(HistoryEvent::Quiesced))
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(f, "{entry}")?;
        }
        Ok(())
    }
}
