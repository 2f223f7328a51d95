//! No record of an aborted transaction reaches the application.

use super::{Invariant, RunRecord, Violation};
use crate::history::HistoryEvent;

/// No consumer was handed a record of an aborted transaction. A consumer reading with
/// `isolation.level=read_uncommitted` gets them, and acts on writes that never happened; one
/// reading `read_committed` must never get them, so there the broker is at fault (the check
/// judges the history, so it applies to a real broker too).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAbortedRead;

impl Invariant for NoAbortedRead {
    fn name(&self) -> &str {
        "no aborted read"
    }

    fn check(&self, run: &RunRecord<'_>) -> Option<Violation> {
        let mut details = Vec::new();
        let mut event_ids: Vec<String> = Vec::new();
        for entry in run.history.entries() {
            let HistoryEvent::Delivered {
                position,
                read_committed,
                ..
            } = &entry.event
            else {
                continue;
            };
            let aborted = run
                .cluster
                .records(&position.topic, position.partition)
                .get(position.offset as usize)
                .is_some_and(|r| r.aborted);
            if !aborted {
                continue;
            }
            let event_id = run
                .published
                .iter()
                .find(|e| e.aborted.as_ref() == Some(position) || e.positions.contains(position))
                .map_or_else(|| position.to_string(), |e| e.event_id.clone());
            let who = entry
                .incarnation
                .map_or_else(|| "a consumer".to_string(), |i| i.to_string());
            details.push(if *read_committed {
                format!(
                    "{who} received {position} ({event_id}), a record of an aborted transaction, \
                     although it reads read_committed: the broker handed it out"
                )
            } else {
                format!(
                    "{who} received {position} ({event_id}), a record of an aborted transaction: \
                     the consumer reads with isolation.level=read_uncommitted"
                )
            });
            if !event_ids.contains(&event_id) {
                event_ids.push(event_id);
            }
        }
        if details.is_empty() {
            return None;
        }
        Some(Violation {
            invariant: self.name().into(),
            summary: format!(
                "{} record{} of aborted transactions reached the application",
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
    use std::time::Duration;

    use super::*;
    use crate::history::RecordPosition;
    use crate::history::{History, HistoryEntry, Incarnation, InstanceId};
    use crate::invariant::test_support::published;
    use crate::ledger::Ledger;
    use crate::run::{InputRecord, Simulation};

    #[test]
    fn blames_read_uncommitted_consumers_and_brokers_that_hand_aborted_records_to_read_committed() {
        let mut b = Simulation::builder();
        b.topic("t", 1)
            .produce(InputRecord::new("t").payload("a").in_transaction(false))
            .produce(InputRecord::new("t").payload("b"));
        let outcome = b.build().unwrap().run(|_| async {}).unwrap();
        let mut history = History::default();
        let at = |offset| RecordPosition {
            topic: "t".into(),
            partition: 0,
            offset,
        };
        for (offset, read_committed) in [(0, false), (0, true), (2, true)] {
            history.push(HistoryEntry {
                at: Duration::ZERO,
                incarnation: Some(Incarnation {
                    instance: InstanceId(0),
                    number: 1,
                }),
                event: HistoryEvent::Delivered {
                    position: at(offset),
                    key: None,
                    read_committed,
                },
            });
        }
        let mut events = published(&[("a", "k"), ("b", "k")]);
        events[0].aborted = Some(at(0));
        events[0].positions = vec![at(9)];
        let run = RunRecord {
            published: &events,
            history: &history,
            ledger: &Ledger::default(),
            sinks: &[],
            cluster: outcome.cluster(),
        };
        let v = NoAbortedRead.check(&run).expect("violated");
        assert_eq!(v.event_ids, ["a"]);
        assert_eq!(
            v.details,
            [
                "i0#1 received t[0]@0 (a), a record of an aborted transaction: the consumer \
                 reads with isolation.level=read_uncommitted",
                "i0#1 received t[0]@0 (a), a record of an aborted transaction, although it \
                 reads read_committed: the broker handed it out",
            ]
        );
    }
}
