//! seek, pause, resume and committed_offsets on the simulator: the cases of
//! `seek_pause_cases.rs`, each seen as librdkafka's mock cluster showed it
//! (`tests/brokers/seek_pause.rs` runs the same cases there); then what the kit adds: a seek
//! is an interception point, and a partition paused for good is a liveness failure, not a hang.

use std::time::Duration;

use effectively_once::history::HistoryEvent;
use effectively_once::{Anchor, ConsumerHandle, Fault, FaultSchedule, KafkaConsumer, Operation};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::seek_pause_cases::{self as cases, BoxError, consumer_config, run, simulation};

#[test]
fn a_seek_back_delivers_the_records_after_it_again_not_the_prefetched_ones() {
    assert_eq!(run(&simulation(1, 6), None, cases::rewind), cases::REWIND);
}

#[test]
fn a_seek_ahead_skips_the_records_in_between() {
    assert_eq!(run(&simulation(1, 6), None, cases::skip), cases::SKIP);
}

#[test]
fn seeks_to_logical_offsets_resolve_against_the_log() {
    assert_eq!(run(&simulation(1, 6), None, cases::logical), cases::LOGICAL);
}

#[test]
fn a_seek_beyond_the_end_applies_auto_offset_reset() {
    for reset in ["earliest", "latest", "error"] {
        assert_eq!(
            run(&simulation(1, 6), None, cases::beyond_end(reset)),
            cases::beyond_end_expected(reset),
            "auto.offset.reset={reset}"
        );
    }
}

#[test]
fn a_seek_of_a_partition_not_assigned_fails() {
    assert_eq!(
        run(&simulation(1, 6), None, cases::not_assigned),
        cases::NOT_ASSIGNED
    );
}

#[test]
fn a_seek_leaves_the_stored_offset_where_it_was() {
    assert_eq!(
        run(&simulation(1, 6), None, cases::stored_offset),
        cases::STORED_OFFSET
    );
}

#[test]
fn a_paused_partition_hands_out_nothing_until_resumed() {
    assert_eq!(
        run(&simulation(2, 4), None, cases::pause_resume),
        cases::PAUSE_RESUME
    );
}

#[test]
fn a_paused_partition_stays_paused_across_an_eager_rebalance() {
    assert_eq!(
        run(&simulation(1, 4), None, cases::pause_across_rebalance),
        cases::PAUSE_ACROSS_REBALANCE
    );
}

#[test]
fn committed_offsets_answers_for_partitions_not_assigned() {
    assert_eq!(
        run(&simulation(2, 4), None, cases::committed_unassigned),
        cases::COMMITTED_UNASSIGNED
    );
}

/// A consumer that seeks back after every third record, forever rereading: the seek is an
/// interception point, and a crash before it takes the instance down before the position
/// moved.
#[test]
fn a_crash_before_a_seek_fires_at_the_seek() {
    let mut b = effectively_once::Simulation::builder();
    b.topic("t", 1)
        .time_limit(Duration::from_secs(60))
        .faults(FaultSchedule::new().with(Anchor::on(Operation::Seek), Fault::CrashBefore));
    for n in 0..4 {
        b.produce(effectively_once::InputRecord::new("t").payload(format!("e{n}")));
    }
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&consumer_config("g"))?;
            consumer.subscribe(&["t"])?;
            let m = consumer.recv().await?;
            consumer.seek(
                "t",
                0,
                Offset::Offset(m.offset()),
                Duration::from_secs(1).into(),
            )?;
            Ok::<(), BoxError>(())
        })
        .unwrap();
    println!("{}", outcome.history());
    let events: Vec<String> = outcome
        .history()
        .entries()
        .iter()
        .map(|e| e.event.to_string())
        .collect();
    let crash = events
        .iter()
        .position(|e| e == "CRASHED (fault: crash before seek)")
        .expect("the crash fired");
    assert_eq!(events[crash - 1], "FAULT: crash before the seek of t[0]@0");
    // The restarted instance's seek goes through and is recorded.
    assert!(
        events[crash..].iter().any(|e| e == "seek t[0] to 0"),
        "{events:#?}"
    );
}

/// A consumer that pauses its partition and never resumes it: the run does not hang, it
/// reaches its time limit with the partition's records unconsumed, and the timeline shows
/// the pause.
#[test]
fn a_partition_paused_for_good_ends_the_run_at_its_time_limit_with_the_lag() {
    let started = std::time::Instant::now();
    let outcome = simulation(1, 3)
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&consumer_config("g"))?;
            consumer.subscribe(&["t"])?;
            consumer.recv().await?;
            let mut l = TopicPartitionList::new();
            l.add_partition("t", 0);
            consumer.pause(&l)?;
            loop {
                consumer.recv().await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), BoxError>(())
        })
        .unwrap();
    println!("{}", outcome.history());
    assert!(started.elapsed() < Duration::from_secs(5));
    let events: Vec<&HistoryEvent> = outcome.history().events().collect();
    assert!(
        events.iter().any(|e| e.to_string() == "paused t[0]"),
        "{events:#?}"
    );
    assert!(
        matches!(events.last(), Some(HistoryEvent::TimeLimitReached { lag }) if lag.iter().any(|l| l.committed.is_none() && l.end == 3)),
        "{events:#?}"
    );
}
