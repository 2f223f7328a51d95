//! The side-effect ledger: every effect attempt, who made it, when, and how it turned out.
//!
//! The ledger is read off the history ([`Ledger::from_history`]), on the simulator and on real
//! brokers alike. Either way the invariants count *effective* effects (the outside world
//! changed) separately from attempts (calls made). Effects that live in the consumer's own
//! durable store are read off its final state instead ([`StoreEffect`]).

// The file-backed ledger is for consumers that run as processes of their own (black-box
// verification, issue 20): the effect service records into it.
mod sqlite;
pub(crate) use sqlite::SqliteLedger;
mod store_effect;

pub use store_effect::{StoreEffect, StoreEffectError};

mod output_topic;
pub use output_topic::OutputTopic;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::history::{EffectOutcome, History, HistoryEvent, Incarnation};

/// One effect attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectRecord {
    /// Virtual time since the run started (wall time since the ledger opened on real brokers).
    pub at: Duration,
    /// The instance incarnation that made the call.
    pub incarnation: Incarnation,
    /// The consumer-group generation the instance's latest assignment belonged to, if it had
    /// one.
    pub generation: Option<i32>,
    /// The effect sink (`email`, `payment`): the kind of effect.
    pub sink: String,
    /// The event the effect is for.
    pub event_id: String,
    /// The idempotency key the caller passed, if any.
    pub idempotency_key: Option<String>,
    /// How it turned out.
    pub outcome: EffectOutcome,
}

impl fmt::Display for EffectRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.at.as_micros();
        write!(
            f,
            "{:>6}.{:06}s  {:<7}  {}({})",
            micros / 1_000_000,
            micros % 1_000_000,
            self.incarnation.to_string(),
            self.sink,
            self.event_id
        )?;
        if let Some(g) = self.generation {
            write!(f, " in generation {g}")?;
        }
        if let Some(k) = &self.idempotency_key {
            write!(f, " idempotency key {k:?}")?;
        }
        write!(f, ": {}", self.outcome)
    }
}

/// Where an observed effect was read: what a run left behind, rather than calls it made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Observed {
    /// Rows of the consumer's durable store ([`StoreEffect`]).
    Store,
    /// Records of an output topic, as a `read_committed` consumer reads them.
    Topic,
}

impl Observed {
    /// One line of evidence: `event_id`'s effect on `sink` is there `n` times.
    pub fn evidence(self, sink: &str, event_id: &str, n: usize) -> String {
        let s = if n == 1 { "" } else { "s" };
        match self {
            Observed::Store => format!("{event_id}: {sink} is in the final store {n} time{s}"),
            Observed::Topic => {
                format!("{event_id}: output topic {sink} holds {n} committed record{s} for it")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Observation {
    place: Observed,
    counts: Result<BTreeMap<String, usize>, String>,
}

/// Every effect attempt of a run, in order, and the effects observed in what the run left
/// behind: the durable store's final state, the output topics' committed records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    records: Vec<EffectRecord>,
    observed: BTreeMap<String, Observation>,
}

impl Ledger {
    /// A ledger holding `records`, kept in the given order.
    pub fn new(records: Vec<EffectRecord>) -> Self {
        Ledger {
            records,
            observed: BTreeMap::new(),
        }
    }

    /// Records what was observed of `sink` in `place`: how many times each event's effect is
    /// present (or why it could not be read). The observation replaces the call records as the
    /// measure of `sink`'s effects.
    pub fn observe(
        &mut self,
        sink: impl Into<String>,
        place: Observed,
        counts: Result<BTreeMap<String, usize>, String>,
    ) {
        self.observed
            .insert(sink.into(), Observation { place, counts });
    }

    /// What was observed of `sink`, if it is an observed effect: the counts, or why they could
    /// not be read.
    pub fn observed(&self, sink: &str) -> Option<Result<&BTreeMap<String, usize>, &str>> {
        self.observed
            .get(sink)
            .map(|o| o.counts.as_ref().map_err(String::as_str))
    }

    /// Where `sink`'s effects were observed, if they were.
    pub fn observed_in(&self, sink: &str) -> Option<Observed> {
        self.observed.get(sink).map(|o| o.place)
    }

    /// The effect attempts of a simulated run, with each instance's group generation.
    pub fn from_history(history: &History) -> Self {
        let mut generation: BTreeMap<Incarnation, i32> = BTreeMap::new();
        let mut records = Vec::new();
        for entry in history.entries() {
            let Some(incarnation) = entry.incarnation else {
                continue;
            };
            match &entry.event {
                HistoryEvent::PartitionsAssigned { generation: g, .. } => {
                    generation.insert(incarnation, *g);
                }
                HistoryEvent::Effect {
                    sink,
                    event_id,
                    idempotency_key,
                    outcome,
                } => records.push(EffectRecord {
                    at: entry.at,
                    incarnation,
                    generation: generation.get(&incarnation).copied(),
                    sink: sink.clone(),
                    event_id: event_id.clone(),
                    idempotency_key: idempotency_key.clone(),
                    outcome: *outcome,
                }),
                _ => {}
            }
        }
        Ledger::new(records)
    }

    /// Every attempt, in order.
    pub fn records(&self) -> &[EffectRecord] {
        &self.records
    }

    /// The sinks that were called or observed, in name order.
    pub fn sinks(&self) -> Vec<String> {
        let mut sinks: Vec<String> = self.records.iter().map(|r| r.sink.clone()).collect();
        sinks.extend(self.observed.keys().cloned());
        sinks.sort();
        sinks.dedup();
        sinks
    }

    /// How many times each event's effect on `sink` took effect (performed, including
    /// "performed but reported failed"; deduplicated and failed attempts do not count). For an
    /// observed store effect, how many times it is present in the final store (none if the
    /// store could not be read).
    pub fn effective_counts(&self, sink: &str) -> BTreeMap<String, usize> {
        if let Some(observed) = self.observed.get(sink) {
            return observed.counts.clone().unwrap_or_default();
        }
        let mut counts = BTreeMap::new();
        for r in self.for_sink(sink) {
            if r.outcome.took_effect() {
                *counts.entry(r.event_id.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// How many attempts each event's effect on `sink` had, whatever their outcome.
    pub fn attempt_counts(&self, sink: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.for_sink(sink) {
            *counts.entry(r.event_id.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// The attempts on `sink`, in order.
    pub fn for_sink<'a>(&'a self, sink: &'a str) -> impl Iterator<Item = &'a EffectRecord> {
        self.records.iter().filter(move |r| r.sink == sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{HistoryEntry, InstanceId};

    #[test]
    fn the_ledger_reads_effects_with_the_generation_of_the_latest_assignment() {
        let inc = Incarnation {
            instance: InstanceId(0),
            number: 1,
        };
        let mut history = History::default();
        let effect = |id: &str, outcome| HistoryEvent::Effect {
            sink: "email".into(),
            event_id: id.into(),
            idempotency_key: None,
            outcome,
        };
        for (event, incarnation) in [
            (effect("a", EffectOutcome::Performed), Some(inc)),
            (
                HistoryEvent::PartitionsAssigned {
                    group: "g".into(),
                    generation: 3,
                    partitions: vec![],
                    resets: vec![],
                },
                Some(inc),
            ),
            (
                effect("a", EffectOutcome::PerformedReportedFailed),
                Some(inc),
            ),
            (effect("b", EffectOutcome::Failed), Some(inc)),
            (effect("b", EffectOutcome::Deduplicated), Some(inc)),
        ] {
            history.push(HistoryEntry {
                at: Duration::ZERO,
                incarnation,
                event,
            });
        }
        let ledger = Ledger::from_history(&history);
        assert_eq!(ledger.records().len(), 4);
        assert_eq!(ledger.records()[0].generation, None);
        assert_eq!(ledger.records()[1].generation, Some(3));
        assert_eq!(
            ledger
                .effective_counts("email")
                .into_iter()
                .collect::<Vec<_>>(),
            vec![("a".to_string(), 2)]
        );
        assert_eq!(ledger.attempt_counts("email")["b"], 2);
        assert_eq!(ledger.sinks(), vec!["email".to_string()]);
    }
}
