//! Manual assignment (`assign`, `unassign`, `incremental_assign`, `incremental_unassign`), as
//! measured on librdkafka's mock cluster (`tests/brokers/manual_assign.rs`): the same
//! assertions on the simulator alone, plus its history and quiescence.

use effectively_once::history::HistoryEvent;
use effectively_once::{ConsumerHandle, EffectSink, InstanceContext, KafkaConsumer};
use rdkafka::consumer::CommitMode;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::*;

fn offsets(entries: &[(i32, Offset)]) -> TopicPartitionList {
    let mut l = TopicPartitionList::new();
    for (partition, offset) in entries {
        l.add_partition_offset(TOPIC, *partition, *offset).unwrap();
    }
    l
}

fn at(m: &impl Message) -> String {
    format!("{}@{}", m.partition(), m.offset())
}

#[test]
fn assign_starts_each_partition_where_its_offset_says_without_joining_the_group() {
    let notes = Notes::default();
    let seen = notes.clone();
    let sim = builder(4, 4).build().unwrap();
    let outcome = sim
        .run(move |ctx: InstanceContext| {
            let notes = seen.clone();
            async move {
                let first = ctx.create_consumer(&manual_commit(GROUP))?;
                first.commit(&tpl(&[(TOPIC, 1, 2)]), CommitMode::Sync)?;
                drop(first);
                let c = ctx.create_consumer(&manual_commit(GROUP))?;
                c.assign(&offsets(&[
                    (0, Offset::Offset(3)),
                    (1, Offset::Invalid),
                    (2, Offset::Beginning),
                    (3, Offset::End),
                ]))?;
                let mut got = Vec::new();
                for _ in 0..7 {
                    got.push(at(&c.recv().await?));
                }
                got.sort();
                notes.push(format!("{got:?}"));
                notes.push(format!("{:?}", c.assignment()?.to_topic_map()));
                Ok::<(), BoxError>(())
            }
        })
        .unwrap();
    show(&outcome);
    assert_eq!(
        notes.all()[0],
        r#"["0@3", "1@2", "1@3", "2@0", "2@1", "2@2", "2@3"]"#
    );
    // `Invalid` is listed as `Stored`, as librdkafka does.
    assert!(notes.all()[1].contains("Stored"), "{:?}", notes.all());
    assert!(entries_where(&outcome, |e| matches!(e, HistoryEvent::MemberJoined { .. })).is_empty());
    let assigned: Vec<String> = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::PartitionsAssignedManually { .. })
    })
    .iter()
    .map(|e| e.event.to_string())
    .collect();
    assert_eq!(
        assigned,
        [
            r#"assigned events[0] from 3, events[1] from 2, events[2] from 0, events[3] from 4 (manual, group "conformance")"#
        ]
    );
}

#[test]
fn a_manual_commit_is_accepted_only_while_the_group_has_no_member() {
    let notes = Notes::default();
    let seen = notes.clone();
    let sim = builder(1, 4).build().unwrap();
    let outcome = sim
        .run(move |ctx: InstanceContext| {
            let notes = seen.clone();
            async move {
                let manual = ctx.create_consumer(&manual_commit(GROUP))?;
                manual.assign(&offsets(&[(0, Offset::Beginning)]))?;
                manual.recv().await?;
                let commit = |o| {
                    format!(
                        "{:?}",
                        manual.commit(&tpl(&[(TOPIC, 0, o)]), CommitMode::Sync)
                    )
                };
                notes.push(commit(1));
                let member = ctx.create_consumer(&manual_commit(GROUP))?;
                member.subscribe(&[TOPIC])?;
                member.recv().await?;
                notes.push(commit(2));
                drop(member);
                notes.push(commit(3));
                Ok::<(), BoxError>(())
            }
        })
        .unwrap();
    show(&outcome);
    assert_eq!(
        notes.all(),
        [
            "Ok(())",
            "Err(KafkaError (Consumer commit error: UnknownMemberId (Broker: Unknown member)))",
            "Ok(())"
        ]
    );
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(3));
}

#[test]
fn incremental_changes_outside_a_group_and_their_errors() {
    let notes = Notes::default();
    let seen = notes.clone();
    let sim = builder(2, 2).build().unwrap();
    let outcome = sim
        .run(move |ctx: InstanceContext| {
            let notes = seen.clone();
            async move {
                let c = ctx.create_consumer(&manual_commit(GROUP))?;
                notes.push(format!(
                    "{:?}",
                    c.incremental_assign(&offsets(&[(0, Offset::Beginning)]))
                ));
                notes.push(format!(
                    "{:?}",
                    c.incremental_assign(&offsets(&[(0, Offset::Offset(1))]))
                ));
                notes.push(format!(
                    "{:?}",
                    c.incremental_unassign(&offsets(&[(1, Offset::Invalid)]))
                ));
                notes.push(at(&c.recv().await?));
                c.incremental_unassign(&offsets(&[(0, Offset::Invalid)]))?;
                notes.push(format!("{}", c.assignment()?.count()));
                let idle = tokio::time::timeout(secs(5), c.recv()).await;
                notes.push(format!("after unassign: {}", idle.is_err()));
                let member = ctx.create_consumer(&manual_commit("other"))?;
                member.subscribe(&[TOPIC])?;
                member.recv().await?;
                notes.push(format!(
                    "{:?}",
                    member.incremental_assign(&offsets(&[(0, Offset::Beginning)]))
                ));
                Ok::<(), BoxError>(())
            }
        })
        .unwrap();
    show(&outcome);
    assert_eq!(
        notes.all(),
        [
            "Ok(())",
            "Err(KafkaError (Subscription error: _CONFLICT))",
            "Err(KafkaError (Subscription error: _INVALID_ARG))",
            "0@0",
            "0",
            "after unassign: true",
            "Err(KafkaError (Subscription error: _STATE))",
        ]
    );
    let unassigned: Vec<String> = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::PartitionsUnassigned { .. })
    })
    .iter()
    .map(|e| e.event.to_string())
    .collect();
    assert_eq!(
        unassigned,
        [r#"unassigned events[0] (manual, group "conformance")"#]
    );
}

/// A manually assigned consumer that commits what it processed lets the run quiesce once it
/// is done, as a subscribed one does.
#[test]
fn a_manually_assigned_consumer_that_commits_quiesces() {
    let sim = builder(2, 3).build().unwrap();
    let outcome = sim
        .run(|ctx: InstanceContext| async move {
            let sink: EffectSink = ctx.effect_sink("email");
            let c = ctx.create_consumer(&manual_commit(GROUP))?;
            c.assign(&offsets(&[(0, Offset::Invalid), (1, Offset::Invalid)]))?;
            loop {
                let m = c.recv().await?;
                sink.perform(&payload(&m)).await?;
                c.commit_message(&m, CommitMode::Sync)?;
            }
            #[allow(unreachable_code)]
            Ok::<(), BoxError>(())
        })
        .unwrap();
    show(&outcome);
    assert!(outcome.history().quiesced(), "{}", outcome.history());
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 1), Some(3));
}
