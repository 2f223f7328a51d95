//! Events of one key took their first effect in publishing order.

use std::collections::BTreeMap;

use super::{Invariant, RunRecord, Violation};

/// For each key and counted sink, the first effects of the key's events happened in the order
/// the events were published (Kafka orders a key's records within its partition; a consumer
/// that processes them concurrently or retries out of order breaks this). Effects read off the
/// durable store ([`StoreEffect`](crate::ledger::StoreEffect)) carry no order: this invariant looks at
/// effect sink calls only.
#[derive(Clone, Copy, Debug, Default)]
pub struct PerKeyOrder;

impl Invariant for PerKeyOrder {
    fn name(&self) -> &str {
        "per-key order"
    }

    fn check(&self, run: &RunRecord<'_>) -> Option<Violation> {
        let mut details = Vec::new();
        let mut event_ids = Vec::new();
        for sink in run.sinks {
            let mut first: BTreeMap<&str, usize> = BTreeMap::new();
            for (i, r) in run.ledger.records().iter().enumerate() {
                if &r.sink == sink && r.outcome.took_effect() {
                    first.entry(r.event_id.as_str()).or_insert(i);
                }
            }
            let mut last_by_key: BTreeMap<&str, (&str, usize)> = BTreeMap::new();
            for e in run.expecting_effects() {
                let Some(&at) = first.get(e.event_id.as_str()) else {
                    continue;
                };
                if let Some((before, before_at)) = last_by_key.get(e.key.as_str()) {
                    if *before_at > at {
                        details.push(format!(
                            "key {}: {} (published first) took effect on {sink} after {}",
                            e.key, before, e.event_id
                        ));
                        event_ids.push(before.to_string());
                        event_ids.push(e.event_id.clone());
                    }
                }
                last_by_key.insert(e.key.as_str(), (e.event_id.as_str(), at));
            }
        }
        if details.is_empty() {
            return None;
        }
        event_ids.dedup();
        Some(Violation {
            invariant: self.name().into(),
            summary: format!(
                "{} pair{} of same-key events took effect out of order",
                details.len(),
                if details.len() == 1 { "" } else { "s" }
            ),
            event_ids,
            details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EffectOutcome::*, HistoryEvent};
    use crate::invariant::test_support::*;
    use crate::ledger::Ledger;

    #[test]
    fn only_same_key_inversions_of_first_effects_count() {
        let published = published(&[("a", "k1"), ("b", "k2"), ("c", "k1")]);
        let sinks = ["email".to_string()];
        // b before a is fine (different keys); a's duplicate after c is fine (first effects).
        let ok = history(
            &[
                (1, "b", Performed),
                (2, "a", Performed),
                (3, "c", Performed),
                (4, "a", Performed),
            ],
            HistoryEvent::Quiesced,
        );
        let ledger = Ledger::from_history(&ok);
        let run = RunRecord {
            published: &published,
            history: &ok,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        assert_eq!(PerKeyOrder.check(&run), None);
        let bad = history(
            &[(1, "c", Performed), (2, "a", Performed)],
            HistoryEvent::Quiesced,
        );
        let ledger = Ledger::from_history(&bad);
        let run = RunRecord {
            published: &published,
            history: &bad,
            ledger: &ledger,
            sinks: &sinks,
            cluster: &ClusterSnapshot::default(),
        };
        assert_eq!(
            PerKeyOrder.check(&run).expect("violated").event_ids,
            ["a", "c"]
        );
    }
}
