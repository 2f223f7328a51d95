//! Instances: tokio (spawn, channels, select, timeout) inside consumers; crashes that stop an
//! instance and its spawned tasks; panics, errors and clean exits, and which of them restart
//! the instance, up to `max_restarts`.

use std::sync::Arc;
use std::time::Duration;

use effectively_once::history::{HistoryEvent, Incarnation, InstanceId};
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, KafkaConsumer, Operation, Simulation,
};
use rdkafka::consumer::CommitMode;

use crate::support::*;

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
