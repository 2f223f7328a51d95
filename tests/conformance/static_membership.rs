//! Static group membership (`group.instance.id`, KIP-345) on the simulator. The restart within
//! the session is the case measured on the Tansu container (`tests/brokers/static_membership.rs`);
//! the others follow Kafka's coordinator (`GroupCoordinator`: `updateStaticMemberAndRebalance`,
//! `isStaticMemberFenced`) and librdkafka's client (`rd_kafka_cgrp_leave_maybe`: no LeaveGroup
//! on close; `FENCED_INSTANCE_ID` raised as a fatal error), which no broker reachable here
//! implements (the mock cluster has no KIP-345, Tansu does not fence).

use std::time::Duration;

use effectively_once::history::{HistoryEvent, InstanceId, MemberRemoval};
use effectively_once::{ConsumerHandle, InputRecord, InstanceContext, KafkaConsumer, Simulation};
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::notes::Notes;
use crate::static_membership_cases::{
    RECORDS, assert_kept_without_rebalance, config, restart_within_the_session,
};

#[test]
fn a_static_member_restarting_within_its_session_keeps_its_partitions_without_a_rebalance() {
    let (notes, outcome) = restart_within_the_session(None);
    assert_kept_without_rebalance(&notes);
    let history = outcome.history();
    println!("{history}");
    let replaced = history
        .events()
        .filter(|e| matches!(e, HistoryEvent::StaticMemberReplaced { instance_id, .. } if instance_id == "member-0"))
        .count();
    assert_eq!(replaced, 1, "{history}");
    let rebalances_after_the_crash = history
        .events()
        .skip_while(|e| !matches!(e, HistoryEvent::InstanceCrashed { .. }))
        .filter(|e| matches!(e, HistoryEvent::RebalanceStarted { .. }))
        .count();
    assert_eq!(rebalances_after_the_crash, 0, "{history}");
    let committed: i64 = committed(&outcome, 4);
    assert_eq!(committed, RECORDS as i64, "{history}");
}

/// The sum of the group's committed offsets over the first `partitions` partitions of `t`.
fn committed(outcome: &effectively_once::Outcome, partitions: i32) -> i64 {
    (0..partitions)
        .filter_map(|p| outcome.cluster().committed_offset("static", "t", p))
        .sum()
}

fn two_partitions(records_at: Duration) -> Simulation {
    let mut b = Simulation::builder();
    b.topic("t", 2).instances(2);
    for p in 0..2 {
        b.produce_at(records_at, InputRecord::new("t").partition(p).payload("x"));
    }
    b.time_limit(Duration::from_secs(120)).build().unwrap()
}

/// The groups' membership changes, in order, as `joined`, `replaced`, `removed (why)`.
fn membership(outcome: &effectively_once::Outcome) -> Vec<String> {
    outcome
        .history()
        .events()
        .filter_map(|e| match e {
            HistoryEvent::MemberJoined { .. } => Some("joined".to_string()),
            HistoryEvent::StaticMemberReplaced { instance_id, .. } => {
                Some(format!("replaced {instance_id}"))
            }
            HistoryEvent::MemberRemoved { reason, .. } => Some(format!("removed ({reason:?})")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_static_member_s_close_sends_no_leave_group_its_partitions_move_when_its_session_ends() {
    // Instance 1 closes at once (a clean exit, not restarted); instance 0 keeps consuming.
    let sim = two_partitions(Duration::from_secs(1));
    let outcome = sim
        .run(|ctx: InstanceContext| async move {
            let instance = ctx.instance().0;
            let consumer = ctx.create_consumer(&config(&format!("member-{instance}")))?;
            consumer.subscribe(&["t"])?;
            if instance == 1 {
                // Until it owns a partition, then closes.
                let message = consumer.recv().await?;
                consumer.commit_message(&message, CommitMode::Sync)?;
                return Ok::<(), KafkaError>(());
            }
            loop {
                let message = consumer.recv().await?;
                consumer.commit_message(&message, CommitMode::Sync)?;
            }
        })
        .unwrap();
    let history = outcome.history();
    println!("{history}");
    assert_eq!(
        membership(&outcome),
        ["joined", "joined", "removed (SessionTimeout)"],
        "the close left nothing; the session timeout removed the member: {history}"
    );
    let committed: i64 = committed(&outcome, 2);
    assert_eq!(committed, 2, "{history}");
}

#[test]
fn two_live_consumers_sharing_a_group_instance_id_the_older_one_is_fenced_with_a_fatal_error() {
    let notes = Notes::default();
    let seen = notes.clone();
    let mut b = Simulation::builder();
    b.topic("t", 2)
        .instances(2)
        .start_at(1, Duration::from_secs(2))
        .max_restarts(0);
    for p in 0..2 {
        b.produce_at(
            Duration::from_secs(4),
            InputRecord::new("t").partition(p).payload("x"),
        );
    }
    let outcome = b
        .time_limit(Duration::from_secs(60))
        .build()
        .unwrap()
        .run(move |ctx: InstanceContext| {
            let notes = seen.clone();
            async move {
                // The misconfiguration: every instance takes the same instance id.
                let consumer = ctx.create_consumer(&config("pod"))?;
                consumer.subscribe(&["t"])?;
                loop {
                    match consumer.recv().await {
                        Ok(message) => {
                            if let Err(e) = consumer.commit_message(&message, CommitMode::Sync) {
                                notes.push(format!("i{} commit: {e:?}", ctx.instance().0));
                            }
                        }
                        Err(e) => {
                            notes.push(format!("i{} recv: {e:?}", ctx.instance().0));
                            if matches!(e, KafkaError::MessageConsumption(RDKafkaErrorCode::Fatal))
                            {
                                return Err::<(), _>(e);
                            }
                        }
                    }
                }
            }
        })
        .unwrap();
    let history = outcome.history();
    println!("{history}");
    assert_eq!(
        notes.all(),
        ["i0 recv: KafkaError (Message consumption error: Fatal (Local: Fatal error))"],
        "{history}"
    );
    let fenced: Vec<_> = history
        .entries()
        .iter()
        .filter(|e| matches!(e.event, HistoryEvent::StaticMemberFenced { .. }))
        .map(|e| e.incarnation.map(|i| i.instance))
        .collect();
    assert_eq!(fenced, [Some(InstanceId(0))], "{history}");
    assert_eq!(
        membership(&outcome),
        ["joined", "replaced pod"],
        "the newer one took the older one's place without a rebalance: {history}"
    );
    let committed: i64 = committed(&outcome, 2);
    assert_eq!(committed, 2, "the newer one consumed everything: {history}");
}

#[test]
fn a_static_member_that_misses_max_poll_interval_rejoins_under_its_instance_id_without_a_rebalance()
{
    let sim = two_partitions(Duration::from_secs(1));
    let outcome = sim
        .run(|ctx: InstanceContext| async move {
            let instance = ctx.instance().0;
            let mut config = config(&format!("member-{instance}"));
            config.set("max.poll.interval.ms", "10000");
            let consumer = ctx.create_consumer(&config)?;
            consumer.subscribe(&["t"])?;
            let mut stalled = false;
            loop {
                let message = match consumer.recv().await {
                    Ok(message) => message,
                    Err(KafkaError::MessageConsumption(RDKafkaErrorCode::PollExceeded)) => {
                        continue;
                    }
                    Err(e) => return Err::<(), _>(e),
                };
                if instance == 0 && !stalled {
                    // Slow processing: longer than max.poll.interval.ms, shorter than the
                    // session (no heartbeats stop: librdkafka keeps them going).
                    stalled = true;
                    tokio::time::sleep(Duration::from_secs(12)).await;
                }
                match consumer.commit_message(&message, CommitMode::Sync) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .unwrap();
    let history = outcome.history();
    println!("{history}");
    let lost = history
        .events()
        .filter(|e| matches!(e, HistoryEvent::PartitionsRevoked { lost: true, .. }))
        .count();
    assert_eq!(lost, 1, "the breach loses the assignment: {history}");
    assert_eq!(
        membership(&outcome),
        ["joined", "joined", "replaced member-0"],
        "no LeaveGroup, no removal: the member rejoins in its own place: {history}"
    );
    assert!(
        !membership(&outcome)
            .iter()
            .any(|m| m.contains(&format!("{:?}", MemberRemoval::MaxPollIntervalExceeded))),
        "{history}"
    );
    let committed: i64 = committed(&outcome, 2);
    assert_eq!(committed, 2, "{history}");
}
