//! The seeds' three consumer loops driven through hand-chosen crash windows by the
//! interception mechanism; each recorded outcome is the one the seeds predict.

use std::time::Duration;

use crate::fixtures::notification::{self, BoxError, EMAIL, TOPIC};
use crate::fixtures::{auto_commit, commit_after, commit_before};
use effectively_once::history::{CommitKind, HistoryEvent};
use effectively_once::{
    Anchor, Fault, FaultSchedule, InstanceContext, Operation, Outcome, Simulation,
};

const EVENTS: usize = 5;

#[derive(Clone, Copy)]
enum Loop {
    AutoCommit,
    CommitBefore,
    CommitAfter,
}

async fn run_loop(which: Loop, ctx: InstanceContext) -> Result<(), BoxError> {
    let email = ctx.effect_sink(EMAIL);
    match which {
        Loop::AutoCommit => {
            auto_commit::run(&ctx.create_consumer(&auto_commit::config())?, &email).await
        }
        Loop::CommitBefore => {
            commit_before::run(&ctx.create_consumer(&commit_before::config())?, &email).await
        }
        Loop::CommitAfter => {
            commit_after::run(&ctx.create_consumer(&commit_after::config())?, &email).await
        }
    }
}

/// Runs one instance of `which` over five events on one partition through `faults`.
fn simulate(which: Loop, faults: FaultSchedule) -> Outcome {
    let mut builder = Simulation::builder();
    builder.topic(TOPIC, 1).faults(faults);
    for record in notification::events(EVENTS) {
        builder.produce(record);
    }
    let outcome = builder
        .build()
        .expect("valid simulation")
        .run(move |ctx| run_loop(which, ctx))
        .expect("run completes");
    println!("{}", outcome.history());
    assert!(
        outcome.unfired_faults().is_empty(),
        "faults that never fired: {:?}",
        outcome.unfired_faults()
    );
    assert!(
        outcome.history().quiesced(),
        "the run consumed and committed everything"
    );
    outcome
}

fn crashes(outcome: &Outcome) -> usize {
    outcome
        .history()
        .events()
        .filter(|e| matches!(e, HistoryEvent::InstanceCrashed { .. }))
        .count()
}

fn assert_each_once_except(outcome: &Outcome, except: &str) {
    let emails = outcome.history().effect_counts(EMAIL);
    for n in 0..EVENTS {
        let id = format!("evt-{n}");
        if id != except {
            assert_eq!(emails.get(&id), Some(&1), "{id} emailed exactly once");
        }
    }
}

#[test]
fn without_faults_every_loop_emails_each_event_once() {
    for which in [Loop::AutoCommit, Loop::CommitBefore, Loop::CommitAfter] {
        let outcome = simulate(which, FaultSchedule::new());
        assert_each_once_except(&outcome, "");
        assert_eq!(
            outcome
                .cluster()
                .committed_offset(notification::GROUP, TOPIC, 0),
            Some(EVENTS as i64)
        );
    }
}

#[test]
fn commit_before_processing_loses_the_event_when_crashing_after_the_commit() {
    let faults = FaultSchedule::new().with(
        Anchor::on(Operation::CommitMessage).record(0, 2),
        Fault::CrashAfter,
    );
    let outcome = simulate(Loop::CommitBefore, faults);
    assert_eq!(crashes(&outcome), 1);
    assert_eq!(
        outcome.history().effect_counts(EMAIL).get("evt-2"),
        None,
        "evt-2 was committed, then lost"
    );
    assert_each_once_except(&outcome, "evt-2");
}

#[test]
fn commit_after_processing_emails_twice_when_crashing_before_the_commit() {
    let faults = FaultSchedule::new().with(
        Anchor::on(Operation::CommitMessage).record(0, 2),
        Fault::CrashBefore,
    );
    let outcome = simulate(Loop::CommitAfter, faults);
    assert_eq!(crashes(&outcome), 1);
    assert_eq!(
        outcome.history().effect_counts(EMAIL).get("evt-2"),
        Some(&2),
        "evt-2 was redelivered"
    );
    assert_each_once_except(&outcome, "evt-2");
}

#[test]
fn auto_commit_loses_the_in_flight_event_when_the_commit_fired_before_the_crash() {
    // The email for evt-2 takes 1.5s; the auto-commit (every 1s) fires meanwhile and commits
    // the offset stored when evt-2 was handed out; then the instance crashes.
    let faults = FaultSchedule::new()
        .with(
            Anchor::on(Operation::Effect).record(0, 2),
            Fault::Stall(Duration::from_millis(1500)),
        )
        .with(
            Anchor::on(Operation::AutoCommit).record(0, 2),
            Fault::CrashAfter,
        );
    let outcome = simulate(Loop::AutoCommit, faults);
    assert_eq!(crashes(&outcome), 1);
    let auto_commit_of_in_flight = outcome.history().events().any(|e| {
        matches!(e, HistoryEvent::OffsetsCommitted { kind: CommitKind::Auto, offsets, .. } if offsets.iter().any(|(_, o)| *o == 3))
    });
    assert!(
        auto_commit_of_in_flight,
        "the auto-commit covered evt-2 before it was processed"
    );
    assert_eq!(
        outcome.history().effect_counts(EMAIL).get("evt-2"),
        None,
        "evt-2 was lost"
    );
    assert_each_once_except(&outcome, "evt-2");
}

#[test]
fn auto_commit_redelivers_everything_since_the_last_commit_when_the_crash_came_first() {
    // A crash before any auto-commit covered the processed events: nothing is lost, but every
    // event since the last commit (here: the start) is processed again.
    let faults = FaultSchedule::new().with(
        Anchor::on(Operation::Effect).record(0, 2),
        Fault::CrashBefore,
    );
    let outcome = simulate(Loop::AutoCommit, faults);
    assert_eq!(crashes(&outcome), 1);
    let emails = outcome.history().effect_counts(EMAIL);
    assert_eq!(
        (emails.get("evt-0"), emails.get("evt-1")),
        (Some(&2), Some(&2)),
        "processed before the crash, never committed"
    );
    for n in 2..EVENTS {
        assert_eq!(emails.get(&format!("evt-{n}")), Some(&1));
    }
}

#[test]
#[tracing_test::traced_test]
fn the_timeline_is_emitted_as_tracing_events() {
    let faults = FaultSchedule::new().with(
        Anchor::on(Operation::CommitMessage).record(0, 2),
        Fault::CrashBefore,
    );
    simulate(Loop::CommitAfter, faults);
    assert!(logs_contain("CRASHED (fault: crash before commit_message)"));
    assert!(logs_contain("i0#2     recv task-events[0]@2"));
}
