//! A freeze is a process freeze (SIGSTOP): nothing of the instance runs until the thaw (its
//! task, the tasks it spawned through the kit, its timers, effect calls, commits, sends), and
//! then its expired timers fire as after SIGCONT. Its cost in virtual time does not grow with
//! its length.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use effectively_once::history::HistoryEvent;
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultKind, FaultSchedule, InstanceContext, KafkaConsumer,
    KafkaProducer, Operation, Simulation, Verifier, check_effectively_once,
};
use rdkafka::consumer::CommitMode;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use tokio::time::{Instant, MissedTickBehavior};

use crate::support::*;

const FREEZE: Duration = Duration::from_secs(25 * 3600);

/// The moments (since the instance started) at which a timer ticked.
#[derive(Clone, Default)]
struct Ticks(Arc<Mutex<Vec<Duration>>>);

impl Ticks {
    fn push(&self, at: Duration) {
        self.0.lock().unwrap().push(at);
    }

    fn within(&self, from: Duration, to: Duration) -> Vec<Duration> {
        let ticks = self.0.lock().unwrap();
        ticks
            .iter()
            .copied()
            .filter(|t| *t > from && *t < to)
            .collect()
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn interval_100ms() -> tokio::time::Interval {
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    interval
}

#[test]
fn nothing_of_a_frozen_process_runs_until_it_thaws() {
    // The freeze fires on the recv of offset 1. The instance's own loop has a 100 ms linger
    // timer, a task it spawned through the kit ticks every 100 ms and commits every second,
    // and a plain spawned task attempts an effect every second.
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1)
        .time_limit(FREEZE + Duration::from_secs(3600))
        .faults(FaultSchedule::new().with(
            Anchor::on(Operation::Recv).record(0, 1),
            Fault::Freeze(FREEZE),
        ));
    for n in 0..3 {
        b.produce(
            effectively_once::InputRecord::new(TOPIC)
                .partition(0)
                .payload(format!("p0-{n}")),
        );
    }
    let (root_ticks, task_ticks) = (Ticks::default(), Ticks::default());
    let loops = Arc::new(AtomicUsize::new(0));
    let (r, t, l) = (root_ticks.clone(), task_ticks.clone(), loops.clone());
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let (root_ticks, task_ticks, loops) = (r.clone(), t.clone(), l.clone());
            async move {
                let start = Instant::now();
                let consumer = Arc::new(ctx.create_consumer(&manual_commit(GROUP))?);
                consumer.subscribe(&[TOPIC])?;
                let ticker = {
                    let consumer = consumer.clone();
                    ctx.spawn(async move {
                        let mut interval = interval_100ms();
                        for n in 0u32.. {
                            interval.tick().await;
                            task_ticks.push(start.elapsed());
                            if n % 10 == 0 {
                                let _ = consumer.commit_consumer_state(CommitMode::Sync);
                            }
                        }
                    })
                };
                let background = ctx.effect_sink("bg");
                let plain = tokio::spawn(async move {
                    for n in 0..5 {
                        tokio::time::sleep(secs(1)).await;
                        background
                            .perform(&format!("bg-{n}"))
                            .await
                            .expect("effect");
                    }
                });
                let sink = ctx.effect_sink("e");
                let mut linger = interval_100ms();
                let mut seen = BTreeSet::new();
                while seen.len() < 3 {
                    loops.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        biased;
                        _ = linger.tick() => root_ticks.push(start.elapsed()),
                        m = consumer.recv() => {
                            // The freeze outlasts the session: the partition is lost and its
                            // records come again after the rejoin.
                            let Ok(m) = m else { continue };
                            sink.perform(&payload(&m)).await?;
                            let _ = consumer.store_offset_from_message(&m);
                            seen.insert(payload(&m));
                        }
                    }
                }
                plain.await?;
                tokio::time::sleep(secs(2)).await;
                ticker.abort();
                Ok::<(), BoxError>(())
            }
        })
        .unwrap();
    show(&outcome);
    let fired = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::FaultInjected { .. })
    });
    assert_eq!(fired.len(), 1);
    let started = entries_where(&outcome, |e| matches!(e, HistoryEvent::InstanceStarted))[0].at;
    let frozen_at = fired[0].at;
    let thaw = frozen_at + FREEZE;
    let (from, to) = (frozen_at - started, thaw - started);
    // No tick inside the freeze; at most one at the thaw (the interval skips missed ticks).
    for (name, ticks) in [("root", &root_ticks), ("kit task", &task_ticks)] {
        let inside = ticks.within(from, to);
        assert!(
            inside.is_empty(),
            "{} {name} ticks during the freeze, the first at {:?}",
            inside.len(),
            inside.first()
        );
    }
    assert!(root_ticks.len() < 200, "{} root ticks", root_ticks.len());
    assert!(task_ticks.len() < 200, "{} task ticks", task_ticks.len());
    assert!(loops.load(Ordering::Relaxed) < 200);
    // Nothing the instance did lands inside the freeze: not the plain task's effects, not the
    // kit task's commits.
    let inside: Vec<String> = outcome
        .history()
        .entries()
        .iter()
        .filter(|e| e.at > frozen_at && e.at < thaw)
        .filter(|e| {
            matches!(
                e.event,
                HistoryEvent::Effect { .. }
                    | HistoryEvent::OffsetsCommitted { .. }
                    | HistoryEvent::OffsetStored { .. }
                    | HistoryEvent::Delivered { .. }
            )
        })
        .map(|e| format!("{:?} {}", e.at, e.event))
        .collect();
    assert_eq!(inside, Vec::<String>::new());
    let effects = outcome.history().effect_counts("bg");
    assert_eq!(effects.len(), 5, "{effects:?}");
    let bg_after_thaw = entries_where(
        &outcome,
        |e| matches!(e, HistoryEvent::Effect { sink, .. } if sink == "bg"),
    )
    .iter()
    .filter(|e| e.at >= thaw)
    .count();
    assert_eq!(
        bg_after_thaw, 5,
        "the plain task's effects wait for the thaw"
    );
    assert!(
        entries_where(&outcome, |e| matches!(
            e,
            HistoryEvent::OffsetsCommitted { .. }
        ))
        .iter()
        .any(|e| e.at >= thaw),
        "the kit task commits again after the thaw"
    );
    assert_eq!(outcome.history().effect_counts("e").len(), 3);
}

#[test]
fn a_freeze_on_an_effect_holds_the_effect_until_the_thaw() {
    // The process freezes at the effect call, before it proceeds: the effect takes place
    // after the thaw, and nothing else of the instance happens in between.
    let mut b = builder(1, 2);
    b.time_limit(FREEZE * 2).faults(FaultSchedule::new().with(
        Anchor::on(Operation::Effect).record(0, 0),
        Fault::Freeze(FREEZE),
    ));
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
            let sink = ctx.effect_sink("e");
            commit_after_each(&consumer, &sink).await
        })
        .unwrap();
    show(&outcome);
    let frozen_at = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::FaultInjected { .. })
    })[0]
        .at;
    let effects = entries_where(&outcome, |e| matches!(e, HistoryEvent::Effect { .. }));
    assert!(effects[0].at >= frozen_at + FREEZE, "{:?}", effects[0].at);
    assert_eq!(outcome.history().effect_counts("e").len(), 2);
}

#[test]
fn a_freeze_on_a_send_holds_the_record_until_the_thaw() {
    let mut b = builder(1, 0);
    b.topic("out", 1)
        .time_limit(FREEZE * 2)
        .faults(FaultSchedule::new().with(
            Anchor::on(Operation::Send).occurrence(1),
            Fault::Freeze(FREEZE),
        ));
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let producer = ctx.create_producer(&producer_config(&[]))?;
            let record = FutureRecord::<(), str>::to("out").payload("x");
            producer
                .send(record, Timeout::Never)
                .await
                .map_err(|(e, _)| e)?;
            Ok::<(), BoxError>(())
        })
        .unwrap();
    show(&outcome);
    let frozen_at = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::FaultInjected { .. })
    })[0]
        .at;
    let produced = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::RecordProduced { .. })
    });
    assert_eq!(produced.len(), 1);
    assert!(produced[0].at >= frozen_at + FREEZE, "{:?}", produced[0].at);
}

/// A batch loop with a 100 ms linger timer that stores each processed record's offset and
/// commits them at each flush; idempotent effects, so correct under effectively-once.
async fn linger_batch_service(ctx: InstanceContext) -> Result<(), BoxError> {
    let mut config = manual_commit(GROUP);
    config.set("enable.auto.offset.store", "false");
    let consumer = ctx.create_consumer(&config)?;
    consumer.subscribe(&[TOPIC])?;
    let sink = ctx.effect_sink("e");
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                for m in batch.drain(..) {
                    let event: serde_json::Value = serde_json::from_slice(
                        rdkafka::message::Message::payload(&m).unwrap_or_default(),
                    )?;
                    let id = event["event_id"].as_str().ok_or("no event id")?.to_string();
                    sink.perform_idempotent(&id, &id).await?;
                    let _ = consumer.store_offset_from_message(&m);
                }
                let _ = consumer.commit_consumer_state(CommitMode::Sync);
            }
            m = consumer.recv() => {
                if let Ok(m) = m {
                    batch.push(m);
                }
            }
        }
    }
}

#[test]
fn a_linger_batch_consumer_passes_25_hour_freezes_without_spinning() {
    // Before freezes stopped the whole process, the 100 ms timer spun ~900k times through
    // each 25 h freeze, and the check took its wall time for a blocked thread.
    let mut v = Verifier::default();
    v.topic(TOPIC)
        .effect_sink("e")
        .faults(&[FaultKind::LongPause])
        .max_faults(1)
        .cases(16)
        .case_timeout(Duration::from_secs(10))
        .persist_failures(false);
    let started = std::time::Instant::now();
    let passed = check_effectively_once(&v, linger_batch_service);
    assert!(passed.is_ok(), "{}", passed.unwrap_err());
    assert!(started.elapsed() < Duration::from_secs(60));
}
