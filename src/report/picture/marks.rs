//! What each history entry looks like on the picture: its glyph, its CSS classes, a short
//! label under it, and the event ids it belongs to.

use std::collections::BTreeMap;

use crate::history::{
    EffectOutcome, Fault, HistoryEntry, HistoryEvent, MemberRemoval, PublishedEvent,
    RecordPosition, TopicName, TopicPartition,
};

/// The shape a mark is drawn with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Glyph {
    /// A filled circle: a delivery.
    Dot,
    /// A square: an effect or a durable-store write.
    Square,
    /// A diamond: a commit.
    Diamond,
    /// A cross: a crash or a panic.
    Cross,
    /// A right-pointing triangle: an instance starting.
    Start,
    /// A lightning bolt: an injected fault.
    Bolt,
    /// A ring: a group membership change or a rebalance.
    Ring,
    /// A small tick: a produced record, a seek, a pause, an assignment.
    Tick,
    /// A rounded `T` box: a transaction.
    Txn,
    /// A flag: the end of the run.
    Flag,
}

/// One entry of the history as a mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    /// The shape.
    pub glyph: Glyph,
    /// CSS classes (the kind first: `recv`, `effect performed`, `commit`, ...).
    pub class: String,
    /// A few characters under the glyph.
    pub label: String,
    /// The event ids the entry concerns, deduplicated, in order.
    pub events: Vec<String>,
    /// True for a rebalance's new generation: drawn as a line across every lane too.
    pub generation: Option<i32>,
}

/// Where each input record came from: `(topic, partition, offset)` to event id.
pub(super) struct Records {
    by_position: BTreeMap<(TopicName, i32, i64), String>,
    /// True when the input has more than one partition: labels name the partition.
    partitioned: bool,
}

impl Records {
    pub(super) fn new(published: &[PublishedEvent]) -> Self {
        let mut by_position = BTreeMap::new();
        let mut partitions = Vec::new();
        for event in published {
            for at in event.positions.iter().chain(event.aborted.iter()) {
                by_position.insert(
                    (at.topic.clone(), at.partition, at.offset),
                    event.event_id.clone(),
                );
                if !partitions.contains(&at.partition) {
                    partitions.push(at.partition);
                }
            }
        }
        Records {
            by_position,
            partitioned: partitions.len() > 1,
        }
    }

    /// The event the record at `position` was published for.
    pub(super) fn event(&self, position: &RecordPosition) -> Option<&String> {
        self.by_position
            .get(&(position.topic.clone(), position.partition, position.offset))
    }

    /// The event of the record just before `offset` in `tp`: the last one a commit of
    /// `offset` covers.
    fn committed(&self, tp: &TopicPartition, offset: i64) -> Option<&String> {
        self.event(&tp.at(offset - 1))
    }

    /// `@3`, or `p1@3` when the input has several partitions.
    fn at(&self, partition: i32, offset: i64) -> String {
        if self.partitioned {
            format!("p{partition}@{offset}")
        } else {
            format!("@{offset}")
        }
    }

    /// `=3`, or `p1=3` when the input has several partitions; `…` when there are more.
    fn offsets<'a>(&self, offsets: impl IntoIterator<Item = (&'a TopicPartition, i64)>) -> String {
        let offsets: Vec<_> = offsets.into_iter().collect();
        let Some((tp, offset)) = offsets.first() else {
            return "none".into();
        };
        let first = if self.partitioned {
            format!("p{}={offset}", tp.partition)
        } else {
            format!("={offset}")
        };
        if offsets.len() > 1 {
            first + "…"
        } else {
            first
        }
    }
}

fn partitions_label(sign: &str, partitions: &[TopicPartition]) -> String {
    match partitions {
        [] => format!("{sign}none"),
        [one] => format!("{sign}p{}", one.partition),
        [one, ..] => format!("{sign}p{}…", one.partition),
    }
}

fn fault_label(fault: Fault) -> &'static str {
    match fault {
        Fault::CrashBefore => "crash<",
        Fault::CrashAfter => "crash>",
        Fault::Fail => "fail",
        Fault::Ambiguous => "ambig",
        Fault::LoseAck => "no ack",
        Fault::Stall(_) => "stall",
        Fault::Freeze(_) => "freeze",
        Fault::BrokerRestart(_) => "broker",
    }
}

fn push(events: &mut Vec<String>, id: Option<&String>) {
    if let Some(id) = id {
        if !events.contains(id) {
            events.push(id.clone());
        }
    }
}

/// The mark of `entry`, or `None` for what the timeline does not show (stored offsets).
pub(super) fn mark(entry: &HistoryEntry, records: &Records) -> Option<Mark> {
    use HistoryEvent::*;
    let mut events = Vec::new();
    let mut generation = None;
    let (glyph, class, label): (Glyph, &str, String) = match &entry.event {
        InstanceStarted => (Glyph::Start, "start", String::new()),
        InstanceCrashed { .. } => (Glyph::Cross, "crash", "crash".into()),
        InstancePanicked { .. } => (Glyph::Cross, "crash panic", "panic".into()),
        InstanceExited { error: None } => (Glyph::Flag, "exit", "exit".into()),
        InstanceExited { error: Some(_) } => (Glyph::Flag, "exit bad", "error".into()),
        RestartsExhausted { .. } => (Glyph::Cross, "crash exhausted", "gave up".into()),
        RecordProduced {
            position, retry, ..
        } => {
            push(&mut events, records.event(position));
            let class = if *retry { "produce bad" } else { "produce" };
            let label = if entry.incarnation.is_none() {
                records.at(position.partition, position.offset)
            } else {
                format!("→{}", position.topic)
            };
            (Glyph::Tick, class, label)
        }
        DuplicateDropped { original, .. } => {
            push(&mut events, records.event(original));
            (Glyph::Tick, "produce", "dropped".into())
        }
        ProduceFailed { appended, .. } => (
            Glyph::Tick,
            "produce bad",
            if *appended { "send?" } else { "send✗" }.into(),
        ),
        TransactionsInitialized { epoch, .. } => (Glyph::Txn, "txn", format!("init e{epoch}")),
        TransactionCommitted { offsets, .. } => {
            for (_, tp, offset) in offsets {
                push(&mut events, records.committed(tp, *offset));
            }
            (Glyph::Txn, "txn ok", "T✓".into())
        }
        TransactionAborted { .. } => (Glyph::Txn, "txn bad", "T✗".into()),
        TransactionCallFailed { .. } => (Glyph::Txn, "txn bad", "T!".into()),
        MemberJoined { .. } | StaticMemberReplaced { .. } => (Glyph::Ring, "member", "join".into()),
        StaticMemberFenced { .. } => (Glyph::Ring, "member bad", "fenced".into()),
        StaticMemberPollExceeded { .. } => (Glyph::Ring, "member bad", "poll".into()),
        MemberRemoved { reason, .. } => (
            Glyph::Ring,
            "member bad",
            match reason {
                MemberRemoval::Left => "left",
                MemberRemoval::SessionTimeout => "timeout",
                MemberRemoval::MaxPollIntervalExceeded => "poll",
            }
            .into(),
        ),
        RebalanceStarted { .. } => (Glyph::Ring, "rebalance", "rebal".into()),
        GenerationStarted { generation: g, .. } => {
            generation = Some(*g);
            (Glyph::Ring, "generation", format!("gen {g}"))
        }
        PartitionsRevoked {
            partitions, lost, ..
        } => (
            Glyph::Tick,
            if *lost { "assign bad" } else { "assign" },
            partitions_label(if *lost { "lost " } else { "−" }, partitions),
        ),
        PartitionsUnassigned { partitions, .. } => {
            (Glyph::Tick, "assign", partitions_label("−", partitions))
        }
        PartitionsAssigned { partitions, .. } | PartitionsAssignedManually { partitions, .. } => {
            let label = match partitions.as_slice() {
                [] => "+none".into(),
                [(tp, from)] => format!("+p{} {from}", tp.partition),
                [(tp, from), ..] => format!("+p{} {from}…", tp.partition),
            };
            (Glyph::Tick, "assign", label)
        }
        Delivered { position, .. } => {
            push(&mut events, records.event(position));
            (
                Glyph::Dot,
                "recv",
                records.at(position.partition, position.offset),
            )
        }
        Fetched { position, .. } => {
            push(&mut events, records.event(position));
            (
                Glyph::Dot,
                "recv fetched",
                records.at(position.partition, position.offset),
            )
        }
        OffsetStored { .. } => return None,
        Seeked { offset, .. } => (Glyph::Tick, "seek", format!("seek {offset}")),
        PartitionsPaused { paused, .. } => (
            Glyph::Tick,
            "seek",
            if *paused { "pause" } else { "resume" }.into(),
        ),
        OffsetsCommitted { offsets, .. } => {
            for (tp, offset) in offsets {
                push(&mut events, records.committed(tp, *offset));
            }
            let label = records.offsets(offsets.iter().map(|(tp, o)| (tp, *o)));
            (Glyph::Diamond, "commit", label)
        }
        CommitRejected { offsets, .. } => {
            for (tp, offset) in offsets {
                push(&mut events, records.committed(tp, *offset));
            }
            let label = records.offsets(offsets.iter().map(|(tp, o)| (tp, *o)));
            (Glyph::Diamond, "commit bad", format!("✗{label}"))
        }
        Effect {
            event_id, outcome, ..
        } => {
            push(&mut events, Some(event_id));
            let class = match outcome {
                EffectOutcome::Performed => "effect performed",
                EffectOutcome::Failed => "effect failed",
                EffectOutcome::PerformedReportedFailed => "effect ambiguous",
                EffectOutcome::Deduplicated => "effect deduplicated",
            };
            (Glyph::Square, class, event_id.clone())
        }
        // A store transaction belongs to the events whose rows it wrote.
        StoreCommitted { wrote } => {
            for id in wrote.iter().flat_map(|r| r.added.iter().chain(&r.removed)) {
                push(&mut events, Some(id));
            }
            (Glyph::Square, "store", "db".into())
        }
        StoreCommitFailed { committed, wrote } => {
            for id in wrote.iter().flat_map(|r| r.added.iter().chain(&r.removed)) {
                push(&mut events, Some(id));
            }
            (
                Glyph::Square,
                "store bad",
                if *committed { "db?" } else { "db✗" }.into(),
            )
        }
        FaultInjected { fault, record, .. } => {
            if let Some(record) = record {
                push(&mut events, records.event(record));
            }
            (Glyph::Bolt, "fault", fault_label(*fault).into())
        }
        BrokerBack => (Glyph::Tick, "seek", "broker up".into()),
        Quiesced => (Glyph::Flag, "end", "quiesced".into()),
        AllInstancesStopped { .. } => (Glyph::Flag, "end bad", "all stopped".into()),
        TimeLimitReached { .. } => (Glyph::Flag, "end bad", "time limit".into()),
    };
    let label = match (&entry.event, entry.incarnation) {
        (InstanceStarted, Some(inc)) => format!("#{}", inc.number),
        _ => label,
    };
    Some(Mark {
        glyph,
        class: class.into(),
        label,
        events,
        generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_commit_belongs_to_the_last_record_it_covers_and_a_delivery_to_its_record() {
        let tp = TopicPartition::new("t", 0);
        let published = vec![PublishedEvent {
            event_id: "evt-0".into(),
            key: "k0".into(),
            positions: vec![tp.at(0)],
            aborted: None,
            poison: false,
        }];
        let records = Records::new(&published);
        let at = |event| HistoryEntry {
            at: Duration::ZERO,
            incarnation: None,
            event,
        };
        let commit = mark(
            &at(HistoryEvent::OffsetsCommitted {
                group: "g".into(),
                generation: 1,
                offsets: vec![(tp.clone(), 1)],
                kind: crate::history::CommitKind::Sync,
            }),
            &records,
        )
        .unwrap();
        assert_eq!(
            (commit.events.as_slice(), commit.label.as_str()),
            (&["evt-0".to_string()][..], "=1")
        );
        let recv = mark(
            &at(HistoryEvent::Delivered {
                position: tp.at(0),
                key: None,
                read_committed: false,
            }),
            &records,
        )
        .unwrap();
        assert_eq!((recv.glyph, recv.label.as_str()), (Glyph::Dot, "@0"));
        let stored = at(HistoryEvent::OffsetStored {
            partition: tp,
            offset: 1,
        });
        assert_eq!(mark(&stored, &records), None);
    }
}
