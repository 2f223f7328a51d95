//! The text timeline: one lane per instance, with repeated cycles folded.
//!
//! A consumer that crashes on a poison record restarts, is handed the record again and
//! crashes again, fifty times: the same lines over and over, but for the time, the incarnation,
//! the member id the group gave it and the group's generation. Such a run of three or more
//! identical cycles is shown once, then one line saying how many more there were and when
//! (and, when the cycles end the run, the last one again, so that the run's end reads in
//! context). Cycles are compared on the history's values, not on the rendered text: each entry
//! is reduced to its instance and its event with the incidental counters cleared (virtual time,
//! incarnation number, member id, group generation, producer epoch); offsets, event ids,
//! outcomes and everything else must match.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Case;
use crate::history::{History, HistoryEntry, HistoryEvent, Incarnation, InstanceId};

/// The width of a lane.
const WIDTH: usize = 22;

/// The longest cycle looked for, in lines.
const MAX_PERIOD: usize = 200;

/// The events a timeline shows.
fn shown(entry: &HistoryEntry) -> bool {
    use HistoryEvent::*;
    match &entry.event {
        RecordProduced { .. } => entry.incarnation.is_some(),
        OffsetStored { .. } => false,
        _ => true,
    }
}

/// The case's history with one lane per instance: each event is printed in its instance's
/// column (the cluster's own events in the first), repeated cycles folded.
pub(crate) fn lanes(case: &Case<'_>) -> String {
    render(case.history, case.lanes())
}

/// The timeline of `history` with lanes for the instances `first..first + count`.
fn render(history: &History, (first_instance, count): (u32, u32)) -> String {
    let mut out = format!("{:>14}  {:<WIDTH$}", "time", "cluster");
    for i in first_instance..first_instance + count {
        out.push_str(&format!("{:<WIDTH$}", InstanceId(i).to_string()));
    }
    let mut out = out.trim_end().to_string() + "\n";
    let entries: Vec<&HistoryEntry> = history.entries().iter().filter(|e| shown(e)).collect();
    let keys = keys(&entries);
    let times: Vec<Duration> = entries.iter().map(|e| e.at).collect();
    let mut at = 0;
    for fold in folds(&keys, &times) {
        for entry in &entries[at..fold.start] {
            out.push_str(&line(entry, first_instance));
        }
        let cycle = |n: usize| &entries[fold.start + n * fold.period..][..fold.period];
        for entry in cycle(0) {
            out.push_str(&line(entry, first_instance));
        }
        let hidden = fold.hidden();
        let (first, last) = (cycle(1)[0].at, cycle(hidden)[fold.period - 1].at);
        let what = match (fold.period, hidden) {
            (1, 1) => "line (".to_string(),
            (1, _) => "lines (".to_string(),
            (period, 1) => format!("cycle ({period} lines, "),
            (period, _) => format!("cycles ({period} lines each, "),
        };
        out.push_str(&format!(
            "{:>14}  ... {hidden} more identical {what}{} to {}; differing only in times, \
             incarnations, member ids, generations and epochs) ...\n",
            "",
            seconds(first),
            seconds(last),
        ));
        if fold.last_shown {
            for entry in cycle(fold.copies - 1) {
                out.push_str(&line(entry, first_instance));
            }
        }
        at = fold.end();
    }
    for entry in &entries[at..] {
        out.push_str(&line(entry, first_instance));
    }
    out
}

/// One timeline line: the time, then the event in its instance's lane (the first lane's
/// instance is `first`).
fn line(entry: &HistoryEntry, first: u32) -> String {
    let micros = entry.at.as_micros();
    let lane = entry
        .incarnation
        .map_or(0, |i| (i.instance.0 - first) as usize + 1);
    let mut line = format!("{:>6}.{:06}s  ", micros / 1_000_000, micros % 1_000_000);
    line.push_str(&" ".repeat(WIDTH * lane));
    if let Some(inc) = entry.incarnation {
        line.push_str(&format!("#{} ", inc.number));
    }
    line.push_str(&entry.event.to_string());
    line + "\n"
}

/// `1.005s`, `50.3s`, `6s`: virtual time in seconds, without trailing zeros.
fn seconds(at: Duration) -> String {
    let micros = at.as_micros();
    let fraction = format!("{:06}", micros % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{}s", micros / 1_000_000)
    } else {
        format!("{}.{fraction}s", micros / 1_000_000)
    }
}

/// What two entries must share to count as the same step of a cycle: the instance (not the
/// incarnation) and the event with its incidental counters cleared.
type Key = (Option<InstanceId>, HistoryEvent);

/// Each entry's [`Key`]. A member id becomes the instance that joined as it (`i0`), so that
/// two instances swapping partitions between cycles still differ; a member id no instance
/// joined as stays as it is.
fn keys(entries: &[&HistoryEntry]) -> Vec<Key> {
    let mut members: BTreeMap<String, InstanceId> = BTreeMap::new();
    for entry in entries {
        let Some(Incarnation { instance, .. }) = entry.incarnation else {
            continue;
        };
        match &entry.event {
            HistoryEvent::MemberJoined { member, .. }
            | HistoryEvent::StaticMemberReplaced { member, .. } => {
                members.insert(member.clone(), instance);
            }
            _ => {}
        }
    }
    entries
        .iter()
        .map(|e| {
            let instance = e.incarnation.map(|i| i.instance);
            (instance, normalised(&e.event, &members))
        })
        .collect()
}

/// `event` without its incidental counters: generations and epochs zeroed, member ids
/// replaced by their instance.
fn normalised(event: &HistoryEvent, members: &BTreeMap<String, InstanceId>) -> HistoryEvent {
    use HistoryEvent::*;
    let member = |m: &mut String| {
        if let Some(instance) = members.get(m.as_str()) {
            *m = instance.to_string();
        }
    };
    let mut event = event.clone();
    match &mut event {
        RebalanceStarted { generation, .. }
        | PartitionsAssigned { generation, .. }
        | OffsetsCommitted { generation, .. } => *generation = 0,
        GenerationStarted {
            generation,
            assignment,
            ..
        } => {
            *generation = 0;
            for (m, _) in assignment {
                member(m);
            }
        }
        MemberJoined { member: m, .. } | MemberRemoved { member: m, .. } => member(m),
        StaticMemberReplaced {
            member: m,
            replaced,
            ..
        } => {
            member(m);
            member(replaced);
        }
        TransactionsInitialized { epoch, .. } => *epoch = 0,
        _ => {}
    }
    event
}

/// A run of identical cycles: `copies` of the `period` lines starting at `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fold {
    start: usize,
    period: usize,
    copies: usize,
    /// Whether the last cycle is shown after the fold line (the cycles end the run).
    last_shown: bool,
}

impl Fold {
    fn end(&self) -> usize {
        self.start + self.period * self.copies
    }

    /// How many cycles the fold line stands for.
    fn hidden(&self) -> usize {
        self.copies - 1 - usize::from(self.last_shown)
    }
}

/// Where the timeline folds, in order: at each line, the run of three or more identical
/// cycles starting there that covers the most lines (the shortest cycle on a tie), when
/// folding it saves lines.
fn folds(keys: &[Key], times: &[Duration]) -> Vec<Fold> {
    let mut folds = Vec::new();
    let mut i = 0;
    while i < keys.len() {
        match fold_at(keys, times, i) {
            Some(fold) => {
                i = fold.end();
                folds.push(fold);
            }
            None => i += 1,
        }
    }
    folds
}

fn fold_at(keys: &[Key], times: &[Duration], start: usize) -> Option<Fold> {
    let rest = keys.len() - start;
    let mut best: Option<Fold> = None;
    for period in 1..=(rest / 3).min(MAX_PERIOD) {
        if keys[start + period] != keys[start] {
            continue;
        }
        let cycle = &keys[start..start + period];
        let copies = 1 + keys[start + period..]
            .chunks_exact(period)
            .take_while(|next| *next == cycle)
            .count();
        if copies >= 3 && best.is_none_or(|b| copies * period > b.copies * b.period) {
            best = Some(Fold {
                start,
                period,
                copies,
                last_shown: false,
            });
        }
    }
    let mut fold = best?;
    // The same cycles can start a few lines later when the lines after them begin another
    // one: start them after the longest pause (a crash loop's restart delay), so that each
    // cycle reads from its `started`.
    let mut shifts = 0;
    while fold.end() + shifts < keys.len() && keys[fold.end() + shifts] == keys[start + shifts] {
        shifts += 1;
    }
    let pause =
        |i: usize| times[i].saturating_sub(if i == 0 { Duration::ZERO } else { times[i - 1] });
    fold.start = (start..=start + shifts)
        .rev()
        .max_by_key(|i| pause(*i))
        .expect("at least the start");
    fold.last_shown = keys[fold.end()..].iter().all(|(_, e)| ends_run(e));
    // The fold line must stand for more than one line.
    (fold.hidden() * fold.period > 1).then_some(fold)
}

/// Whether `event` is one of the lines a run ends with.
fn ends_run(event: &HistoryEvent) -> bool {
    matches!(
        event,
        HistoryEvent::RestartsExhausted { .. }
            | HistoryEvent::AllInstancesStopped { .. }
            | HistoryEvent::TimeLimitReached { .. }
            | HistoryEvent::Quiesced
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::TopicPartition;

    /// A history of the entries `(at in ms, incarnation number of i0 or the cluster, event)`.
    fn history(entries: Vec<(u64, Option<u32>, HistoryEvent)>) -> History {
        let mut history = History::default();
        for (at, number, event) in entries {
            history.push(HistoryEntry {
                at: Duration::from_millis(at),
                incarnation: number.map(|number| Incarnation {
                    instance: InstanceId(0),
                    number,
                }),
                event,
            });
        }
        history
    }

    /// One crash loop cycle of incarnation `n` at second `n`, receiving `offset`: the member
    /// id and the generations change with `n`.
    fn cycle(n: u32, offset: i64) -> Vec<(u64, Option<u32>, HistoryEvent)> {
        let at = u64::from(n) * 1000;
        let member = format!("rdkafka-{n}");
        let tp = TopicPartition::new("t", 0);
        vec![
            (at, Some(n), HistoryEvent::InstanceStarted),
            (
                at,
                Some(n),
                HistoryEvent::MemberJoined {
                    group: "g".into(),
                    member: member.clone(),
                },
            ),
            (
                at,
                None,
                HistoryEvent::GenerationStarted {
                    group: "g".into(),
                    generation: 2 * n as i32 - 1,
                    protocol: "range".into(),
                    assignment: vec![(member, vec![tp.clone()])],
                },
            ),
            (
                at + 5,
                Some(n),
                HistoryEvent::Delivered {
                    position: TopicPartition::new("t", 0).at(offset),
                    key: None,
                    read_committed: false,
                },
            ),
            (
                at + 5,
                Some(n),
                HistoryEvent::InstancePanicked {
                    message: "boom".into(),
                },
            ),
        ]
    }

    fn crash_loop(offsets: &[i64]) -> String {
        let mut entries = Vec::new();
        for (i, offset) in offsets.iter().enumerate() {
            entries.extend(cycle(i as u32 + 1, *offset));
        }
        let n = offsets.len() as u32;
        let end = u64::from(n) * 1000 + 5;
        entries.push((
            end,
            Some(n),
            HistoryEvent::RestartsExhausted { restarts: n - 1 },
        ));
        entries.push((
            end,
            None,
            HistoryEvent::AllInstancesStopped { lag: Vec::new() },
        ));
        render(&history(entries), (0, 1))
    }

    fn folded(timeline: &str) -> Vec<&str> {
        timeline.lines().filter(|l| l.contains("... ")).collect()
    }

    #[test]
    fn two_identical_cycles_stay_as_they_are() {
        let timeline = crash_loop(&[0, 0]);
        assert!(folded(&timeline).is_empty(), "{timeline}");
        assert_eq!(timeline.lines().count(), 1 + 2 * 5 + 2, "{timeline}");
    }

    #[test]
    fn many_identical_cycles_fold_to_the_first_a_count_and_the_last() {
        let timeline = crash_loop(&[0; 50]);
        assert_eq!(
            folded(&timeline),
            [
                "                ... 48 more identical cycles (5 lines each, 2s to 49.005s; differing \
              only in times, incarnations, member ids, generations and epochs) ..."
            ],
            "{timeline}"
        );
        let lines: Vec<&str> = timeline.lines().collect();
        // The header, the first cycle, the fold, the last cycle, the run's end.
        assert_eq!(lines.len(), 1 + 5 + 1 + 5 + 2, "{timeline}");
        assert!(lines[1].ends_with("#1 started"), "{timeline}");
        assert!(
            lines[3].contains("generation 1 (range): rdkafka-1 <- t[0]"),
            "{timeline}"
        );
        assert!(lines[7].ends_with("#50 started"), "{timeline}");
        assert!(lines[11].ends_with("#50 PANICKED: boom"), "{timeline}");
        assert!(lines[12].contains("not restarted again after 49 restarts"));
        assert!(lines[13].contains("every instance stopped"));
    }

    #[test]
    fn three_identical_cycles_fold_when_the_fold_saves_lines() {
        let timeline = crash_loop(&[0; 3]);
        assert_eq!(folded(&timeline).len(), 1, "{timeline}");
        assert!(
            folded(&timeline)[0].contains("... 1 more identical cycle (5 lines, 2s to 2.005s;")
        );
    }

    #[test]
    fn a_different_offset_breaks_the_fold_and_what_differs_is_shown() {
        let mut offsets = vec![0; 10];
        offsets[6] = 1;
        let timeline = crash_loop(&offsets);
        // Cycles 1 to 6 fold (the 6th not shown: the run goes on), the 7th differs, 8 to 10
        // fold and end the run.
        assert_eq!(folded(&timeline).len(), 2, "{timeline}");
        assert!(
            folded(&timeline)[0]
                .contains("... 5 more identical cycles (5 lines each, 2s to 6.005s;")
        );
        assert!(
            folded(&timeline)[1].contains("... 1 more identical cycle (5 lines, 9s to 9.005s;"),
            "{timeline}"
        );
        assert!(timeline.contains("#7 recv t[0]@1"), "{timeline}");
        assert!(!timeline.contains("#6 "), "{timeline}");
        assert!(timeline.contains("#8 started"), "{timeline}");
        assert!(timeline.contains("#10 PANICKED"), "{timeline}");
    }

    #[test]
    fn lines_before_and_after_the_cycles_are_kept() {
        let tp = TopicPartition::new("t", 0);
        let produced = HistoryEvent::RecordProduced {
            position: TopicPartition::new("t", 0).at(0),
            key: None,
            retry: false,
        };
        let seek = |offset| HistoryEvent::Seeked {
            partition: tp.clone(),
            offset,
        };
        let mut entries = vec![(0, None, produced), (0, Some(1), seek(0))];
        for n in 1..=4 {
            entries.extend(cycle(n, 0));
        }
        entries.push((9000, Some(4), seek(3)));
        let timeline = render(&history(entries), (0, 1));
        let lines: Vec<&str> = timeline.lines().collect();
        // The cluster's own produce is not shown; the seek before and after the cycles are.
        assert!(lines[1].ends_with("#1 seek t[0] to 0"), "{timeline}");
        assert!(lines[2].ends_with("#1 started"), "{timeline}");
        assert!(
            lines[7].contains("... 3 more identical cycles"),
            "{timeline}"
        );
        assert!(lines[8].ends_with("#4 seek t[0] to 3"), "{timeline}");
        assert_eq!(lines.len(), 9, "{timeline}");
    }

    #[test]
    fn a_line_repeated_with_the_same_offset_folds_and_another_offset_does_not() {
        let tp = TopicPartition::new("t", 0);
        let commit = |generation, offset| HistoryEvent::OffsetsCommitted {
            group: "g".into(),
            generation,
            offsets: vec![(tp.clone(), offset)],
            kind: crate::history::CommitKind::Auto,
        };
        let mut entries: Vec<_> = (0..4)
            .map(|n| (n * 5000, Some(1), commit(n as i32, 1)))
            .collect();
        entries.push((20_000, Some(1), commit(9, 2)));
        let timeline = render(&history(entries), (0, 1));
        assert_eq!(timeline.lines().count(), 4, "{timeline}");
        assert!(
            folded(&timeline)[0].contains("... 3 more identical lines (5s to 15s;"),
            "{timeline}"
        );
        assert!(timeline.ends_with("#1 commit (auto) t[0]=2 ok (group \"g\" generation 9)\n"));
    }

    #[test]
    fn member_ids_become_their_instance_and_generations_are_cleared() {
        let members = BTreeMap::from([("rdkafka-7".to_string(), InstanceId(1))]);
        let event = HistoryEvent::GenerationStarted {
            group: "g".into(),
            generation: 9,
            protocol: "range".into(),
            assignment: vec![
                ("rdkafka-7".into(), Vec::new()),
                ("other".into(), Vec::new()),
            ],
        };
        assert_eq!(
            normalised(&event, &members),
            HistoryEvent::GenerationStarted {
                group: "g".into(),
                generation: 0,
                protocol: "range".into(),
                assignment: vec![("i1".into(), Vec::new()), ("other".into(), Vec::new())],
            }
        );
    }

    #[test]
    fn times_print_in_seconds_without_trailing_zeros() {
        assert_eq!(seconds(Duration::from_micros(1_005_000)), "1.005s");
        assert_eq!(seconds(Duration::from_millis(50_300)), "50.3s");
        assert_eq!(seconds(Duration::from_secs(6)), "6s");
        assert_eq!(seconds(Duration::from_micros(7)), "0.000007s");
    }
}
