//! Consumer groups (Kafka's classic protocol, eager rebalancing, as librdkafka runs it):
//! generations, the range and roundrobin assignors, rebalances on join, leave, session timeout
//! and `max.poll.interval.ms` breach.

use std::time::Duration;

use effectively_once::history::{HistoryEvent, InstanceId, MemberRemoval, TopicPartition};
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, InputRecord, InstanceContext, KafkaConsumer,
    Operation, Outcome, Simulation,
};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::support::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A consumer that subscribes to `topics` and receives forever, with `strategy`.
async fn consume(
    ctx: InstanceContext,
    topics: &'static [&'static str],
    extra: &'static [(&'static str, &'static str)],
) -> Result<(), BoxError> {
    let mut config = manual_commit(GROUP);
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let consumer = ctx.create_consumer(&config)?;
    consumer.subscribe(topics)?;
    loop {
        consumer.recv().await?;
    }
}

/// Each member's partitions in one generation.
type Assignment = Vec<(String, Vec<TopicPartition>)>;

/// The generations the group went through: (time, generation, protocol, assignment).
fn generations(outcome: &Outcome) -> Vec<(Duration, i32, String, Assignment)> {
    outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::GenerationStarted {
                generation,
                protocol,
                assignment,
                ..
            } => Some((e.at, *generation, protocol.clone(), assignment.clone())),
            _ => None,
        })
        .collect()
}

fn removals(outcome: &Outcome) -> Vec<(Duration, String, MemberRemoval)> {
    outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::MemberRemoved { member, reason, .. } => {
                Some((e.at, member.clone(), *reason))
            }
            _ => None,
        })
        .collect()
}

fn tps(topic: &str, partitions: &[i32]) -> Vec<TopicPartition> {
    partitions
        .iter()
        .map(|p| TopicPartition::new(topic, *p))
        .collect()
}

/// Two instances (the second joining at 2 s) on `topics`.
fn two_members(
    topics: &[(&str, i32)],
    consumer_topics: &'static [&'static str],
    extra: &'static [(&'static str, &'static str)],
) -> Outcome {
    let mut b = Simulation::builder();
    for (t, p) in topics {
        b.topic(*t, *p);
    }
    b.instances(2).start_at(1, secs(2));
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| consume(ctx, consumer_topics, extra))
        .unwrap();
    show(&outcome);
    outcome
}

#[test]
fn range_gives_each_member_a_contiguous_range_of_each_topic_in_member_id_order() {
    // Kafka's RangeAssignor (librdkafka rdkafka_range_assignor.c): per topic, partitions are
    // split into contiguous ranges over the members sorted by member id; the first
    // `partitions % members` members get one more.
    let outcome = two_members(
        &[("a", 5), ("b", 1)],
        &["a", "b"],
        &[("partition.assignment.strategy", "range")],
    );
    let last = generations(&outcome).pop().expect("a generation");
    assert_eq!(last.2, "range");
    let mut first = tps("a", &[0, 1, 2]);
    first.extend(tps("b", &[0]));
    assert_eq!(
        last.3,
        vec![
            ("rdkafka-1".to_string(), first),
            ("rdkafka-2".to_string(), tps("a", &[3, 4])),
        ]
    );
}

#[test]
fn roundrobin_deals_all_partitions_sorted_over_members_sorted_by_id() {
    // Kafka's RoundRobinAssignor: every subscribed partition, sorted by topic and partition,
    // dealt in turn to the members sorted by member id.
    let outcome = two_members(
        &[("a", 3), ("b", 2)],
        &["a", "b"],
        &[("partition.assignment.strategy", "roundrobin")],
    );
    let last = generations(&outcome).pop().expect("a generation");
    assert_eq!(last.2, "roundrobin");
    let mut first = tps("a", &[0, 2]);
    first.extend(tps("b", &[1]));
    let mut second = tps("a", &[1]);
    second.extend(tps("b", &[0]));
    assert_eq!(
        last.3,
        vec![
            ("rdkafka-1".to_string(), first),
            ("rdkafka-2".to_string(), second)
        ]
    );
}

#[test]
fn librdkafkas_default_strategy_list_makes_the_group_use_range() {
    // librdkafka's default partition.assignment.strategy is "range,roundrobin": every member's
    // first choice is range, so the coordinator picks range.
    let outcome = two_members(&[(TOPIC, 4)], &[TOPIC], &[]);
    assert!(generations(&outcome).iter().all(|g| g.2 == "range"));
}

#[test]
fn a_joining_member_starts_a_new_generation_and_the_old_member_is_revoked_then_reassigned() {
    let outcome = two_members(&[(TOPIC, 4)], &[TOPIC], &[]);
    let gens = generations(&outcome);
    // Generation ids count completed rebalances from 1.
    assert_eq!(gens.iter().map(|g| g.1).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        gens[0].3,
        vec![("rdkafka-1".to_string(), tps(TOPIC, &[0, 1, 2, 3]))]
    );
    assert!(
        gens[1].0 >= secs(2),
        "the second generation follows the 2 s join"
    );
    assert_eq!(
        gens[1].3,
        vec![
            ("rdkafka-1".to_string(), tps(TOPIC, &[0, 1])),
            ("rdkafka-2".to_string(), tps(TOPIC, &[2, 3])),
        ]
    );
    // Eager protocol: instance 0 gives up everything, then takes its new share.
    let i0: Vec<String> = outcome
        .history()
        .entries()
        .iter()
        .filter(|e| e.incarnation.is_some_and(|i| i.instance == InstanceId(0)))
        .filter_map(|e| match &e.event {
            HistoryEvent::PartitionsRevoked { partitions, .. } => {
                Some(format!("revoked {}", partitions.len()))
            }
            HistoryEvent::PartitionsAssigned {
                generation,
                partitions,
                ..
            } => Some(format!("assigned {} in {generation}", partitions.len())),
            _ => None,
        })
        .collect();
    assert_eq!(i0, ["assigned 4 in 1", "revoked 4", "assigned 2 in 2"]);
}

#[test]
fn a_member_that_closes_leaves_at_once_and_the_group_rebalances_without_waiting() {
    // Closing a consumer sends LeaveGroup: the coordinator rebalances immediately instead of
    // waiting for the session timeout.
    let mut b = Simulation::builder();
    b.topic(TOPIC, 2).instances(2);
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
            consumer.subscribe(&[TOPIC])?;
            if ctx.instance() == InstanceId(1) {
                tokio::select! {
                    biased;
                    _ = tokio::time::sleep(secs(3)) => return Ok::<(), BoxError>(()),
                    r = async { loop { consumer.recv().await?; } } => return r,
                }
            }
            loop {
                consumer.recv().await?;
            }
        })
        .unwrap();
    show(&outcome);
    let left = removals(&outcome);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].2, MemberRemoval::Left);
    assert_eq!(left[0].0, secs(3));
    let last = generations(&outcome).pop().unwrap();
    assert_eq!(last.0, secs(3), "rebalanced at once");
    assert_eq!(last.3.len(), 1);
    assert_eq!(last.3[0].1, tps(TOPIC, &[0, 1]));
}

#[test]
fn a_crashed_member_is_removed_exactly_session_timeout_ms_after_its_crash() {
    // A crash sends nothing: the coordinator notices only when the session times out.
    let mut b = builder(1, 3);
    b.instances(2).faults(
        FaultSchedule::new().with(Anchor::on(Operation::Recv).record(0, 1), Fault::CrashAfter),
    );
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| consume(ctx, &[TOPIC], &[]))
        .unwrap();
    show(&outcome);
    let crash_at = outcome
        .history()
        .entries()
        .iter()
        .find(|e| matches!(e.event, HistoryEvent::InstanceCrashed { .. }))
        .expect("crashed")
        .at;
    let timed_out: Vec<_> = removals(&outcome)
        .into_iter()
        .filter(|r| r.2 == MemberRemoval::SessionTimeout)
        .collect();
    assert_eq!(timed_out.len(), 1, "{timed_out:?}");
    assert_eq!(
        timed_out[0].0,
        crash_at + secs(6),
        "session.timeout.ms=6000"
    );
    let next = generations(&outcome)
        .into_iter()
        .find(|g| g.0 == timed_out[0].0)
        .expect("a rebalance at the timeout");
    assert!(next.3.iter().all(|(m, _)| *m != timed_out[0].1));
}

#[test]
fn an_application_that_does_not_poll_within_max_poll_interval_is_removed_told_and_rejoins() {
    // librdkafka leaves the group when the application does not call poll for
    // max.poll.interval.ms, and the next poll returns ERR__MAX_POLL_EXCEEDED; the consumer
    // then rejoins as a new member.
    let mut b = builder(1, 2);
    b.faults(FaultSchedule::new().with(
        Anchor::on(Operation::Effect).record(0, 0),
        Fault::Stall(secs(20)),
    ));
    let notes = Notes::default();
    let seen = notes.clone();
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let notes = seen.clone();
            async move {
                let mut config = manual_commit(GROUP);
                config.set("max.poll.interval.ms", "10000");
                let consumer = ctx.create_consumer(&config)?;
                consumer.subscribe(&[TOPIC])?;
                let sink = ctx.effect_sink("e");
                loop {
                    match consumer.recv().await {
                        Ok(_) => sink.perform("x").await?,
                        Err(e) => notes.push(format!("{e:?}")),
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), BoxError>(())
            }
        })
        .unwrap();
    show(&outcome);
    let removed = removals(&outcome);
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0].2, MemberRemoval::MaxPollIntervalExceeded);
    let delivered_at = outcome
        .history()
        .entries()
        .iter()
        .find(|e| matches!(e.event, HistoryEvent::Delivered { .. }))
        .unwrap()
        .at;
    assert_eq!(removed[0].0, delivered_at + secs(10));
    assert_eq!(
        notes.all(),
        [format!(
            "{:?}",
            KafkaError::MessageConsumption(RDKafkaErrorCode::PollExceeded)
        )]
    );
    let joins = outcome
        .history()
        .events()
        .filter(|e| matches!(e, HistoryEvent::MemberJoined { .. }))
        .count();
    assert_eq!(joins, 2, "rejoined as a new member");
}

#[test]
fn a_session_timeout_below_the_brokers_minimum_is_refused_with_invalid_session_timeout() {
    // group.min.session.timeout.ms (6000 by default): JoinGroup fails with
    // INVALID_SESSION_TIMEOUT, which librdkafka reports to the application.
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
                config.set("session.timeout.ms", "3000");
                let consumer = ctx.create_consumer(&config)?;
                consumer.subscribe(&[TOPIC])?;
                let err = consumer.recv().await.err();
                notes.push(format!("{err:?}"));
                Ok::<(), BoxError>(())
            }
        })
        .unwrap();
    let all = notes.all();
    assert_eq!(all.len(), 1);
    assert!(all[0].contains("InvalidSessionTimeout"), "{all:?}");
}

#[test]
fn no_partition_is_owned_by_two_members_of_the_same_generation() {
    for seed in 0..20 {
        let mut b = builder(3, 4);
        b.seed(seed).instances(3).start_at(2, secs(1)).faults(
            FaultSchedule::new()
                .with(Anchor::on(Operation::Recv).record(1, 1), Fault::CrashAfter)
                .with(
                    Anchor::on(Operation::Recv).record(0, 2),
                    Fault::Freeze(secs(8)),
                ),
        );
        b.produce(InputRecord::new(TOPIC).partition(2).payload("late"));
        let outcome = b
            .build()
            .unwrap()
            .run(|ctx| consume(ctx, &[TOPIC], &[]))
            .unwrap();
        for (_, generation, _, assignment) in generations(&outcome) {
            let mut all: Vec<&TopicPartition> = assignment.iter().flat_map(|(_, p)| p).collect();
            let n = all.len();
            all.sort();
            all.dedup();
            assert_eq!(
                all.len(),
                n,
                "seed {seed} generation {generation}: {assignment:?}"
            );
        }
    }
}
