//! The seeds' consumers written in Python with confluent-kafka, run as processes against
//! librdkafka's mock cluster through the wire proxy and the effect service.
//!
//! They need a Python with confluent-kafka: `EFFECTIVELY_ONCE_PYTHON` names it (`ci/test.sh`
//! makes a virtualenv). Without it each test says it was skipped, unless
//! `EFFECTIVELY_ONCE_REQUIRE_PYTHON` is set (as in `ci/test.sh`), which makes it fail.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::mocking::MockCluster;

use super::tests::tempdir;
use super::*;
use crate::history::{EffectOutcome, Fault, InstanceId};

/// The Python to run the fixtures with, or `None` (the test is skipped, and says so).
pub(crate) fn python() -> Option<String> {
    match std::env::var("EFFECTIVELY_ONCE_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("EFFECTIVELY_ONCE_REQUIRE_PYTHON").is_some() => {
            panic!("EFFECTIVELY_ONCE_REQUIRE_PYTHON is set but EFFECTIVELY_ONCE_PYTHON is not")
        }
        _ => {
            println!(
                "SKIPPED: set EFFECTIVELY_ONCE_PYTHON to a python with confluent-kafka \
                 (ci/test.sh does)"
            );
            None
        }
    }
}

pub(crate) fn fixture(python: &str, script: &str) -> ConsumerCommand {
    let path = format!("{}/fixtures/python/{script}", env!("CARGO_MANIFEST_DIR"));
    ConsumerCommand::new(&[python, "-u", &path]).unwrap()
}

/// Task events `evt-0` ... in the Task API's format.
pub(crate) fn task_events(n: usize) -> Vec<InputEvent> {
    (0..n)
        .map(|i| InputEvent {
            event_id: format!("evt-{i}"),
            key: format!("project-{i}"),
            payload: format!(
                r#"{{"data":{{"email":"owner{i}@example.com","task_id":"task-{i}"}},"event_id":"evt-{i}","type":"task.created"}}"#
            )
            .into_bytes(),
        })
        .collect()
}

/// Runs `script` on a fresh mock cluster with 3 events.
pub(crate) fn run(
    python: &str,
    script: &str,
    effect_faults: EffectFaults,
    wire_faults: WireFaults,
) -> (tempdir::Dir, BlackBoxCase, BlackBoxOutcome) {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("task-events", 1, 1).unwrap();
    let dir = tempdir::Dir::new();
    let case = BlackBoxCase {
        environment: Vec::new(),
        outputs: Vec::new(),
        command: fixture(python, script),
        instances: 1,
        topic: "task-events".into(),
        group: "notification-service".into(),
        events: task_events(3),
        effect_faults,
        wire_faults,
        time_limit: Duration::from_secs(90),
        settle: Duration::from_millis(500),
        restart_after: Duration::from_millis(100),
        ledger: dir.path("ledger.db"),
    };
    let outcome = run_black_box(&case, &mock.bootstrap_servers()).unwrap();
    (dir, case, outcome)
}

/// How many times each event's email took effect.
fn effective(outcome: &BlackBoxOutcome) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in &outcome.attempts {
        if a.outcome.took_effect() {
            *counts.entry(a.event_id.clone()).or_insert(0) += 1;
        }
    }
    counts
}

pub(crate) fn explain(outcome: &BlackBoxOutcome) -> String {
    let mut text = format!("ending {:?}\n", outcome.ending);
    for a in &outcome.attempts {
        text.push_str(&format!("{a}\n"));
    }
    for l in &outcome.lives {
        text.push_str(&format!("{} {:?}:\n{}\n", l.incarnation, l.ended, l.output));
    }
    text.push_str(&format!("problems {:?}\n", outcome.problems));
    text
}

fn once_each(n: usize) -> BTreeMap<String, usize> {
    (0..n).map(|i| (format!("evt-{i}"), 1)).collect()
}

#[test]
fn commit_after_processing_sends_each_email_once_without_faults() {
    let Some(python) = python() else { return };
    let (_dir, _, outcome) = run(
        &python,
        "commit_after.py",
        EffectFaults::new(),
        WireFaults::new(),
    );
    assert_eq!(outcome.ending, Ending::CaughtUp, "{}", explain(&outcome));
    assert_eq!(effective(&outcome), once_each(3), "{}", explain(&outcome));
    assert!(outcome.malformed.is_empty());
    assert!(outcome.problems.is_empty(), "{}", explain(&outcome));
}

#[test]
fn commit_after_processing_duplicates_an_email_when_killed_between_the_email_and_the_commit() {
    let Some(python) = python() else { return };
    let faults = [(("evt-1".to_string(), 1), Fault::CrashAfter)].into();
    let (_dir, _, outcome) = run(&python, "commit_after.py", faults, WireFaults::new());
    assert_eq!(outcome.ending, Ending::CaughtUp, "{}", explain(&outcome));
    let mut expected = once_each(3);
    expected.insert("evt-1".into(), 2);
    assert_eq!(effective(&outcome), expected, "{}", explain(&outcome));
    assert!(
        outcome.lives.iter().any(|l| l.incarnation.number == 2),
        "restarted after the kill: {}",
        explain(&outcome)
    );
}

#[test]
fn the_event_id_as_idempotency_key_sends_each_email_once_through_the_same_kill() {
    let Some(python) = python() else { return };
    let faults = [(("evt-1".to_string(), 1), Fault::CrashAfter)].into();
    let (_dir, _, outcome) = run(&python, "idempotency_key.py", faults, WireFaults::new());
    assert_eq!(outcome.ending, Ending::CaughtUp, "{}", explain(&outcome));
    assert_eq!(effective(&outcome), once_each(3), "{}", explain(&outcome));
    assert!(
        outcome
            .attempts
            .iter()
            .any(|a| a.event_id == "evt-1" && a.outcome == EffectOutcome::Deduplicated),
        "{}",
        explain(&outcome)
    );
}

#[test]
fn commit_before_processing_loses_an_email_when_killed_after_the_commit_answer() {
    let Some(python) = python() else { return };
    // The second commit is evt-1's: the instance dies as its answer arrives.
    let faults = [(("OffsetCommit".to_string(), 2), Fault::CrashAfter)].into();
    let (_dir, _, outcome) = run(&python, "commit_before.py", EffectFaults::new(), faults);
    assert_eq!(outcome.ending, Ending::CaughtUp, "{}", explain(&outcome));
    let mut expected = once_each(3);
    expected.remove("evt-1");
    assert_eq!(effective(&outcome), expected, "{}", explain(&outcome));
    assert!(outcome.wire.iter().any(|e| matches!(
        e,
        WireEvent::Fault { api, fault: Fault::CrashAfter, instance: InstanceId(1), .. }
            if api == "OffsetCommit"
    )));
}

/// The first commit's request and answer on the wire: (asked at, answered at, error code).
fn first_commit(outcome: &BlackBoxOutcome) -> Option<(Duration, Duration, i16)> {
    let asked = outcome.wire.iter().find_map(|e| match e {
        WireEvent::Request { at, api, .. } if api == "OffsetCommit" => Some(*at),
        _ => None,
    })?;
    outcome.wire.iter().find_map(|e| match e {
        WireEvent::Committed { at, error, .. } => Some((asked, *at, *error)),
        _ => None,
    })
}

#[test]
fn a_refused_commit_reaches_the_program_as_an_error_and_the_redelivery_emails_again() {
    let Some(python) = python() else { return };
    let faults = [(("OffsetCommit".to_string(), 1), Fault::Fail)].into();
    let (_dir, _, outcome) = run(&python, "commit_after.py", EffectFaults::new(), faults);
    assert_eq!(outcome.ending, Ending::CaughtUp, "{}", explain(&outcome));
    // The proxy answered for the broker: nothing was committed by that request.
    let (_, _, error) = first_commit(&outcome).expect("a commit");
    assert_eq!(error, 27, "REBALANCE_IN_PROGRESS: {}", explain(&outcome));
    // commit_after.py raises on it, is started again and emails evt-0 a second time.
    let first = &outcome.lives[0];
    assert!(
        first.output.contains("REBALANCE_IN_PROGRESS"),
        "{}",
        explain(&outcome)
    );
    let mut expected = once_each(3);
    expected.insert("evt-0".into(), 2);
    assert_eq!(effective(&outcome), expected, "{}", explain(&outcome));
}

#[test]
fn an_ambiguous_commit_is_applied_though_its_answer_is_lost_with_the_connection() {
    let Some(python) = python() else { return };
    let faults = [(("OffsetCommit".to_string(), 1), Fault::Ambiguous)].into();
    let (_dir, _, outcome) = run(&python, "commit_after.py", EffectFaults::new(), faults);
    assert_eq!(outcome.ending, Ending::CaughtUp, "{}", explain(&outcome));
    // The broker answered (error 0) before the proxy dropped the connection.
    let (_, _, error) = first_commit(&outcome).expect("a commit");
    assert_eq!(error, 0, "{}", explain(&outcome));
    assert!(outcome.wire.iter().any(|e| matches!(
        e,
        WireEvent::Fault { api, fault: Fault::Ambiguous, .. } if api == "OffsetCommit"
    )));
    // Applied: evt-0 is not delivered again, whatever the client made of the lost answer.
    assert_eq!(effective(&outcome), once_each(3), "{}", explain(&outcome));
}

#[test]
fn a_stalled_commit_is_held_before_it_is_forwarded() {
    let Some(python) = python() else { return };
    let stall = Duration::from_millis(1500);
    let faults = [(("OffsetCommit".to_string(), 1), Fault::Stall(stall))].into();
    let (_dir, _, outcome) = run(&python, "commit_after.py", EffectFaults::new(), faults);
    assert_eq!(outcome.ending, Ending::CaughtUp, "{}", explain(&outcome));
    let (asked, answered, error) = first_commit(&outcome).expect("a commit");
    assert_eq!(error, 0, "{}", explain(&outcome));
    assert!(answered - asked >= stall, "{asked:?} → {answered:?}");
    assert_eq!(effective(&outcome), once_each(3), "{}", explain(&outcome));
}

/// Offsets committed through transactions count as the group's progress: the run catches up
/// on them, and the history tells the transactions with what they wrote and committed.
#[test]
fn a_transactional_consumer_catches_up_through_its_transactions_offsets() {
    let Some(python) = python() else { return };
    let (_dir, case, outcome) = run(
        &python,
        "transactional_email.py",
        EffectFaults::new(),
        WireFaults::new(),
    );
    assert_eq!(outcome.ending, Ending::CaughtUp, "{}", explain(&outcome));
    assert_eq!(effective(&outcome), once_each(3), "{}", explain(&outcome));
    let produced = outcome
        .wire
        .iter()
        .filter(|e| {
            matches!(e, WireEvent::Produced { topic, transactional_id: Some(t), .. }
            if topic == "email-sent" && t == "notifier-1")
        })
        .count();
    assert_eq!(produced, 3, "{:?}", outcome.wire);
    assert!(
        !outcome
            .wire
            .iter()
            .any(|e| matches!(e, WireEvent::Committed { .. })),
        "no plain offset commit"
    );
    let timeline = history_of(&case, &outcome).to_string();
    let last = timeline
        .lines()
        .rfind(|l| l.contains("transaction \"notifier-1\" committed"))
        .unwrap_or_else(|| panic!("no committed transaction in:\n{timeline}"));
    assert!(
        last.contains("offset task-events[0]=3 for group"),
        "{timeline}"
    );
}
