//! Committed offsets: `commit_message` commits offset + 1, offsets are kept per group and
//! partition, a stale member's commit is rejected with the error rdkafka reports,
//! `auto.offset.reset` applies only without a committed offset, and a restart resumes there.

use effectively_once::history::HistoryEvent;
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, InputRecord, KafkaConsumer, Operation, Outcome,
};
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::support::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn committed(outcome: &Outcome, group: &str, partition: i32) -> Option<i64> {
    outcome.cluster().committed_offset(group, TOPIC, partition)
}

/// Receives every record, commits each with `commit_message`, notes `partition@offset`.
fn commit_each(
    outcome_notes: Notes,
    group: &'static str,
    reset: &'static str,
) -> impl Fn(
    effectively_once::InstanceContext,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>>>> {
    move |ctx| {
        let notes = outcome_notes.clone();
        Box::pin(async move {
            let mut config = manual_commit(group);
            config.set("auto.offset.reset", reset);
            let consumer = ctx.create_consumer(&config)?;
            consumer.subscribe(&[TOPIC])?;
            loop {
                let m = consumer.recv().await?;
                notes.push(format!(
                    "{}#{} {}@{}",
                    ctx.instance(),
                    ctx.incarnation().number,
                    m.partition(),
                    m.offset()
                ));
                consumer.commit_message(&m, CommitMode::Sync)?;
            }
        })
    }
}

#[test]
fn commit_message_commits_the_offset_after_the_message_per_partition() {
    let notes = Notes::default();
    let outcome = builder(2, 3)
        .build()
        .unwrap()
        .run(commit_each(notes.clone(), GROUP, "earliest"))
        .unwrap();
    // Offsets 0..=2 consumed in each partition: the committed offset is the next to read, 3.
    assert_eq!(committed(&outcome, GROUP, 0), Some(3));
    assert_eq!(committed(&outcome, GROUP, 1), Some(3));
    let commits: Vec<i64> = outcome
        .history()
        .events()
        .filter_map(|e| match e {
            HistoryEvent::OffsetsCommitted { offsets, .. } if offsets[0].0.partition == 0 => {
                Some(offsets[0].1)
            }
            _ => None,
        })
        .collect();
    assert_eq!(commits, [1, 2, 3]);
}

#[test]
fn committed_offsets_are_kept_per_group_and_per_partition() {
    let mut b = builder(2, 2);
    b.instances(2);
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            // Instance 0 in group "a" commits only partition 0 at offset 1; instance 1 in
            // group "b" commits partition 1 at offset 2.
            let (group, partition, offset) = if ctx.instance().0 == 0 {
                ("a", 0, 1)
            } else {
                ("b", 1, 2)
            };
            let consumer = ctx.create_consumer(&manual_commit(group))?;
            consumer.subscribe(&[TOPIC])?;
            consumer.recv().await?;
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(TOPIC, partition, Offset::Offset(offset))?;
            consumer.commit(&list, CommitMode::Sync)?;
            loop {
                consumer.recv().await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), BoxError>(())
        })
        .unwrap();
    assert_eq!(committed(&outcome, "a", 0), Some(1));
    assert_eq!(committed(&outcome, "a", 1), None);
    assert_eq!(committed(&outcome, "b", 0), None);
    assert_eq!(committed(&outcome, "b", 1), Some(2));
}

#[test]
fn a_commit_from_a_member_removed_from_the_group_fails_with_unknown_member_id() {
    // The member freezes past session.timeout.ms and is removed; the others move on to a new
    // generation. Its commit afterwards is rejected by the coordinator, and rdkafka reports
    // KafkaError::ConsumerCommit with the broker's code (UNKNOWN_MEMBER_ID), leaving the
    // committed offset unchanged.
    let mut b = builder(1, 2);
    b.instances(2).faults(FaultSchedule::new().with(
        Anchor::on(Operation::Effect).record(0, 0),
        Fault::Freeze(secs(20)),
    ));
    let notes = Notes::default();
    let seen = notes.clone();
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let notes = seen.clone();
            async move {
                let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
                consumer.subscribe(&[TOPIC])?;
                let sink = ctx.effect_sink("e");
                loop {
                    let m = consumer.recv().await?;
                    sink.perform(&format!("{}", m.offset())).await?;
                    if let Err(e) = consumer.commit_message(&m, CommitMode::Sync) {
                        notes.push(format!("{} offset {}: {e:?}", ctx.instance(), m.offset()));
                        return Err::<(), BoxError>(e.into());
                    }
                }
            }
        })
        .unwrap();
    show(&outcome);
    let rejected: Vec<String> = notes.all();
    assert_eq!(
        rejected,
        [format!(
            "i0 offset 0: {:?}",
            KafkaError::ConsumerCommit(RDKafkaErrorCode::UnknownMemberId)
        )]
    );
    assert!(
        outcome
            .history()
            .events()
            .any(|e| matches!(e, HistoryEvent::CommitRejected { .. }))
    );
    // The other member consumed both records and committed them; the stale commit of offset 1
    // did not move anything backwards.
    assert_eq!(committed(&outcome, GROUP, 0), Some(2));
}

#[test]
fn auto_offset_reset_earliest_starts_at_the_first_record() {
    let notes = Notes::default();
    builder(1, 2)
        .build()
        .unwrap()
        .run(commit_each(notes.clone(), GROUP, "earliest"))
        .unwrap();
    assert_eq!(notes.all(), ["i0#1 0@0", "i0#1 0@1"]);
}

#[test]
fn auto_offset_reset_latest_starts_at_the_end_when_the_partition_is_assigned() {
    // librdkafka's default: records produced before the assignment are skipped; records
    // produced after it are consumed.
    let mut b = builder(1, 2);
    b.produce_at(
        secs(5),
        InputRecord::new(TOPIC).partition(0).payload("after"),
    );
    let notes = Notes::default();
    let outcome = b
        .build()
        .unwrap()
        .run(commit_each(notes.clone(), GROUP, "latest"))
        .unwrap();
    assert_eq!(notes.all(), ["i0#1 0@2"]);
    let starts: Vec<String> = outcome
        .history()
        .events()
        .filter_map(|e| match e {
            HistoryEvent::PartitionsAssigned { partitions, .. } => Some(format!(
                "{:?}",
                partitions.iter().map(|(_, o)| *o).collect::<Vec<_>>()
            )),
            _ => None,
        })
        .collect();
    assert_eq!(starts, ["[2]"]);
}

#[test]
fn auto_offset_reset_error_reports_auto_offset_reset_to_the_application() {
    let mut b = builder(1, 1);
    b.time_limit(secs(30));
    let notes = Notes::default();
    let seen = notes.clone();
    b.build()
        .unwrap()
        .run(move |ctx| {
            let notes = seen.clone();
            async move {
                let mut config = manual_commit(GROUP);
                config.set("auto.offset.reset", "error");
                let consumer = ctx.create_consumer(&config)?;
                consumer.subscribe(&[TOPIC])?;
                let err = consumer.recv().await.err();
                notes.push(format!("{err:?}"));
                Ok::<(), BoxError>(())
            }
        })
        .unwrap();
    assert_eq!(
        notes.all(),
        [format!(
            "{:?}",
            Some(KafkaError::MessageConsumption(
                RDKafkaErrorCode::AutoOffsetReset
            ))
        )]
    );
}

#[test]
fn a_restarted_instance_resumes_from_the_committed_offset_not_from_auto_offset_reset() {
    // Crash right after offset 1 was committed (2): the restart, with auto.offset.reset
    // earliest, starts at 2, not at 0.
    let mut b = builder(1, 4);
    b.faults(FaultSchedule::new().with(
        Anchor::on(Operation::CommitMessage).record(0, 1),
        Fault::CrashAfter,
    ));
    let notes = Notes::default();
    let outcome = b
        .build()
        .unwrap()
        .run(commit_each(notes.clone(), GROUP, "earliest"))
        .unwrap();
    assert_eq!(
        notes.all(),
        ["i0#1 0@0", "i0#1 0@1", "i0#2 0@2", "i0#2 0@3"]
    );
    assert_eq!(committed(&outcome, GROUP, 0), Some(4));
}

#[test]
fn commit_faults_fail_apply_ambiguously_or_crash_around_the_commit() {
    // (fault, committed offset afterwards, what the application saw)
    let cases = [
        (Fault::Fail, None, true),
        (Fault::Ambiguous, Some(1), true),
        (Fault::CrashBefore, None, false),
        (Fault::CrashAfter, Some(1), false),
    ];
    for (fault, expected, app_saw_error) in cases {
        let mut b = builder(1, 1);
        b.max_restarts(0).faults(
            FaultSchedule::new().with(Anchor::on(Operation::CommitMessage).record(0, 0), fault),
        );
        let notes = Notes::default();
        let seen = notes.clone();
        let outcome = b
            .build()
            .unwrap()
            .run(move |ctx| {
                let notes = seen.clone();
                async move {
                    let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
                    consumer.subscribe(&[TOPIC])?;
                    let m = consumer.recv().await?;
                    let result = consumer.commit_message(&m, CommitMode::Sync);
                    notes.push(format!("{}", result.is_err()));
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap();
        assert_eq!(committed(&outcome, GROUP, 0), expected, "{fault}");
        let saw: Vec<String> = if app_saw_error {
            vec!["true".into()]
        } else {
            vec![]
        };
        assert_eq!(notes.all(), saw, "{fault}");
    }
}

#[test]
fn commit_consumer_state_with_nothing_new_fails_with_no_offset() {
    // rd_kafka_commit(NULL offsets) with nothing consumed since the last commit: _NO_OFFSET.
    let notes = Notes::default();
    let seen = notes.clone();
    let mut b = builder(1, 1);
    b.time_limit(secs(60));
    b.build()
        .unwrap()
        .run(move |ctx| {
            let notes = seen.clone();
            async move {
                let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
                consumer.subscribe(&[TOPIC])?;
                consumer.recv().await?;
                notes.push(format!(
                    "{:?}",
                    consumer.commit_consumer_state(CommitMode::Sync)
                ));
                notes.push(format!(
                    "{:?}",
                    consumer.commit_consumer_state(CommitMode::Sync)
                ));
                Ok::<(), BoxError>(())
            }
        })
        .unwrap();
    assert_eq!(
        notes.all(),
        [
            "Ok(())".to_string(),
            format!(
                "{:?}",
                Err::<(), _>(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))
            )
        ]
    );
}
