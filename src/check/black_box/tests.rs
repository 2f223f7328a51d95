//! The black-box check on the Python fixtures (`fixtures/python/`): verdicts, reports, bad
//! input, and the crash-point enumeration's findings run by run.

use super::*;
use crate::history::Fault;
use crate::ledger::OutputTopic;
use crate::process::python_tests::{explain, fixture, python, run, task_events};
use crate::process::{CrashPoint, Probe, crash_points, enumeration};

/// The Task API's payload for `event`, which the Python fixtures parse.
fn task_created(event: &Event) -> Vec<u8> {
    let id = &event.event_id;
    format!(
        r#"{{"data":{{"email":"owner-of-{}@example.com","task_id":"task-{id}"}},"event_id":"{id}","type":"task.created"}}"#,
        event.key
    )
    .into_bytes()
}

fn black_box(python: &str, script: &str) -> BlackBox {
    let path = format!("{}/fixtures/python/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut b = BlackBox::command([python, "-u", &path]);
    b.encode(task_created);
    b
}

#[test]
fn the_black_box_check_reports_the_duplicate_of_commit_after_processing() {
    let Some(python) = python() else { return };
    let e = black_box(&python, "commit_after.py")
        .check(Semantics::EffectivelyOnce)
        .unwrap_err();
    let BlackBoxError::Violated(c) = &e else {
        panic!("expected a violation: {e}");
    };
    assert_eq!(c.violation.invariant, "effectively-once", "{c}");
    assert_eq!(c.fault, "CrashAfter at effect call 1 of evt-0", "{c}");
    // The runs stopped at the first failing one (the pilot, CrashBefore, CrashAfter), then
    // shrinking kept the one event the fault hits.
    assert_eq!(c.events, ["evt-0"], "{c}");
    assert_eq!(c.shrunk_from, 3, "{c}");
    assert!(c.runs >= 3, "{c}");
    let report = c.to_string();
    for told in [
        "FAILED",
        "1 duplicated",
        "input: evt-0 (shrunk from 3 events)",
        "timeline (seconds since the run started",
        "--- i1#2 ---",
        "picture: ",
    ] {
        assert!(report.contains(told), "{told:?} missing from:\n{report}");
    }
    // The timeline in lanes: the instance's own column, both incarnations' emails in it.
    let header = c.timeline.lines().next().unwrap_or_default();
    assert!(
        header.contains("cluster") && header.contains("i1"),
        "{header}"
    );
    emailed_by_both_incarnations(c);
    // The picture is a page of that run.
    let page = std::fs::read_to_string(c.picture.as_ref().expect("a picture")).expect("written");
    assert!(
        page.contains("<svg") && page.contains("evt-0"),
        "{page:.300}"
    );
}

/// A consumer started by a launcher that stays its parent (`npm start`, a shell script without
/// `exec`) is crashed as a whole: the same duplicate as when it is started directly, emailed by
/// its first incarnation and again by its second, none by a survivor of the first.
#[test]
fn a_consumer_behind_a_launcher_crashes_with_it() {
    let Some(python) = python() else { return };
    let script = format!(
        "{}/fixtures/python/commit_after.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut launched = BlackBox::command([
        "sh",
        "-c",
        r#""$0" -u "$1"; echo "the consumer exited with $?""#,
        &python,
        &script,
    ]);
    launched.encode(task_created).events(1).shrink(false);
    let e = launched.check(Semantics::EffectivelyOnce).unwrap_err();
    let BlackBoxError::Violated(c) = &e else {
        panic!("expected a violation: {e}");
    };
    assert_eq!(c.fault, "CrashAfter at effect call 1 of evt-0", "{c}");
    emailed_by_both_incarnations(c);
}

/// A bounded retry survives every single fault (the key deduplicates an ambiguous email, a
/// retry gets past a failed one, a crash redelivers); an email API down for longer than its
/// tries loses the event, and the outage run finds it.
#[test]
fn an_outage_longer_than_a_bounded_retry_loses_the_event() {
    let Some(python) = python() else { return };
    let e = black_box(&python, "retry_then_skip.py")
        .random_runs(0)
        .check(Semantics::AtLeastOnce)
        .unwrap_err();
    let BlackBoxError::Violated(c) = &e else {
        panic!("expected a violation: {e}");
    };
    assert_eq!(c.violation.invariant, "at-least-once", "{c}");
    // The outage would fail 5 calls; the report names the ones that fired: the program's
    // three tries.
    assert_eq!(c.fault, "Fail at effect calls 1 to 3 of evt-0", "{c}");
    assert_eq!(c.seed, None, "{c}");
    assert_eq!(c.events, ["evt-0"], "{c}");
    // Every one-fault run passed first: the pilot, 4 faults at each of 3 effect calls and at
    // each of 3 commits; then the outage of the first email the program retried.
    assert!(c.runs > 1 + 12 + 12, "{c}");
    assert!(c.output.contains("giving up on the email for evt-0"), "{c}");
}

/// The timeline shows evt-0's email performed twice: by instance 1's first process and again
/// by its second.
fn emailed_by_both_incarnations(c: &BlackBoxCounterexample) {
    let emails: Vec<&str> = c
        .timeline
        .lines()
        .filter(|l| l.contains("effect email(evt-0): performed"))
        .collect();
    assert_eq!(emails.len(), 2, "{c}");
    assert!(
        emails[0].contains("#1 ") && emails[1].contains("#2 "),
        "{c}"
    );
}

/// No false alarm with two instances: commit after processing is at-least-once through
/// every crash point, while the group rebalances around each killed instance.
#[test]
fn two_instances_of_commit_after_processing_hold_at_least_once_at_every_crash_point() {
    let Some(python) = python() else { return };
    let passed = black_box(&python, "commit_after.py")
        .instances(2)
        .events(4)
        .check(Semantics::AtLeastOnce)
        .unwrap_or_else(|e| panic!("{e}"));
    // The pilot, 4 faults at each of 4 effect calls, 4 at each commit request.
    assert!(passed.runs >= 1 + 16 + 16, "{passed}");
}

#[test]
fn the_black_box_check_finds_the_loss_of_auto_commit_with_a_slow_effect() {
    let Some(python) = python() else { return };
    let e = black_box(&python, "auto_commit_slow.py")
        .check(Semantics::AtLeastOnce)
        .unwrap_err();
    let BlackBoxError::Violated(c) = &e else {
        panic!("expected a violation: {e}");
    };
    assert_eq!(c.violation.invariant, "at-least-once", "{c}");
    // The process died before the email of a record whose offset was auto-committed.
    assert!(
        c.fault.starts_with("CrashBefore at effect call 1 of"),
        "{c}"
    );
    assert!(c.timeline.contains("commit (seen on the wire)"), "{c}");
}

#[test]
fn the_black_box_check_passes_the_idempotency_key_consumer_after_every_crash_point() {
    let Some(python) = python() else { return };
    let passed = black_box(&python, "idempotency_key.py")
        .check(Semantics::EffectivelyOnce)
        .unwrap_or_else(|e| panic!("{e}"));
    // The pilot, 4 faults at each of 3 effect calls, 4 at each of 3 commits, the random
    // runs; no outage: a failed email crashes the program, which is not a retry.
    assert_eq!((passed.outage_runs, passed.random_runs), (0, 8), "{passed}");
    assert_eq!(passed.runs, 1 + 12 + 12 + 8, "{passed}");
    assert!(
        passed
            .to_string()
            .contains("held effectively-once in 33 runs"),
        "{passed}"
    );
}

#[test]
fn a_program_that_cannot_be_verified_gets_an_error_that_says_why() {
    let e = BlackBox::command(["/nonexistent/consumer"])
        .check(Semantics::EffectivelyOnce)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("could not start the consumer command `/nonexistent/consumer`"),
        "{e}"
    );
    let e = BlackBox::command(["sh", "-c", "echo no kafka here; exit 3"])
        .check(Semantics::EffectivelyOnce)
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, BlackBoxError::Unusable(_)), "{text}");
    assert!(text.contains("never sent a request"), "{text}");
    assert!(text.contains("no kafka here"), "{text}");
    let e = BlackBox::command(["sh", "-c", "sleep 30"])
        .time_limit(Duration::from_secs(2))
        .check(Semantics::EffectivelyOnce)
        .unwrap_err();
    assert!(e.to_string().contains("never sent a request"), "{e}");
    let e = BlackBox::command(Vec::<String>::new())
        .check(Semantics::EffectivelyOnce)
        .unwrap_err();
    assert!(matches!(e, BlackBoxError::InvalidConfig(_)), "{e}");
}

fn email() -> Effects {
    Effects {
        sinks: vec!["email".to_string()],
        outputs: Vec::new(),
    }
}

fn broken(run: &JudgedProcessRun) -> Vec<(String, Vec<String>)> {
    run.violations
        .iter()
        .map(|v| (v.invariant.clone(), v.event_ids.clone()))
        .collect()
}

#[test]
fn a_python_consumer_killed_between_email_and_commit_breaks_effectively_once_not_at_least_once() {
    let Some(python) = python() else { return };
    let faults = [(("evt-1".to_string(), 1), Fault::CrashAfter)].into();
    let (_dir, case, outcome) = run(&python, "commit_after.py", faults, WireFaults::new());
    let judged = judge_process_run(Semantics::EffectivelyOnce, &case, &outcome, &email());
    let timeline = judged.history.to_string();
    // Each attempt carries the generation its instance had joined.
    assert!(
        attempts_of(&outcome)
            .iter()
            .all(|a| a.generation.is_some_and(|g| g >= 1)),
        "{:?}",
        attempts_of(&outcome)
    );
    assert_eq!(
        broken(&judged),
        [("effectively-once".to_string(), vec!["evt-1".to_string()])],
        "{timeline}"
    );
    let at_least = judge_process_run(Semantics::AtLeastOnce, &case, &outcome, &email());
    assert!(at_least.violations.is_empty(), "{:?}", at_least.violations);
    // The timeline tells the story: the fault, the crash, the restart, the second email.
    for told in [
        "fault",
        "crash",
        "fetched task-events[0]@1",
        "commit (seen on the wire) task-events[0]=2 ok",
        "email(evt-1)",
    ] {
        assert!(
            timeline.contains(told),
            "{told:?} missing from:\n{timeline}"
        );
    }
}

#[test]
fn a_python_consumer_killed_after_committing_before_its_email_breaks_at_least_once() {
    let Some(python) = python() else { return };
    let faults = [(("OffsetCommit".to_string(), 2), Fault::CrashAfter)].into();
    let (_dir, case, outcome) = run(&python, "commit_before.py", EffectFaults::new(), faults);
    let judged = judge_process_run(Semantics::AtLeastOnce, &case, &outcome, &email());
    assert_eq!(
        broken(&judged),
        [("at-least-once".to_string(), vec!["evt-1".to_string()])],
        "{}",
        judged.history
    );
}

#[test]
fn the_idempotency_key_consumer_holds_effectively_once_through_the_same_kill() {
    let Some(python) = python() else { return };
    let faults = [(("evt-1".to_string(), 1), Fault::CrashAfter)].into();
    let (_dir, case, outcome) = run(&python, "idempotency_key.py", faults, WireFaults::new());
    let judged = judge_process_run(Semantics::EffectivelyOnce, &case, &outcome, &email());
    assert!(
        judged.violations.is_empty(),
        "{:?}\n{}",
        judged.violations,
        judged.history
    );
}

#[test]
fn crash_point_enumeration_finds_the_duplicate_of_commit_after_processing_and_no_loss() {
    let Some(python) = python() else { return };
    let dir = crate::process::tests::tempdir::Dir::new();
    let case = BlackBoxCase {
        environment: Vec::new(),
        outputs: Vec::new(),
        command: fixture(&python, "commit_after.py"),
        instances: 1,
        topic: "task-events".into(),
        group: "notification-service".into(),
        events: task_events(3),
        effect_faults: EffectFaults::new(),
        wire_faults: WireFaults::new(),
        time_limit: Duration::from_secs(90),
        settle: Duration::from_millis(500),
        restart_after: Duration::from_millis(100),
        ledger: dir.path("ledger.db"),
    };
    let broker = || {
        let running = BrokerProvider::MockCluster
            .start(&[("task-events".to_string(), 1)])
            .map_err(|e| ProcessError::Broker(e.to_string()))?;
        let bootstrap = running.bootstrap().to_string();
        Ok((running, bootstrap))
    };
    let started = std::time::Instant::now();
    let pilot = pilot(&case, &broker).unwrap();
    let probes = probes(&case, "probe", &enumeration(&pilot), &broker, 4, &|_, _| {
        false
    })
    .unwrap();
    let took = started.elapsed();
    let points = crash_points(&pilot);
    assert_eq!(
        points
            .iter()
            .filter(|p| matches!(p, CrashPoint::Effect { .. }))
            .count(),
        3
    );
    assert!(
        points
            .iter()
            .any(|p| matches!(p, CrashPoint::Wire { api, .. } if api == "OffsetCommit"))
    );
    let mut lines = Vec::new();
    for p in &probes {
        assert_eq!(
            p.outcome.ending,
            Ending::CaughtUp,
            "{}: {}",
            p.plan,
            explain(&p.outcome)
        );
        assert!(
            p.lost(&case).is_empty(),
            "{} lost an event: {}",
            p.plan,
            explain(&p.outcome)
        );
        lines.push(format!("{}: duplicated {:?}", p.plan, p.duplicated()));
    }
    let duplicating: Vec<&Probe> = probes
        .iter()
        .filter(|p| !p.duplicated().is_empty())
        .collect();
    assert!(
        duplicating.iter().any(|p| matches!(
            p.plan.0.as_slice(),
            [(CrashPoint::Effect { .. }, Fault::CrashAfter)]
        )),
        "{lines:#?}"
    );
    println!("{} probes in {took:?}:\n{}", probes.len(), lines.join("\n"));
}

/// A new group left at librdkafka's default `auto.offset.reset=latest` starts past the input
/// (written before the consumers start): the pilot never catches up, and the report names
/// the anti-pattern from what the wire showed (no committed offset, then a ListOffsets for
/// the latest offset).
#[test]
fn a_consumer_starting_at_latest_loses_the_input_and_the_report_says_why() {
    let Some(python) = python() else { return };
    let e = black_box(&python, "started_at_latest.py")
        .time_limit(Duration::from_secs(15))
        .check(Semantics::AtLeastOnce)
        .unwrap_err();
    let BlackBoxError::Violated(c) = &e else {
        panic!("expected a violation: {e}");
    };
    assert_eq!(c.fault, "none (the pilot run)", "{c}");
    // Nothing is lost yet (nothing was committed past the events): the group is stuck.
    assert_eq!(c.violation.invariant, "liveness", "{c}");
    assert!(
        c.timeline.contains(
            "assigned task-events[0] from 3 (no committed offset: auto.offset.reset=latest)"
        ),
        "{c}"
    );
    let kinds: Vec<_> = c.diagnoses.iter().map(|d| (d.kind, d.likely)).collect();
    assert_eq!(
        kinds,
        [(
            crate::report::diagnosis::DiagnosisKind::StartedAtLatest,
            false
        )],
        "{c}"
    );
    assert!(
        c.to_string()
            .contains("diagnosis:\n  - a new group starting at `latest`: task-events[0] had no"),
        "{c}"
    );
}

/// librdkafka's mock cluster does not store offsets sent to transactions: a program that
/// commits through transactions is refused there, with the reason, rather than blamed for the
/// duplicates the stub would cause.
#[test]
fn a_transactional_consumer_is_refused_on_a_broker_that_drops_transactional_offsets() {
    let Some(python) = python() else { return };
    let e = black_box(&python, "transactional_email.py")
        .check(Semantics::AtLeastOnce)
        .unwrap_err();
    assert!(matches!(e, BlackBoxError::Unusable(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("commits its offsets through transactions")
            && text.contains("not honoured: transactional offsets are stored"),
        "{text}"
    );
}

/// A summary record per event on an output topic, read after each run as `read_committed`
/// reads it.
fn summaries() -> OutputTopic {
    OutputTopic::json_event_id("task-summaries", 1)
}

/// A pipeline whose effects are records on an output topic: a crash between the output and
/// the commit writes it again (found), and nothing is lost at any crash point.
#[test]
fn a_pipelines_outputs_are_its_effects() {
    let Some(python) = python() else { return };
    let mut pipeline = black_box(&python, "summarize.py");
    pipeline.output_topic(summaries());
    let e = pipeline.check(Semantics::EffectivelyOnce).unwrap_err();
    let BlackBoxError::Violated(c) = &e else {
        panic!("expected a violation: {e}");
    };
    assert!(
        c.violation.summary.contains("(0 lost, 1 duplicated)"),
        "{c}"
    );
    assert!(
        c.violation
            .details
            .iter()
            .any(|d| d.contains("output topic task-summaries holds 2 committed records")),
        "{c}"
    );
    assert!(c.fault.contains("OffsetCommit request"), "{c}");
    let held = pipeline
        .check(Semantics::AtLeastOnce)
        .unwrap_or_else(|e| panic!("{e}"));
    // The pilot, 4 faults at each of the 3 commits (no effect calls, so no outage), the
    // random runs.
    assert_eq!(held.random_runs, 8, "{held}");
    assert_eq!(held.runs, 1 + 3 * 4 + 8, "{held}");
}
