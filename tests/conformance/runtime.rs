//! The runtime: the virtual clock, librdkafka's offset store and auto-commit timer, tokio inside
//! consumers, crashes, panics and exits of instances, configuration errors and the time limit.

use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use effectively_once::{
    Anchor, CommitKind, ConsumerHandle, EffectSink, Error, Fault, FaultError, FaultSchedule,
    HistoryEntry, HistoryEvent, Incarnation, InputRecord, InstanceId, KafkaConsumer, Lag,
    MemberRemoval, Operation, Outcome, Simulation, TopicPartition,
};
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::support::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Generous: the runs below take milliseconds; only real sleeping would come near this.
const WALL_BOUND: Duration = Duration::from_secs(5);

fn payload(m: &impl Message) -> String {
    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()
}

fn offset_of(list: &TopicPartitionList, topic: &str, partition: i32) -> Option<i64> {
    match list.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

fn tpl(offsets: &[(&str, i32, i64)]) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (t, p, o) in offsets {
        list.add_partition_offset(t, *p, Offset::Offset(*o))
            .expect("valid offset");
    }
    list
}

fn inc(instance: u32, number: u32) -> Option<Incarnation> {
    Some(Incarnation {
        instance: InstanceId(instance),
        number,
    })
}

fn entries_where(outcome: &Outcome, f: impl Fn(&HistoryEvent) -> bool) -> Vec<&HistoryEntry> {
    outcome
        .history()
        .entries()
        .iter()
        .filter(|e| f(&e.event))
        .collect()
}

/// Process, then commit: the plain at-least-once loop.
async fn commit_after_each<C: KafkaConsumer>(
    consumer: &C,
    sink: &EffectSink,
) -> Result<(), BoxError> {
    consumer.subscribe(&[TOPIC])?;
    loop {
        let m = consumer.recv().await?;
        sink.perform(&payload(&m)).await?;
        consumer.commit_message(&m, CommitMode::Sync)?;
    }
}

// ----- the virtual clock -----

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

// ----- librdkafka's offset store and auto-commit -----

fn auto_commit_config(interval_ms: &str, auto_store: bool) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("group.id", GROUP)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", interval_ms)
        .set(
            "enable.auto.offset.store",
            if auto_store { "true" } else { "false" },
        )
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000");
    c
}

fn auto_commits(outcome: &Outcome) -> Vec<(Duration, Vec<(TopicPartition, i64)>)> {
    outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::OffsetsCommitted {
                kind: CommitKind::Auto,
                offsets,
                ..
            } => Some((e.at, offsets.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn auto_offset_store_stores_each_offset_when_the_message_is_handed_out_and_auto_commit_fires_every_interval_from_creation()
 {
    const CREATED_AT: Duration = Duration::from_millis(250);
    const INTERVAL: Duration = Duration::from_millis(1000);
    let b = builder(1, 4);
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    tokio::time::sleep(CREATED_AT).await;
                    let consumer = ctx.create_consumer(&auto_commit_config("1000", true))?;
                    consumer.subscribe(&[TOPIC])?;
                    loop {
                        let m = consumer.recv().await?;
                        let position = offset_of(&consumer.position()?, TOPIC, 0);
                        // Processing takes 1.5 s: an auto-commit fires meanwhile.
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        let committed = offset_of(&consumer.committed(Timeout::Never)?, TOPIC, 0);
                        notes.push(format!(
                            "@{} position {position:?} committed {committed:?}",
                            m.offset()
                        ));
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert!(outcome.history().quiesced());
    // While each message was still being processed, its own offset + 1 was already committed.
    assert_eq!(
        notes.all(),
        (0..4)
            .map(|o| format!("@{o} position Some({}) committed Some({})", o + 1, o + 1))
            .collect::<Vec<_>>()
    );
    let commits = auto_commits(&outcome);
    assert!(!commits.is_empty());
    for (at, _) in &commits {
        let since_creation = at.checked_sub(CREATED_AT).expect("after creation");
        assert_eq!(
            since_creation.as_nanos() % INTERVAL.as_nanos(),
            0,
            "auto-commit at {at:?} is not a multiple of the interval after creation"
        );
    }
    // Each auto-commit carries the offset after the last message handed out before it.
    let delivered: Vec<(Duration, i64)> = outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::Delivered { position, .. } => Some((e.at, position.offset)),
            _ => None,
        })
        .collect();
    for (at, offsets) in &commits {
        let last = delivered
            .iter()
            .filter(|(d, _)| d <= at)
            .map(|(_, o)| *o)
            .max()
            .expect("a delivery came first");
        assert_eq!(*offsets, vec![(TopicPartition::new(TOPIC, 0), last + 1)]);
    }
    assert_eq!(
        commits.last().unwrap().1,
        vec![(TopicPartition::new(TOPIC, 0), 4)]
    );
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(4));
}

#[test]
fn without_auto_offset_store_auto_commit_commits_only_explicitly_stored_offsets() {
    let b = builder(1, 6);
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let consumer = ctx.create_consumer(&auto_commit_config("1000", false))?;
                    consumer.subscribe(&[TOPIC])?;
                    loop {
                        let m = consumer.recv().await?;
                        let stored = match m.offset() {
                            0 | 5 => consumer.store_offset_from_message(&m),
                            // rd_kafka_offset_store: stores offset + 1.
                            2 => consumer.store_offset(TOPIC, 0, 2),
                            _ => Ok(()),
                        };
                        notes.push(format!("@{} {stored:?}", m.offset()));
                        tokio::time::sleep(Duration::from_millis(1200)).await;
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert!(outcome.history().quiesced());
    assert!(notes.all().iter().all(|n| n.ends_with("Ok(())")));
    let stored: Vec<i64> = outcome
        .history()
        .events()
        .filter_map(|e| match e {
            HistoryEvent::OffsetStored { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect();
    assert_eq!(stored, vec![1, 3, 6]);
    let committed: Vec<i64> = auto_commits(&outcome)
        .into_iter()
        .flat_map(|(_, offsets)| offsets.into_iter().map(|(_, o)| o))
        .collect();
    assert_eq!(
        committed,
        vec![1, 3, 6],
        "only stored offsets are committed"
    );
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(6));
}

#[test]
fn store_offsets_while_auto_offset_store_is_enabled_is_invalid_argument() {
    let b = builder(1, 2);
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let consumer = ctx.create_consumer(&auto_commit_config("1000", true))?;
                    consumer.subscribe(&[TOPIC])?;
                    let m = consumer.recv().await?;
                    notes.push(format!(
                        "{:?}",
                        consumer.store_offsets(&tpl(&[(TOPIC, 0, m.offset() + 1)]))
                    ));
                    consumer.recv().await?;
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert_eq!(
        notes.all(),
        vec![format!(
            "{:?}",
            Err::<(), _>(KafkaError::StoreOffset(RDKafkaErrorCode::InvalidArgument))
        )]
    );
    assert!(
        !outcome
            .history()
            .events()
            .any(|e| matches!(e, HistoryEvent::OffsetStored { .. }))
    );
}

/// Two instances share a 2-partition topic (one partition each once the group settled); on
/// each message an instance runs `probe` with the partition it does not own.
fn with_one_partition_each(
    config: ClientConfig,
    probe: impl Fn(&effectively_once::SimConsumer, i32, i64, i32) -> String + 'static,
) -> (Outcome, Vec<String>) {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 2).instances(2);
    // Produced once the group has settled on one partition per member.
    for p in 0..2 {
        for n in 0..2 {
            b.produce_at(
                secs(20),
                InputRecord::new(TOPIC)
                    .partition(p)
                    .payload(format!("p{p}-{n}")),
            );
        }
    }
    let notes = Notes::default();
    let probe = Arc::new(probe);
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let (notes, probe, config) = (notes.clone(), probe.clone(), config.clone());
                async move {
                    let consumer = ctx.create_consumer(&config)?;
                    consumer.subscribe(&[TOPIC])?;
                    loop {
                        let m = consumer.recv().await?;
                        if consumer.assignment()?.count() == 1 {
                            let other = 1 - m.partition();
                            notes.push(probe(&consumer, m.partition(), m.offset(), other));
                        }
                        consumer.commit_message(&m, CommitMode::Sync)?;
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert!(outcome.history().quiesced());
    let notes = notes.all();
    assert_eq!(
        notes.len(),
        4,
        "every message arrived with one partition each"
    );
    (outcome, notes)
}

#[test]
fn storing_an_offset_for_a_partition_not_assigned_is_a_state_error() {
    let mut config = manual_commit(GROUP);
    config.set("enable.auto.offset.store", "false");
    let (outcome, notes) = with_one_partition_each(config, |consumer, _, _, other| {
        format!(
            "{:?} {:?}",
            consumer.store_offset(TOPIC, other, 0),
            consumer.store_offsets(&tpl(&[(TOPIC, other, 1)]))
        )
    });
    let state = format!(
        "{:?}",
        Err::<(), _>(KafkaError::StoreOffset(RDKafkaErrorCode::State))
    );
    for note in notes {
        assert_eq!(note, format!("{state} {state}"));
    }
    assert!(
        !outcome
            .history()
            .events()
            .any(|e| matches!(e, HistoryEvent::OffsetStored { .. }))
    );
}

#[test]
fn store_offsets_stores_the_assigned_partitions_and_succeeds_when_only_some_are_not_assigned() {
    // rd_kafka_offsets_store: "RD_KAFKA_RESP_ERR_NO_ERROR on (partial) success, ... __STATE if
    // none of the offsets could be stored" (rdkafka.h; rdkafka_offset.c returns last_err only
    // when ok_cnt == 0).
    let mut config = manual_commit(GROUP);
    config.set("enable.auto.offset.store", "false");
    let (_outcome, notes) = with_one_partition_each(config, |consumer, mine, offset, other| {
        let stored = consumer.store_offsets(&tpl(&[(TOPIC, other, 1), (TOPIC, mine, offset + 1)]));
        // What was stored for `mine` is what an offset-less commit sends.
        let committed = consumer.commit_consumer_state(CommitMode::Sync);
        let now = offset_of(&consumer.committed(Timeout::Never).unwrap(), TOPIC, mine);
        format!("{stored:?} {committed:?} {now:?} want {}", offset + 1)
    });
    for note in notes {
        let (got, want) = note.split_once(" want ").unwrap();
        assert_eq!(got, format!("Ok(()) Ok(()) Some({want})"));
    }
}

#[test]
fn store_offset_is_allowed_while_auto_offset_store_is_enabled() {
    // rd_kafka_offset_store (unlike rd_kafka_offsets_store) does not check
    // enable.auto.offset.store; it stores offset + 1 for an assigned partition.
    let b = builder(1, 3);
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
                    consumer.subscribe(&[TOPIC])?;
                    let m = consumer.recv().await?;
                    notes.push(format!("{:?}", consumer.store_offset(TOPIC, 0, m.offset())));
                    loop {
                        let m = consumer.recv().await?;
                        consumer.commit_message(&m, CommitMode::Sync)?;
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    assert_eq!(notes.all(), vec!["Ok(())".to_string()]);
    assert!(outcome.history().events().any(|e| matches!(
        e,
        HistoryEvent::OffsetStored { partition, offset: 1 } if *partition == TopicPartition::new(TOPIC, 0)
    )));
}

// ----- tokio inside consumers -----

#[test]
fn tokio_spawn_channels_select_and_timeout_work_inside_a_consumer() {
    let b = builder(1, 5);
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let consumer = Arc::new(ctx.create_consumer(&manual_commit(GROUP))?);
                    consumer.subscribe(&[TOPIC])?;
                    // A worker task performs the effects; the poll loop hands it work over a
                    // channel and waits for its acknowledgement.
                    let (work_tx, mut work_rx) = tokio::sync::mpsc::channel::<String>(1);
                    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<String>(1);
                    let sink = ctx.effect_sink("e");
                    let worker = tokio::spawn(async move {
                        while let Some(event) = work_rx.recv().await {
                            sink.perform(&event).await.expect("effect");
                            done_tx.send(event).await.expect("poll loop alive");
                        }
                    });
                    let start = tokio::time::Instant::now();
                    let never =
                        tokio::time::timeout(Duration::from_millis(700), std::future::pending::<()>())
                            .await;
                    notes.push(format!(
                        "timeout {} after {:?}",
                        if never.is_err() { "elapsed" } else { "completed" },
                        start.elapsed()
                    ));
                    let mut ticks = 0;
                    loop {
                        tokio::select! {
                            biased;
                            m = consumer.recv() => {
                                let m = m?;
                                work_tx.send(payload(&m)).await?;
                                let done = tokio::time::timeout(Duration::from_secs(1), done_rx.recv())
                                    .await?
                                    .ok_or("worker gone")?;
                                notes.push(format!("done {done}"));
                                consumer.commit_message(&m, CommitMode::Sync)?;
                            }
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                                ticks += 1;
                                if ticks == 1 {
                                    notes.push("tick");
                                }
                            }
                        }
                        if worker.is_finished() {
                            return Err("worker died".into());
                        }
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert!(outcome.history().quiesced());
    let mut expected = vec!["timeout elapsed after 700ms".to_string()];
    expected.extend((0..5).map(|n| format!("done p0-{n}")));
    expected.push("tick".into());
    assert_eq!(notes.all(), expected);
    let effects = outcome.history().effect_counts("e");
    assert_eq!(effects.len(), 5);
    assert!(effects.values().all(|n| *n == 1));
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(5));
}

#[test]
fn a_crash_stops_the_instance_its_spawned_tasks_have_no_further_effect_and_it_restarts_as_incarnation_2()
 {
    let mut b = builder(1, 3);
    b.faults(FaultSchedule::new().with(
        Anchor::on(Operation::CommitMessage).record(0, 1),
        Fault::CrashBefore,
    ));
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let consumer = Arc::new(ctx.create_consumer(&manual_commit(GROUP))?);
                    let sink = ctx.effect_sink("e");
                    if ctx.incarnation().number == 1 {
                        // Background tasks that act 3 s later, long after the crash.
                        let late_sink = ctx.effect_sink("late");
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            let _ = late_sink.perform("after-the-crash").await;
                        });
                        let late_consumer = consumer.clone();
                        let notes = notes.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            notes.push("committing from a spawned task");
                            let _ = late_consumer.commit(&tpl(&[(TOPIC, 0, 3)]), CommitMode::Sync);
                            notes.push("commit returned");
                        });
                    }
                    commit_after_each(&consumer, &sink).await
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert!(outcome.unfired_faults().is_empty());
    assert!(outcome.history().quiesced());
    let entries = outcome.history().entries();
    let crash = entries
        .iter()
        .position(|e| matches!(e.event, HistoryEvent::InstanceCrashed { .. }))
        .expect("crashed");
    assert_eq!(entries[crash].incarnation, inc(0, 1));
    assert!(
        entries[crash + 1..]
            .iter()
            .all(|e| e.incarnation != inc(0, 1)
                || matches!(e.event, HistoryEvent::MemberRemoved { .. })),
        "incarnation 1 did nothing after its crash"
    );
    assert_eq!(outcome.history().effect_counts("late").len(), 0);
    assert!(!entries.iter().any(|e| matches!(
        &e.event,
        HistoryEvent::Effect { sink, .. } if sink == "late"
    )));
    // The spawned task reached the commit, which unwound it: it never returned.
    assert_eq!(
        notes.all(),
        vec!["committing from a spawned task".to_string()]
    );
    let started: Vec<(Duration, Option<Incarnation>)> = entries
        .iter()
        .filter(|e| e.event == HistoryEvent::InstanceStarted)
        .map(|e| (e.at, e.incarnation))
        .collect();
    assert_eq!(
        started,
        vec![
            (Duration::ZERO, inc(0, 1)),
            (entries[crash].at + Duration::from_secs(1), inc(0, 2)),
        ],
        "restarted after the default 1 s restart delay"
    );
    let effects = outcome.history().effect_counts("e");
    assert_eq!(
        effects.into_iter().collect::<Vec<_>>(),
        vec![
            ("p0-0".to_string(), 1),
            ("p0-1".to_string(), 2),
            ("p0-2".to_string(), 1)
        ]
    );
}

// ----- how instances end -----

#[test]
fn panics_errors_and_clean_exits_are_recorded_and_only_failures_restart() {
    let mut b = Simulation::builder();
    b.restart_delay(secs(1));
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| {
            let n = ctx.incarnation().number;
            if n == 2 {
                panic!("factory boom");
            }
            async move {
                match n {
                    1 => {
                        tokio::time::sleep(secs(1)).await;
                        panic!("boom {}", 42);
                    }
                    3 => Err("nope".to_string()),
                    _ => Ok(()),
                }
            }
        })
        .unwrap();
    show(&outcome);
    let got: Vec<(Duration, Option<Incarnation>, HistoryEvent)> = outcome
        .history()
        .entries()
        .iter()
        .map(|e| (e.at, e.incarnation, e.event.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (secs(0), inc(0, 1), HistoryEvent::InstanceStarted),
            (
                secs(1),
                inc(0, 1),
                HistoryEvent::InstancePanicked {
                    message: "boom 42".into()
                }
            ),
            (secs(2), inc(0, 2), HistoryEvent::InstanceStarted),
            (
                secs(2),
                inc(0, 2),
                HistoryEvent::InstancePanicked {
                    message: "factory boom".into()
                }
            ),
            (secs(3), inc(0, 3), HistoryEvent::InstanceStarted),
            (
                secs(3),
                inc(0, 3),
                HistoryEvent::InstanceExited {
                    error: Some("nope".into())
                }
            ),
            (secs(4), inc(0, 4), HistoryEvent::InstanceStarted),
            (
                secs(4),
                inc(0, 4),
                HistoryEvent::InstanceExited { error: None }
            ),
            (
                secs(4),
                None,
                HistoryEvent::AllInstancesStopped { lag: vec![] }
            ),
        ]
    );
}

#[test]
fn an_instance_that_keeps_failing_is_restarted_max_restarts_times_then_left_down() {
    let mut b = Simulation::builder();
    b.instances(2).max_restarts(2);
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            if ctx.instance() == InstanceId(0) {
                Err("always")
            } else {
                Ok(())
            }
        })
        .unwrap();
    show(&outcome);
    let started = entries_where(&outcome, |e| *e == HistoryEvent::InstanceStarted);
    let i0: Vec<u32> = started
        .iter()
        .filter(|e| e.incarnation.unwrap().instance == InstanceId(0))
        .map(|e| e.incarnation.unwrap().number)
        .collect();
    assert_eq!(i0, vec![1, 2, 3]);
    let exhausted = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::RestartsExhausted { .. })
    });
    assert_eq!(exhausted.len(), 1);
    assert_eq!(
        exhausted[0].event,
        HistoryEvent::RestartsExhausted { restarts: 2 }
    );
    assert_eq!(exhausted[0].incarnation, inc(0, 3));
    assert!(matches!(
        outcome.history().end(),
        Some(HistoryEvent::AllInstancesStopped { .. })
    ));
    assert_eq!(
        started
            .iter()
            .filter(|e| e.incarnation == inc(1, 1) || e.incarnation == inc(1, 2))
            .count(),
        1,
        "instance 1 exited cleanly and was not restarted"
    );
}

// ----- nonsense configuration -----

#[test]
fn nonsense_simulation_settings_are_rejected_by_build() {
    let mut zero_instances = Simulation::builder();
    zero_instances.topic(TOPIC, 1).instances(0);
    assert!(matches!(
        zero_instances.build(),
        Err(Error::InvalidSetting(_))
    ));

    for partitions in [0, -1] {
        let mut no_partitions = Simulation::builder();
        no_partitions.topic(TOPIC, partitions);
        let err = no_partitions.build().expect_err("rejected");
        assert!(matches!(err, Error::InvalidSetting(_)), "{err}");
        assert!(err.to_string().contains("at least one partition"), "{err}");
    }

    let mut twice = Simulation::builder();
    twice.topic(TOPIC, 1).topic(TOPIC, 2);
    assert!(matches!(twice.build(), Err(Error::InvalidSetting(_))));

    let mut undeclared = Simulation::builder();
    undeclared
        .topic(TOPIC, 1)
        .produce(InputRecord::new("nope").payload("x"));
    assert!(matches!(undeclared.build(), Err(Error::UnknownTopic(t)) if t == "nope"));

    let mut late_undeclared = Simulation::builder();
    late_undeclared
        .topic(TOPIC, 1)
        .produce_at(secs(60), InputRecord::new("nope").payload("x"));
    assert!(matches!(
        late_undeclared.build(),
        Err(Error::UnknownTopic(_))
    ));

    let mut no_such_partition = Simulation::builder();
    no_such_partition
        .topic(TOPIC, 2)
        .produce(InputRecord::new(TOPIC).partition(2).payload("x"));
    assert!(matches!(
        no_such_partition.build(),
        Err(Error::UnknownPartition {
            partition: 2,
            partitions: 2,
            ..
        })
    ));

    let mut latency = Simulation::builder();
    latency.latency(Duration::from_millis(5), Duration::from_millis(1));
    assert!(matches!(latency.build(), Err(Error::InvalidSetting(_))));

    let mut no_time = Simulation::builder();
    no_time.time_limit(Duration::ZERO);
    assert!(matches!(no_time.build(), Err(Error::InvalidSetting(_))));
}

#[test]
fn fault_schedules_that_cannot_fire_are_rejected_by_build() {
    for (anchor, fault) in [
        (Anchor::on(Operation::CommitMessage), Fault::Stall(secs(1))),
        (Anchor::on(Operation::Commit), Fault::Freeze(secs(1))),
        (Anchor::on(Operation::Effect), Fault::LoseAck),
        (Anchor::on(Operation::Recv), Fault::Ambiguous),
        (Anchor::on(Operation::StoreOffset), Fault::Ambiguous),
    ] {
        let operation = anchor.operation();
        let mut b = builder(1, 1);
        b.faults(FaultSchedule::new().with(anchor, fault));
        match b.build() {
            Err(Error::Fault(FaultError::Unsupported {
                operation: op,
                fault: f,
                index: 0,
                ..
            })) => assert_eq!((op, f), (operation, fault)),
            other => panic!("{fault} on {operation}: {other:?}"),
        }
    }
    let mut b = builder(1, 1);
    b.faults(FaultSchedule::new().with(Anchor::on(Operation::Recv).occurrence(0), Fault::Fail));
    assert!(matches!(
        b.build(),
        Err(Error::Fault(FaultError::ZeroOccurrence { .. }))
    ));
}

#[test]
fn run_called_inside_a_tokio_runtime_is_refused_with_nested_runtime() {
    let sim = builder(1, 1).build().unwrap();
    let notes = Notes::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(async {
        let notes = notes.clone();
        sim.run(move |_ctx| {
            notes.push("factory called");
            async {}
        })
    });
    assert!(matches!(result, Err(Error::NestedRuntime)), "{result:?}");
    assert!(notes.all().is_empty());
    // Outside the runtime the same simulation runs.
    assert!(sim.run(|_ctx| async {}).is_ok());
}

#[test]
fn consumer_configs_without_group_id_or_with_static_membership_are_client_creation_errors() {
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        builder(1, 1)
            .build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let mut no_group = ClientConfig::new();
                    no_group.set("auto.offset.reset", "earliest");
                    let mut empty_group = manual_commit(GROUP);
                    empty_group.set("group.id", "");
                    let mut static_member = manual_commit(GROUP);
                    static_member.set("group.instance.id", "pod-0");
                    for config in [no_group, empty_group, static_member] {
                        let kind = match ctx.create_consumer(&config) {
                            Err(KafkaError::ClientCreation(msg)) => {
                                format!("ClientCreation({})", !msg.is_empty())
                            }
                            Err(e) => format!("other error {e:?}"),
                            Ok(_) => "created".to_string(),
                        };
                        notes.push(kind);
                    }
                    notes.push(format!(
                        "valid: {}",
                        ctx.create_consumer(&manual_commit(GROUP)).is_ok()
                    ));
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert_eq!(
        notes.all(),
        vec![
            "ClientCreation(true)",
            "ClientCreation(true)",
            "ClientCreation(true)",
            "valid: true"
        ]
    );
}

// ----- the time limit -----

#[test]
fn a_run_that_never_commits_stops_at_the_virtual_time_limit_with_the_lag() {
    let mut b = builder(2, 3);
    b.time_limit(secs(60));
    let wall = WallInstant::now();
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
            consumer.subscribe(&[TOPIC])?;
            let mut n = 0;
            loop {
                let m = consumer.recv().await?;
                // Commits the first record of partition 0 only.
                if n == 0 && m.partition() == 0 {
                    consumer.commit_message(&m, CommitMode::Sync)?;
                    n += 1;
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), BoxError>(())
        })
        .unwrap();
    let took = wall.elapsed();
    show(&outcome);
    assert!(took < WALL_BOUND, "took {took:?}");
    let last = outcome.history().entries().last().unwrap();
    assert_eq!(last.at, secs(60));
    assert_eq!(last.incarnation, None);
    assert_eq!(
        last.event,
        HistoryEvent::TimeLimitReached {
            lag: vec![
                Lag {
                    group: GROUP.into(),
                    partition: TopicPartition::new(TOPIC, 0),
                    committed: Some(1),
                    end: 3
                },
                Lag {
                    group: GROUP.into(),
                    partition: TopicPartition::new(TOPIC, 1),
                    committed: None,
                    end: 3
                },
            ]
        }
    );
    assert!(!outcome.history().quiesced());
    assert!(
        outcome
            .history()
            .to_string()
            .contains("virtual-time limit reached")
    );
}

#[test]
fn an_empty_partition_does_not_keep_a_fully_consumed_run_from_quiescing() {
    // Nothing can be consumed from, or committed for, a partition that never received a
    // record: with everything else consumed and committed the run has nothing left to do.
    let mut b = Simulation::builder();
    b.topic(TOPIC, 2).time_limit(secs(120));
    b.produce(InputRecord::new(TOPIC).partition(0).payload("x"));
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
            commit_after_each(&consumer, &ctx.effect_sink("e")).await
        })
        .unwrap();
    show(&outcome);
    assert_eq!(outcome.history().effect_counts("e").len(), 1);
    assert!(
        outcome.history().quiesced(),
        "ended with {:?}",
        outcome.history().end()
    );
}

/// What librdkafka itself says when a consumer is created from `pairs` (no broker needed: it
/// refuses bad configurations before connecting).
fn librdkafka_consumer_error(pairs: &[(&str, &str)]) -> Option<KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", "127.0.0.1:9")
        .set("log_level", "0");
    for (k, v) in pairs {
        c.set(*k, *v);
    }
    c.create::<rdkafka::consumer::BaseConsumer>().err()
}

/// What the simulator says when an instance creates a consumer and a producer from `pairs`.
fn simulator_errors(
    pairs: Vec<(&'static str, &'static str)>,
) -> (Option<KafkaError>, Option<KafkaError>) {
    let consumer_error = Arc::new(std::sync::Mutex::new(None));
    let producer_error = Arc::new(std::sync::Mutex::new(None));
    {
        let (ce, pe) = (consumer_error.clone(), producer_error.clone());
        builder(1, 0)
            .build()
            .unwrap()
            .run(move |ctx| {
                let mut config = ClientConfig::new();
                for (k, v) in &pairs {
                    config.set(*k, *v);
                }
                *ce.lock().unwrap() = ctx.create_consumer(&config).err();
                *pe.lock().unwrap() = ctx.create_producer(&config).err();
                async {}
            })
            .unwrap();
    }
    let c = consumer_error.lock().unwrap().take();
    let p = producer_error.lock().unwrap().take();
    (c, p)
}

const REFUSED_BY_LIBRDKAFKA: [&[(&str, &str)]; 5] = [
    &[("group.id", "g"), ("enable.auto.commit", "yes please")],
    &[("group.id", "g"), ("session.timeout.ms", "0")],
    &[("group.id", "g"), ("auto.offset.reset", "bogus")],
    &[
        ("group.id", "g"),
        ("partition.assignment.strategy", "bogus"),
    ],
    &[
        ("group.id", "g"),
        ("session.timeout.ms", "60000"),
        ("max.poll.interval.ms", "10000"),
    ],
];

#[test]
fn consumer_configs_librdkafka_refuses_are_refused_by_the_simulator_too() {
    for pairs in REFUSED_BY_LIBRDKAFKA {
        let real = librdkafka_consumer_error(pairs);
        assert!(real.is_some(), "librdkafka refuses {pairs:?}");
        let (sim, _) = simulator_errors(pairs.to_vec());
        assert!(
            matches!(
                sim,
                Some(KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..))
            ),
            "{pairs:?}: librdkafka says {real:?}, the simulator {sim:?}"
        );
    }
}

#[test]
fn invalid_property_values_are_client_config_errors_as_in_rdkafka() {
    for pairs in REFUSED_BY_LIBRDKAFKA {
        let real = librdkafka_consumer_error(pairs).expect("refused");
        let (sim, _) = simulator_errors(pairs.to_vec());
        let sim = sim.expect("refused");
        assert_eq!(
            std::mem::discriminant(&sim),
            std::mem::discriminant(&real),
            "{pairs:?}: librdkafka says {real:?}, the simulator {sim:?}"
        );
    }
}

#[test]
fn a_misspelt_configuration_property_is_refused_as_librdkafka_refuses_it() {
    // `enable.auto.comit`: librdkafka says "No such configuration property"; silently ignoring
    // it leaves auto-commit on in the simulation while production would not even start.
    let pairs = vec![("group.id", "g"), ("enable.auto.comit", "false")];
    let real = librdkafka_consumer_error(&pairs);
    assert!(
        matches!(real, Some(KafkaError::ClientConfig(..))),
        "{real:?}"
    );
    let (consumer, producer) = simulator_errors(pairs);
    assert!(consumer.is_some(), "the simulator created the consumer");
    assert!(producer.is_some(), "the simulator created the producer");
}
