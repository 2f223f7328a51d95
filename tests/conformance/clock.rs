//! The virtual clock: tokio's time inside consumers is virtual, so an hour-long sleep or a 45 s
//! session timeout takes no wall time, and a consumer that starts after the settle period still
//! gets to consume.

use std::time::{Duration, Instant as WallInstant};

use effectively_once::history::{HistoryEvent, MemberRemoval, TopicPartition};
use effectively_once::{Anchor, ConsumerHandle, Fault, FaultSchedule, KafkaConsumer, Operation};
use rdkafka::ClientConfig;
use rdkafka::consumer::CommitMode;

use crate::support::*;

#[test]
fn virtual_clock_an_hour_long_sleep_inside_a_consumer_takes_no_wall_time() {
    // The consumer spends an hour of virtual time on its one record (max.poll.interval.ms is
    // raised so that librdkafka does not leave the group meanwhile).
    let mut b = builder(1, 1);
    b.latency(Duration::ZERO, Duration::ZERO)
        .time_limit(Duration::from_secs(2 * 3600));
    let mut config = manual_commit(GROUP);
    config.set("max.poll.interval.ms", "7200000");
    let notes = Notes::default();
    let wall = WallInstant::now();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let (notes, config) = (notes.clone(), config.clone());
                async move {
                    let consumer = ctx.create_consumer(&config)?;
                    consumer.subscribe(&[TOPIC])?;
                    loop {
                        let m = consumer.recv().await?;
                        let start = tokio::time::Instant::now();
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        notes.push(format!("{:?}", start.elapsed()));
                        ctx.effect_sink("clock").perform("woke").await?;
                        consumer.commit_message(&m, CommitMode::Sync)?;
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    let took = wall.elapsed();
    show(&outcome);
    assert!(took < WALL_BOUND, "an hour of virtual time took {took:?}");
    assert!(outcome.history().quiesced());
    assert_eq!(notes.all(), vec!["3600s".to_string()]);
    let delivered = entries_where(&outcome, |e| matches!(e, HistoryEvent::Delivered { .. }));
    let effect = entries_where(&outcome, |e| matches!(e, HistoryEvent::Effect { .. }));
    assert_eq!((delivered.len(), effect.len()), (1, 1));
    assert_eq!(effect[0].at - delivered[0].at, Duration::from_secs(3600));
    // Quiesced after the default 10 s settle period.
    assert_eq!(
        outcome.history().entries().last().unwrap().at,
        effect[0].at + secs(10)
    );
}

#[test]
fn a_consumer_that_subscribes_after_the_settle_period_still_consumes_everything() {
    // An instance that waits (for a dependency, a warm-up) longer than the settle period before
    // it creates its consumer is still running: the run must not end before it consumed.
    let b = builder(1, 3);
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            tokio::time::sleep(secs(15)).await;
            let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
            commit_after_each(&consumer, &ctx.effect_sink("e")).await
        })
        .unwrap();
    show(&outcome);
    assert_eq!(outcome.history().effect_counts("e").len(), 3);
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(3));
    assert!(outcome.history().quiesced());
}

#[test]
fn virtual_clock_a_45s_session_timeout_after_a_crash_takes_no_wall_time() {
    // librdkafka's default session.timeout.ms is 45000: the crashed member is removed 45 s
    // (minus at most one heartbeat interval, 3 s) after it fell silent.
    let mut b = builder(1, 3);
    b.faults(FaultSchedule::new().with(
        Anchor::on(Operation::CommitMessage).record(0, 1),
        Fault::CrashBefore,
    ));
    let mut config = ClientConfig::new();
    config
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let wall = WallInstant::now();
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let config = config.clone();
            async move {
                let consumer = ctx.create_consumer(&config)?;
                commit_after_each(&consumer, &ctx.effect_sink("e")).await
            }
        })
        .unwrap();
    let took = wall.elapsed();
    show(&outcome);
    assert!(took < WALL_BOUND, "took {took:?}");
    assert!(outcome.history().quiesced());
    let crash = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::InstanceCrashed { .. })
    });
    assert_eq!(crash.len(), 1);
    let removed = entries_where(&outcome, |e| {
        matches!(
            e,
            HistoryEvent::MemberRemoved {
                reason: MemberRemoval::SessionTimeout,
                ..
            }
        )
    });
    assert_eq!(removed.len(), 1);
    let silence = removed[0].at - crash[0].at;
    assert!(
        silence <= Duration::from_secs(45) && silence >= Duration::from_secs(42),
        "removed {silence:?} after the crash"
    );
    // The restarted instance got the partition only then, from the last commit (offset 1).
    let assigned = entries_where(
        &outcome,
        |e| matches!(e, HistoryEvent::PartitionsAssigned { partitions, .. } if !partitions.is_empty()),
    );
    let last = assigned.last().unwrap();
    assert_eq!(last.incarnation, inc(0, 2));
    assert!(last.at >= removed[0].at);
    assert!(matches!(
        &last.event,
        HistoryEvent::PartitionsAssigned { partitions, .. }
            if *partitions == vec![(TopicPartition::new(TOPIC, 0), 1)]
    ));
}
