//! The `effectively-once` command line on the Python fixtures (`fixtures/python/`): its exit
//! codes and what it prints. Needs `EFFECTIVELY_ONCE_PYTHON` (a python with confluent-kafka;
//! `ci/test.sh` sets it); without it the tests say they were skipped, unless
//! `EFFECTIVELY_ONCE_REQUIRE_PYTHON` is set.

use std::process::Command;

fn python() -> Option<String> {
    match std::env::var("EFFECTIVELY_ONCE_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ if std::env::var_os("EFFECTIVELY_ONCE_REQUIRE_PYTHON").is_some() => {
            panic!("EFFECTIVELY_ONCE_REQUIRE_PYTHON is set but EFFECTIVELY_ONCE_PYTHON is not")
        }
        _ => {
            println!("SKIPPED: set EFFECTIVELY_ONCE_PYTHON to a python with confluent-kafka");
            None
        }
    }
}

const TASK_CREATED: &str = r#"{"data":{"email":"owner-of-{key}@example.com","task_id":"task-{n}"},"event_id":"{event_id}","type":"task.created"}"#;

fn check(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_effectively-once"))
        .arg("check")
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_violation_prints_the_report_and_exits_1() {
    let Some(python) = python() else { return };
    let script = format!(
        "{}/fixtures/python/commit_after.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, stdout, stderr) = check(&[
        "--semantics",
        "effectively-once",
        "--events",
        "1",
        "--payload",
        TASK_CREATED,
        "--",
        &python,
        "-u",
        &script,
    ]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("black-box check FAILED"), "{stdout}");
    assert!(stdout.contains("effectively-once violated"), "{stdout}");
    // Commit after processing is at-least-once: that holds.
    let (code, stdout, stderr) = check(&[
        "--semantics",
        "at-least-once",
        "--events",
        "1",
        "--random-runs",
        "2",
        "--seed",
        "3",
        "--payload",
        TASK_CREATED,
        "--",
        &python,
        "-u",
        &script,
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    // The pilot, 4 faults at the effect and 4 at the commit, 2 random runs (no outage: the
    // program does not retry a failed email, it crashes and is redelivered the event).
    assert!(
        stdout.contains("held at-least-once in 11 runs") && stdout.contains("from seed 3"),
        "{stdout}"
    );
}

#[test]
fn a_program_that_cannot_start_exits_2_and_says_why() {
    let (code, stdout, stderr) = check(&["--", "/nonexistent/consumer", "--flag"]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("could not start the consumer command `/nonexistent/consumer --flag`"),
        "{stderr}"
    );
    let (code, _, stderr) = check(&[]);
    assert_eq!(code, Some(2), "clap's usage error: {stderr}");
    assert!(stderr.contains("<PROGRAM>"), "{stderr}");
}

#[test]
fn a_nonsense_environment_variable_exits_2_before_anything_runs() {
    let (code, stdout, stderr) = check(&["--env", "NOVALUE", "--", "/bin/true"]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("--env \"NOVALUE\" is not NAME=VALUE"),
        "{stderr}"
    );
    let (code, stdout, stderr) = check(&["--env", "URL={effects}/x", "--", "/bin/true"]);
    assert_eq!(code, Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("invalid black-box setting: environment: URL={effects}/x: unknown placeholder \"{effects}\""),
        "{stderr}"
    );
}

#[test]
fn output_topics_count_a_pipelines_records_as_its_effects() {
    let Some(python) = python() else { return };
    let script = format!(
        "{}/fixtures/python/summarize.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let (code, stdout, stderr) = check(&[
        "--semantics",
        "at-least-once",
        "--events",
        "1",
        "--output-topic",
        "task-summaries",
        "--random-runs",
        "0",
        "--payload",
        TASK_CREATED,
        "--",
        &python,
        "-u",
        &script,
    ]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    // The pilot and 4 faults at the one commit; no effect service calls expected.
    assert!(stdout.contains("held at-least-once in 5 runs"), "{stdout}");
}
