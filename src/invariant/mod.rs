//! Invariants: pure checks over a run's history and ledger.
//!
//! Each invariant looks at a [`RunRecord`] (what was published, what happened, which effects
//! took place) and returns a [`Violation`] or nothing. They never reach back into the backend,
//! so the same checkers judge simulated and real-broker runs. Compose them freely; the
//! assertions use [`Semantics::invariants`].

mod at_least_once;
mod at_most_once;
mod effectively_once;
mod exactly_once;
mod liveness;
mod no_aborted_read;
mod no_phantom_effect;
mod offsets_match_outputs;
mod per_key_order;
pub(crate) mod semantics;

pub use at_least_once::AtLeastOnce;
pub use at_most_once::AtMostOnce;
pub use effectively_once::EffectivelyOnce;
pub use exactly_once::ExactlyOnce;
pub use liveness::Liveness;
pub use no_aborted_read::NoAbortedRead;
pub use no_phantom_effect::NoPhantomEffect;
pub use offsets_match_outputs::OffsetsMatchOutputs;
pub use per_key_order::PerKeyOrder;
pub(crate) use semantics::Semantics;

use std::collections::BTreeMap;
use std::fmt;

use crate::history::ClusterSnapshot;
use crate::history::History;
use crate::history::HistoryEvent;
use crate::history::PublishedEvent;
use crate::ledger::{Ledger, Observed};

/// The sink name the check counts on when the consumer called no effect sink and none was
/// declared: every event then counts as lost, and the evidence says why.
pub(crate) const NO_SINK: &str = "(no effect sink was called)";

/// What an invariant judges: the published events, the run's history, its effect ledger and
/// the cluster as the run left it.
#[derive(Clone, Copy, Debug)]
pub struct RunRecord<'a> {
    /// The events as published, poison records included.
    pub published: &'a [PublishedEvent],
    /// Everything that happened.
    pub history: &'a History,
    /// Every effect attempt.
    pub ledger: &'a Ledger,
    /// The effect sinks whose effects count: each event is expected to take effect on each.
    pub sinks: &'a [String],
    /// The topics, records and committed offsets when the run stopped.
    pub cluster: &'a ClusterSnapshot,
}

impl RunRecord<'_> {
    /// The events that expect effects (poison records expect none), in publishing order.
    pub fn expecting_effects(&self) -> impl Iterator<Item = &PublishedEvent> {
        self.published.iter().filter(|e| !e.poison)
    }

    /// For each sink, how many times each expecting event took effect (0 included).
    pub fn effect_counts(&self) -> Vec<(String, BTreeMap<String, usize>)> {
        self.sinks
            .iter()
            .map(|sink| {
                let effective = self.ledger.effective_counts(sink);
                let counts = self
                    .expecting_effects()
                    .map(|e| {
                        let n = effective.get(&e.event_id).copied().unwrap_or(0);
                        (e.event_id.clone(), n)
                    })
                    .collect();
                (sink.clone(), counts)
            })
            .collect()
    }

    /// For each counted output topic, how many committed outputs each expecting event has
    /// (0 included).
    pub fn output_counts(&self) -> Vec<(String, BTreeMap<String, usize>)> {
        self.effect_counts()
            .into_iter()
            .filter(|(sink, _)| self.ledger.observed_in(sink) == Some(Observed::Topic))
            .collect()
    }

    /// Whether `event` is still to be processed rather than lost: the run stopped before the
    /// group caught up (liveness reports that) and the group never committed past any copy
    /// of the event, so a consumer that got going again would still process it.
    pub fn pending(&self, event: &PublishedEvent) -> bool {
        let lag = match self.history.end() {
            Some(HistoryEvent::TimeLimitReached { lag })
            | Some(HistoryEvent::AllInstancesStopped { lag }) => lag,
            _ => return false,
        };
        !event.positions.is_empty()
            && event.positions.iter().all(|at| {
                lag.iter().any(|l| {
                    l.partition.topic == at.topic
                        && l.partition.partition == at.partition
                        && l.committed.unwrap_or(0) <= at.offset
                })
            })
    }

    /// One line per event whose count on a sink fails `ok`, and the event ids. An event
    /// that took no effect but is [`pending`](Self::pending) is not counted: it is not lost,
    /// the group is stuck before it.
    pub(crate) fn count_violations(
        &self,
        ok: impl Fn(usize) -> bool,
    ) -> (Vec<String>, Vec<String>, usize, usize) {
        let mut details = Vec::new();
        let mut ids = Vec::new();
        let (mut lost, mut duplicated) = (0, 0);
        let pending: Vec<&str> = self
            .expecting_effects()
            .filter(|e| self.pending(e))
            .map(|e| e.event_id.as_str())
            .collect();
        for (sink, counts) in self.effect_counts() {
            let observed = self.ledger.observed(&sink);
            if let Some(Err(why)) = observed {
                details.push(format!("{sink}: the final store could not be read: {why}"));
            }
            let place = self.ledger.observed_in(&sink);
            let attempts = self.ledger.attempt_counts(&sink);
            let never_called = self.ledger.for_sink(&sink).next().is_none();
            for (event_id, n) in counts {
                if ok(n) || (n == 0 && pending.contains(&event_id.as_str())) {
                    continue;
                }
                if n == 0 {
                    lost += 1;
                } else {
                    duplicated += 1;
                }
                let times = if n == 1 { "" } else { "s" };
                let evidence = if let Some(place) = place {
                    place.evidence(&sink, &event_id, n)
                } else if sink == NO_SINK {
                    format!(
                        "{event_id}: took effect 0 times (the consumer called no effect sink, \
                         and none is declared)"
                    )
                } else if never_called {
                    format!("{event_id}: {sink} took effect 0 times ({sink} was never called)")
                } else {
                    let tried = attempts.get(&event_id).copied().unwrap_or(0);
                    format!(
                        "{event_id}: {sink} took effect {n} time{times} ({tried} attempt{})",
                        if tried == 1 { "" } else { "s" },
                    )
                };
                details.push(format!(
                    "{evidence}{}",
                    match n {
                        0 => "  LOST",
                        1 => "",
                        _ => "  DUPLICATED",
                    }
                ));
                if !ids.contains(&event_id) {
                    ids.push(event_id);
                }
            }
        }
        (details, ids, lost, duplicated)
    }
}

/// A broken invariant: what, about which events, and the evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name (`effectively-once`, `liveness`, ...).
    pub invariant: String,
    /// One sentence.
    pub summary: String,
    /// The offending event ids.
    pub event_ids: Vec<String>,
    /// Evidence, one line each.
    pub details: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} violated: {}", self.invariant, self.summary)?;
        for line in &self.details {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// A property every run must have.
pub trait Invariant: Send + Sync + fmt::Debug {
    /// The invariant's name, as reports print it.
    fn name(&self) -> &str;

    /// Checks one run.
    fn check(&self, run: &RunRecord<'_>) -> Option<Violation>;
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Duration;

    pub use crate::history::ClusterSnapshot;

    use crate::history::PublishedEvent;
    use crate::history::RecordPosition;
    use crate::history::{
        EffectOutcome, History, HistoryEntry, HistoryEvent, Incarnation, InstanceId,
    };

    pub fn published(ids: &[(&str, &str)]) -> Vec<PublishedEvent> {
        ids.iter()
            .enumerate()
            .map(|(i, (id, key))| PublishedEvent {
                event_id: id.to_string(),
                key: key.to_string(),
                positions: vec![RecordPosition {
                    topic: "t".into(),
                    partition: 0,
                    offset: i as i64,
                }],
                aborted: None,
                poison: false,
            })
            .collect()
    }

    pub fn history(effects: &[(u64, &str, EffectOutcome)], end: HistoryEvent) -> History {
        let inc = Incarnation {
            instance: InstanceId(0),
            number: 1,
        };
        let mut h = History::default();
        for (ms, id, outcome) in effects {
            h.push(HistoryEntry {
                at: Duration::from_millis(*ms),
                incarnation: Some(inc),
                event: HistoryEvent::Effect {
                    sink: "email".into(),
                    event_id: id.to_string(),
                    idempotency_key: None,
                    outcome: *outcome,
                },
            });
        }
        let last = effects.last().map_or(0, |e| e.0);
        h.push(HistoryEntry {
            at: Duration::from_millis(last + 10_000),
            incarnation: None,
            event: end,
        });
        h
    }
}
