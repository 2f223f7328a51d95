//! Diagnoses: when a minimal counterexample shows a known anti-pattern, one plain sentence that
//! names it and cites the timeline lines that show it, by time, lane and event
//! (`0.005s i0#1 commit (sync) task-events[0]=0`), never by line number (the timeline folds
//! repeats).
//!
//! Each matcher reads the finished [`Case`] only, and fires only when the case's violation is
//! the one its pattern produces (the events it loses or duplicates, or a group that never
//! caught up): a wrong diagnosis is worse than none. What the history shows is stated as a
//! fact; what is inferred from it (the code's cause, the configuration) says "likely".

mod atomicity;
mod offsets;
mod stores;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::Case;
use crate::history::{HistoryEntry, HistoryEvent, RecordPosition, TopicPartition};

/// Which known anti-pattern a [`Diagnosis`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DiagnosisKind {
    /// A new group started at `latest` (librdkafka's default `auto.offset.reset`): a partition
    /// without a committed offset started at its end, past records produced before the
    /// consumer joined, which are lost.
    StartedAtLatest,
    /// Committing the record's own `offset` instead of `offset + 1`: the record stays
    /// uncommitted, is handed over again, and the group never reaches the end.
    CommittedOwnOffset,
    /// A commit moved the group's committed offset backwards (a batch commit after a
    /// rebalance, out-of-order async commits): records between are handed over again.
    CommitMovedBackwards,
    /// An offset stored before processing and committed although the effect failed (the
    /// error swallowed, or the consumer closed with it stored): the event is lost.
    StoredBeforeFailedEffect,
    /// `enable.auto.commit=false` with only `store_offset`: offsets stored, nothing ever
    /// committed.
    StoredNeverCommitted,
    /// A dedup mark written outside the effect's transaction: a crash between the effect and
    /// the mark repeats the effect.
    DedupMarkOutsideTransaction,
    /// Outputs of a transactional pipeline sent outside its transaction: not rolled back with
    /// it, duplicated when the input is processed again.
    OutputOutsideTransaction,
}

/// One diagnosis of a counterexample: a known anti-pattern its history matches, in one plain
/// sentence citing the timeline lines that show it. Its [`Display`](fmt::Display) is the
/// sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnosis {
    /// The anti-pattern.
    pub kind: DiagnosisKind,
    /// True when the pattern is inferred rather than observed: the sentence says "likely".
    pub likely: bool,
    /// The sentence.
    pub sentence: String,
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sentence)
    }
}

/// The diagnoses of `case`, in the order of [`DiagnosisKind`]; none when no known
/// anti-pattern explains its violations.
pub(crate) fn diagnose(case: &Case<'_>) -> Vec<Diagnosis> {
    let facts = Facts::of(case);
    let mut out = Vec::new();
    out.extend(offsets::started_at_latest(&facts));
    out.extend(offsets::committed_own_offset(&facts));
    out.extend(offsets::commit_moved_backwards(&facts));
    out.extend(stores::stored_before_failed_effect(&facts));
    out.extend(stores::stored_never_committed(&facts));
    out.extend(atomicity::dedup_mark_outside_transaction(&facts));
    out.extend(atomicity::output_outside_transaction(&facts));
    out
}

/// What the matchers read: the history's entries and what the violations say about events.
struct Facts<'a> {
    entries: &'a [HistoryEntry],
    /// Events a violation marks LOST.
    lost: BTreeSet<&'a str>,
    /// Events a violation marks DUPLICATED, with the detail lines that say so.
    duplicated: BTreeMap<&'a str, Vec<&'a str>>,
    /// True when liveness is among the violations (the group never caught up).
    stuck: bool,
    /// Where each event's records landed.
    positions: BTreeMap<&'a str, &'a [RecordPosition]>,
}

impl<'a> Facts<'a> {
    fn of(case: &Case<'a>) -> Self {
        let mut lost = BTreeSet::new();
        let mut duplicated: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut stuck = false;
        for v in case.violations {
            stuck |= v.invariant == "liveness";
            for id in &v.event_ids {
                let prefix = format!("{id}:");
                for detail in v.details.iter().filter(|d| d.starts_with(&prefix)) {
                    if detail.ends_with("LOST") {
                        lost.insert(id.as_str());
                    } else if detail.ends_with("DUPLICATED") {
                        duplicated.entry(id.as_str()).or_default().push(detail);
                    }
                }
            }
        }
        Facts {
            entries: case.history.entries(),
            lost,
            duplicated,
            stuck,
            positions: case
                .published
                .iter()
                .map(|p| (p.event_id.as_str(), p.positions.as_slice()))
                .collect(),
        }
    }

    /// Every commit the group accepted, in order: (entry index, group, partition, offset).
    fn commits(&self) -> Vec<(usize, &'a str, &'a TopicPartition, i64)> {
        let mut out = Vec::new();
        for (i, entry) in self.entries.iter().enumerate() {
            match &entry.event {
                HistoryEvent::OffsetsCommitted { group, offsets, .. } => {
                    out.extend(offsets.iter().map(|(tp, o)| (i, group.as_str(), tp, *o)));
                }
                HistoryEvent::TransactionCommitted { offsets, .. } => {
                    out.extend(offsets.iter().map(|(g, tp, o)| (i, g.as_str(), tp, *o)));
                }
                _ => {}
            }
        }
        out
    }

    /// The timeline line of entry `index`, cited: `(0.005s i0#1 recv task-events[0]@0)`.
    fn cite(&self, index: usize) -> String {
        format!("({})", self.line(index))
    }

    /// The timeline line of entry `index`: time, lane and event, without the group suffix.
    fn line(&self, index: usize) -> String {
        let entry = &self.entries[index];
        let lane = entry
            .incarnation
            .map_or_else(|| "cluster".to_string(), |i| i.to_string());
        format!("{} {lane} {}", seconds(entry), short(&entry.event))
    }
}

/// `0.005s`, `16.014s`, `0.000250s`: the timeline's time, to the millisecond when it falls on
/// one.
fn seconds(entry: &HistoryEntry) -> String {
    let micros = entry.at.as_micros();
    let (whole, fraction) = (micros / 1_000_000, micros % 1_000_000);
    if fraction % 1000 == 0 {
        format!("{whole}.{:03}s", fraction / 1000)
    } else {
        format!("{whole}.{fraction:06}s")
    }
}

/// An event as the timeline prints it, without the ` (group "g" generation n)` suffix.
fn short(event: &HistoryEvent) -> String {
    let text = event.to_string();
    match text.rfind(" (group ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// `evt-0`, `evt-0 and evt-1`, `evt-0, evt-1 and evt-2`.
fn list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [rest @ .., last] => format!(
            "{} and {}",
            rest.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::{
        AutoOffsetReset, CommitKind, History, Incarnation, InstanceId, PublishedEvent,
    };
    use crate::invariant::Violation;
    use crate::scenario::Scenario;

    fn entry(millis: u64, event: HistoryEvent) -> HistoryEntry {
        HistoryEntry {
            at: Duration::from_millis(millis),
            incarnation: Some(Incarnation {
                instance: InstanceId(0),
                number: 1,
            }),
            event,
        }
    }

    #[test]
    fn a_citation_names_time_lane_and_event_without_the_group() {
        let commit = entry(
            5,
            HistoryEvent::OffsetsCommitted {
                group: "g".into(),
                generation: 1,
                offsets: vec![(TopicPartition::new("t", 0), 0)],
                kind: CommitKind::Sync,
            },
        );
        assert_eq!(seconds(&commit), "0.005s");
        assert_eq!(short(&commit.event), "commit (sync) t[0]=0 ok");
        let late = entry(16_014, HistoryEvent::Quiesced);
        assert_eq!(seconds(&late), "16.014s");
        let micro = HistoryEntry {
            at: Duration::from_micros(250),
            ..late
        };
        assert_eq!(seconds(&micro), "0.000250s");
    }

    /// A case of one instance on `t[0]`: `events` at offsets 0.., `history` in order (one
    /// millisecond apart), the violation `invariant` with `details`.
    fn diagnoses_of(
        events: usize,
        history: Vec<HistoryEvent>,
        invariant: &str,
        details: &[&str],
    ) -> Vec<Diagnosis> {
        let scenario = Scenario {
            seed: 0,
            partitions: 1,
            instances: 1,
            late_joins: Vec::new(),
            events: Vec::new(),
            faults: Vec::new(),
        };
        let published: Vec<PublishedEvent> = (0..events)
            .map(|n| PublishedEvent {
                event_id: format!("evt-{n}"),
                key: "k".into(),
                positions: vec![tp().at(n as i64)],
                aborted: None,
                poison: false,
            })
            .collect();
        let mut h = History::default();
        for (n, event) in history.into_iter().enumerate() {
            h.push(entry(n as u64, event));
        }
        let violations = [Violation {
            invariant: invariant.into(),
            summary: String::new(),
            event_ids: details
                .iter()
                .filter_map(|d| d.split(':').next())
                .map(String::from)
                .collect(),
            details: details.iter().map(|d| d.to_string()).collect(),
        }];
        diagnose(&Case {
            scenario: &scenario,
            published: &published,
            history: &h,
            violations: &violations,
            real_time: false,
        })
    }

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    fn recv(offset: i64) -> HistoryEvent {
        HistoryEvent::Delivered {
            position: tp().at(offset),
            key: None,
            read_committed: true,
        }
    }

    fn commit(offset: i64) -> HistoryEvent {
        HistoryEvent::OffsetsCommitted {
            group: "g".into(),
            generation: 1,
            offsets: vec![(tp(), offset)],
            kind: CommitKind::Sync,
        }
    }

    fn assigned(from: i64, resets: Vec<(TopicPartition, AutoOffsetReset)>) -> HistoryEvent {
        HistoryEvent::PartitionsAssigned {
            group: "g".into(),
            generation: 1,
            partitions: vec![(tp(), from)],
            resets,
        }
    }

    #[test]
    fn commits_of_the_next_offset_while_a_record_is_in_flight_are_not_own_offsets() {
        // Record 0 done while record 1 is in flight: commit 1 equals the last offset handed
        // over, but the final commit names the next offset.
        let history = vec![recv(0), recv(1), commit(1), commit(2)];
        let stuck = ["evt-1: email took effect 0 times (1 attempt)  LOST"];
        assert_eq!(diagnoses_of(2, history.clone(), "liveness", &stuck), []);
        let own = vec![recv(0), commit(0), recv(1), commit(1)];
        let kinds: Vec<DiagnosisKind> = diagnoses_of(2, own, "liveness", &[])
            .iter()
            .map(|d| d.kind)
            .collect();
        assert_eq!(kinds, [DiagnosisKind::CommittedOwnOffset]);
    }

    #[test]
    fn a_start_past_records_is_latest_only_without_a_commit_before_it() {
        let lost = ["evt-0: email took effect 0 times (0 attempts)  LOST"];
        let recorded = diagnoses_of(
            1,
            vec![assigned(1, vec![(tp(), AutoOffsetReset::Latest)])],
            "at-least-once",
            &lost,
        );
        assert_eq!(recorded.len(), 1);
        assert!(!recorded[0].likely && !recorded[0].sentence.starts_with("likely"));
        // A backend that did not say where the start came from: inferred.
        let inferred = diagnoses_of(1, vec![assigned(1, vec![])], "at-least-once", &lost);
        assert_eq!(inferred.len(), 1);
        assert!(inferred[0].likely && inferred[0].sentence.starts_with("likely "));
        // Started from a commit made before: not a reset.
        let committed = vec![commit(1), assigned(1, vec![])];
        assert_eq!(diagnoses_of(1, committed, "at-least-once", &lost), []);
        // Started from earliest: nothing skipped by the reset.
        let earliest = vec![assigned(1, vec![(tp(), AutoOffsetReset::Earliest)])];
        assert_eq!(diagnoses_of(1, earliest, "at-least-once", &lost), []);
    }

    #[test]
    fn a_group_stuck_at_the_end_after_a_latest_reset_is_named_only_when_the_reset_was_seen() {
        let latest = vec![assigned(3, vec![(tp(), AutoOffsetReset::Latest)])];
        let named = diagnoses_of(3, latest, "liveness", &[]);
        assert_eq!(named.len(), 1, "{named:?}");
        assert_eq!(named[0].kind, DiagnosisKind::StartedAtLatest);
        assert!(!named[0].likely);
        assert!(
            named[0].sentence.contains("past evt-0, evt-1 and evt-2")
                && named[0]
                    .sentence
                    .contains("lost as soon as it commits anything"),
            "{}",
            named[0].sentence
        );
        // Where the start came from unsaid: a stuck group proves nothing about a reset.
        assert_eq!(
            diagnoses_of(3, vec![assigned(3, vec![])], "liveness", &[]),
            []
        );
        // Records handed over before the start (a seek forward, say): not skipped by a reset.
        let handed = vec![
            recv(0),
            recv(1),
            recv(2),
            assigned(3, vec![(tp(), AutoOffsetReset::Latest)]),
        ];
        assert_eq!(diagnoses_of(3, handed, "liveness", &[]), []);
    }

    #[test]
    fn a_backwards_commit_is_named_only_when_it_explains_the_failure() {
        let backwards = vec![recv(0), recv(1), commit(2), commit(1)];
        // A loss elsewhere, the group not stuck: the backwards commit explains nothing.
        let lost = ["evt-5: email took effect 0 times (0 attempts)  LOST"];
        assert_eq!(
            diagnoses_of(2, backwards.clone(), "at-least-once", &lost),
            []
        );
        let duplicated = ["evt-1: email took effect 2 times (2 attempts)  DUPLICATED"];
        let kinds: Vec<DiagnosisKind> = diagnoses_of(2, backwards, "effectively-once", &duplicated)
            .iter()
            .map(|d| d.kind)
            .collect();
        assert_eq!(kinds, [DiagnosisKind::CommitMovedBackwards]);
    }

    #[test]
    fn lists_read_as_english() {
        assert_eq!(list::<&str>(&[]), "");
        assert_eq!(list(&["a"]), "a");
        assert_eq!(list(&["a", "b"]), "a and b");
        assert_eq!(list(&["a", "b", "c"]), "a, b and c");
    }
}
