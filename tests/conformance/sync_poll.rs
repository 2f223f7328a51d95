//! A synchronous consumer (rdkafka's `BaseConsumer`: `poll(timeout)` in a plain thread) run
//! with `InstanceContext::run_blocking`: its thread and the run take turns, so its polls wait
//! in virtual time, its crashes are the instance's, and a seed replays it byte for byte.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant as WallInstant};

use effectively_once::clients::{BlockingContext, KafkaBaseConsumer};
use effectively_once::history::HistoryEvent;
use effectively_once::{Anchor, ConsumerHandle, Fault, FaultSchedule, Operation};
use rdkafka::consumer::CommitMode;
use tokio::time::Instant;

use crate::support::*;

/// A poll loop: each record's effect (named after its payload), then its commit.
fn poll_loop(ctx: BlockingContext) -> Result<(), BoxError> {
    let consumer = ctx.create_base_consumer(&manual_commit(GROUP))?;
    let sink = ctx.effect_sink("email");
    consumer.subscribe(&[TOPIC])?;
    loop {
        let message = match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(message) => message?,
        };
        ctx.block_on(sink.perform(&payload(&message)))?;
        consumer.commit_message(&message, CommitMode::Sync)?;
    }
}

/// Three records on one partition, under `faults`.
fn three_records(faults: FaultSchedule) -> effectively_once::SimulationBuilder {
    let mut b = builder(1, 3);
    b.faults(faults);
    b
}

#[test]
fn a_sync_poll_loop_processes_each_record_once_and_quiesces() {
    let wall = WallInstant::now();
    let outcome = three_records(FaultSchedule::new())
        .build()
        .unwrap()
        .run(|ctx| ctx.run_blocking(poll_loop))
        .unwrap();
    show(&outcome);
    assert!(outcome.history().quiesced());
    let counts = outcome.history().effect_counts("email");
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        [("p0-0".into(), 1), ("p0-1".into(), 1), ("p0-2".into(), 1)]
    );
    assert!(wall.elapsed() < WALL_BOUND, "took {:?}", wall.elapsed());
}

#[test]
fn a_crash_before_the_commit_redelivers_the_record_to_the_restarted_thread() {
    let crash = Anchor::on(Operation::CommitMessage).record(0, 1);
    let outcome = three_records(FaultSchedule::new().with(crash, Fault::CrashBefore))
        .build()
        .unwrap()
        .run(|ctx| ctx.run_blocking(poll_loop))
        .unwrap();
    show(&outcome);
    let history = outcome.history().to_string();
    assert!(
        history.contains("i0#1     CRASHED (fault: crash before commit_message)"),
        "{history}"
    );
    assert!(history.contains("i0#2     started"), "{history}");
    let counts = outcome.history().effect_counts("email");
    assert_eq!(counts["p0-0"], 1, "{history}");
    assert_eq!(counts["p0-1"], 2, "redelivered after the crash:\n{history}");
    assert_eq!(counts["p0-2"], 1, "{history}");
    assert!(outcome.history().quiesced());
}

#[test]
fn a_sync_poll_loop_that_commits_after_processing_loses_nothing_whatever_the_crash() {
    let operations = [Operation::Recv, Operation::Effect, Operation::CommitMessage];
    for operation in operations {
        for offset in 0..3 {
            for fault in [Fault::CrashBefore, Fault::CrashAfter] {
                let anchor = Anchor::on(operation).record(0, offset);
                let outcome = three_records(FaultSchedule::new().with(anchor, fault))
                    .build()
                    .unwrap()
                    .run(|ctx| ctx.run_blocking(poll_loop))
                    .unwrap();
                let history = outcome.history();
                let counts = history.effect_counts("email");
                let crashed = history
                    .entries()
                    .iter()
                    .any(|e| matches!(e.event, HistoryEvent::InstanceCrashed { .. }));
                assert!(crashed, "{fault:?} on {operation:?}@{offset}:\n{history}");
                for n in 0..3 {
                    assert!(
                        counts.get(&format!("p0-{n}")).is_some_and(|c| *c >= 1),
                        "p0-{n} lost after {fault:?} on {operation:?}@{offset}:\n{history}"
                    );
                }
                assert!(history.quiesced(), "{history}");
            }
        }
    }
}

#[test]
fn a_poll_with_nothing_ready_returns_none_after_its_timeout_in_virtual_time() {
    let waited = Arc::new(std::sync::Mutex::new(Vec::new()));
    let wall = WallInstant::now();
    let outcome = {
        let waited = waited.clone();
        let mut b = builder(1, 0);
        b.settle(Duration::from_secs(2 * 3600))
            .time_limit(Duration::from_secs(3 * 3600));
        b.build()
            .unwrap()
            .run(move |ctx| {
                let waited = waited.clone();
                ctx.run_blocking(move |ctx| -> Result<(), BoxError> {
                    let consumer = ctx.create_base_consumer(&manual_commit(GROUP))?;
                    consumer.subscribe(&[TOPIC])?;
                    for timeout in [Duration::from_secs(3600), Duration::from_millis(250)] {
                        let start = ctx.block_on(async { Instant::now() });
                        let polled = consumer.poll(timeout);
                        let end = ctx.block_on(async { Instant::now() });
                        assert!(polled.is_none(), "{polled:?}");
                        waited.lock().unwrap().push(end - start);
                    }
                    Ok(())
                })
            })
            .unwrap()
    };
    show(&outcome);
    assert_eq!(
        *waited.lock().unwrap(),
        [Duration::from_secs(3600), Duration::from_millis(250)]
    );
    assert!(wall.elapsed() < WALL_BOUND, "took {:?}", wall.elapsed());
    let exited = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::InstanceExited { error: None })
    });
    assert_eq!(exited.len(), 1, "{}", outcome.history());
}

#[test]
fn the_same_seed_gives_the_same_history_byte_for_byte() {
    let run = || {
        let mut b = builder(2, 4);
        b.instances(2).seed(7).faults(FaultSchedule::new().with(
            Anchor::on(Operation::Effect).record(1, 2),
            Fault::CrashAfter,
        ));
        b.build()
            .unwrap()
            .run(|ctx| ctx.run_blocking(poll_loop))
            .unwrap()
            .history()
            .to_string()
    };
    let first = run();
    println!("{first}");
    assert!(
        first.contains("CRASHED (fault: crash after effect email(p1-2))"),
        "{first}"
    );
    for _ in 0..3 {
        assert_eq!(run(), first);
    }
}

#[test]
fn a_panic_on_the_thread_is_the_consumers_panic_and_an_error_its_exit() {
    let outcome = builder(1, 1)
        .max_restarts(0)
        .build()
        .unwrap()
        .run(|ctx| {
            ctx.run_blocking(|ctx| -> Result<(), BoxError> {
                let consumer = ctx.create_base_consumer(&manual_commit(GROUP))?;
                consumer.subscribe(&[TOPIC])?;
                let _ = consumer.poll(Duration::from_secs(10));
                panic!("the thread gave up");
            })
        })
        .unwrap();
    let history = outcome.history().to_string();
    assert!(
        history.contains("PANICKED: the thread gave up"),
        "{history}"
    );
    let outcome = builder(1, 1)
        .max_restarts(0)
        .build()
        .unwrap()
        .run(|ctx| ctx.run_blocking(|_| Err::<(), _>("no database")))
        .unwrap();
    let history = outcome.history().to_string();
    assert!(
        history.contains("exited with error: no database"),
        "{history}"
    );
}

#[test]
fn a_crashed_thread_unwinds_its_destructors_and_is_gone_before_the_restart() {
    // Counts the program's live frames: each incarnation's is dropped when it crashes.
    struct Frame(Arc<AtomicUsize>);
    impl Drop for Frame {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let live = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let crash = Anchor::on(Operation::Effect).record(0, 1);
    let outcome = {
        let (live, most) = (live.clone(), most.clone());
        three_records(FaultSchedule::new().with(crash, Fault::CrashAfter))
            .build()
            .unwrap()
            .run(move |ctx| {
                let (live, most) = (live.clone(), most.clone());
                ctx.run_blocking(move |ctx| {
                    let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let _frame = Frame(live);
                    poll_loop(ctx)
                })
            })
            .unwrap()
    };
    show(&outcome);
    assert_eq!(most.load(Ordering::SeqCst), 1, "never two threads at once");
    assert_eq!(live.load(Ordering::SeqCst), 0, "every thread unwound");
}

#[test]
fn a_frozen_instance_makes_no_call_until_it_thaws() {
    let freeze = Duration::from_secs(3600);
    let anchor = Anchor::on(Operation::Effect).record(0, 0);
    let mut b = three_records(FaultSchedule::new().with(anchor, Fault::Freeze(freeze)));
    b.time_limit(Duration::from_secs(3 * 3600));
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| ctx.run_blocking(poll_loop))
        .unwrap();
    show(&outcome);
    let faulted = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::FaultInjected { .. })
    });
    let commits = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::OffsetsCommitted { .. })
    });
    assert_eq!(faulted.len(), 1);
    assert_eq!(commits.len(), 3, "{}", outcome.history());
    assert!(
        commits[0].at >= faulted[0].at + freeze,
        "the commit after the frozen effect came before the thaw:\n{}",
        outcome.history()
    );
}

#[test]
fn iter_hands_out_the_records_in_offset_order() {
    let outcome = three_records(FaultSchedule::new())
        .build()
        .unwrap()
        .run(|ctx| {
            ctx.run_blocking(|ctx| -> Result<(), BoxError> {
                let consumer = ctx.create_base_consumer(&manual_commit(GROUP))?;
                let sink = ctx.effect_sink("email");
                consumer.subscribe(&[TOPIC])?;
                for message in consumer.iter() {
                    let message = message?;
                    ctx.block_on(sink.perform(&payload(&message)))?;
                    consumer.commit_message(&message, CommitMode::Sync)?;
                }
                Ok(())
            })
        })
        .unwrap();
    let effects: Vec<String> = outcome
        .history()
        .effect_counts("email")
        .into_keys()
        .collect();
    assert_eq!(effects, ["p0-0", "p0-1", "p0-2"]);
    assert!(outcome.history().quiesced());
}

#[test]
fn a_poll_loop_through_an_hour_of_quiet_takes_little_wall_time() {
    let wall = WallInstant::now();
    // The only record comes after an hour: the loop polls empty until then.
    let mut b = builder(1, 0);
    b.time_limit(Duration::from_secs(2 * 3600)).produce_at(
        Duration::from_secs(3600),
        effectively_once::InputRecord::new(TOPIC).payload("late"),
    );
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| ctx.run_blocking(poll_loop))
        .unwrap();
    let took = wall.elapsed();
    println!("36,000 empty polls took {took:?}");
    assert_eq!(outcome.history().effect_counts("email")["late"], 1);
    assert!(outcome.history().quiesced());
    // Sleeping for real would take the hour; the loop's 36,000 turns take about 2 s in a debug
    // build on an idle machine and more than 5 s at load 10 to 16 (where the shared 5 s bound
    // failed once): a minute leaves room for a loaded machine and still rules out real time.
    assert!(took < Duration::from_secs(60), "took {took:?}");
}
