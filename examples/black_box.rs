//! Black-box verification of consumer *programs*: the notification service written in Python
//! with confluent-kafka (`fixtures/python/`, and a pipeline whose effects are output records)
//! and in Rust with plain rdkafka (the binary of
//! `crates/notification-consumer`, built as production builds it), each variant run as a
//! process against librdkafka's mock cluster through the kit's wire proxy and effect service,
//! through every crash point of a fault-free run, an outage of each effect and random two-fault
//! runs. Prints each verdict and how long it took.
//!
//! Needs a Python with confluent-kafka: `EFFECTIVELY_ONCE_PYTHON` names it (`ci/test.sh`
//! makes one in `target/python-venv`), else `python3` is tried. Run it from the repository.
//!
//! ```text
//! cargo run --example black_box
//! ```

use std::process::ExitCode;

use effectively_once::Semantics;
use effectively_once::check::{BlackBox, BlackBoxError};
use effectively_once::ledger::OutputTopic;
use effectively_once::scenario::Event;

/// The Task API's `task.created` payload, which the Python service parses.
fn task_created(event: &Event) -> Vec<u8> {
    let id = &event.event_id;
    format!(
        r#"{{"data":{{"email":"owner-of-{}@example.com","task_id":"task-{id}"}},"event_id":"{id}","type":"task.created"}}"#,
        event.key
    )
    .into_bytes()
}

/// The Rust notification service's binary, told the kit's addresses under its own variables.
fn rust_service(idempotency_keys: bool) -> Result<BlackBox, BlackBoxError> {
    let mut service = BlackBox::cargo_bin("notification-consumer", "notification-consumer")?;
    service
        .env("KAFKA_BROKERS", "{bootstrap}")
        .env("EMAIL_API_URL", "{effects_url}/effects/email")
        .env("TASK_TOPIC", "{topic}")
        .env("NOTIFICATION_GROUP", "{group}")
        .env("EMAIL_IDEMPOTENCY_KEYS", idempotency_keys.to_string());
    Ok(service)
}

fn main() -> ExitCode {
    let python = std::env::var("EFFECTIVELY_ONCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/python");
    let variants = [
        ("commit_after.py", Semantics::EffectivelyOnce, "DUPLICATED"),
        ("commit_before.py", Semantics::AtLeastOnce, "LOST"),
        ("auto_commit_slow.py", Semantics::AtLeastOnce, "LOST"),
        ("idempotency_key.py", Semantics::EffectivelyOnce, "holds"),
        ("retry_then_skip.py", Semantics::AtLeastOnce, "LOST"),
        ("summarize.py", Semantics::EffectivelyOnce, "DUPLICATED"),
        (
            "rust: without idempotency keys",
            Semantics::EffectivelyOnce,
            "DUPLICATED",
        ),
        (
            "rust: with idempotency keys",
            Semantics::EffectivelyOnce,
            "holds",
        ),
    ];
    let mut unexpected = 0;
    for (variant, semantics, expected) in variants {
        let black_box = match variant.strip_prefix("rust: ") {
            Some(keys) => rust_service(keys == "with idempotency keys"),
            None => {
                let path = format!("{fixtures}/{variant}");
                let mut black_box = BlackBox::command([python.as_str(), "-u", path.as_str()]);
                black_box.encode(task_created);
                if variant == "summarize.py" {
                    // A pipeline: its effects are its output records.
                    black_box.output_topic(OutputTopic::json_event_id("task-summaries", 1));
                }
                Ok(black_box)
            }
        };
        let started = std::time::Instant::now();
        let verdict = match black_box.and_then(|b| b.check(semantics)) {
            Ok(passed) => {
                println!("{passed}");
                "holds"
            }
            Err(BlackBoxError::Violated(c)) => {
                println!("{}", c.violation);
                println!(
                    "  the fault: {}; the input: {}",
                    c.fault,
                    c.events.join(", ")
                );
                // effectively-once says "(n lost, m duplicated)"; at-least-once only loses.
                let v = &c.violation;
                let lost = v.invariant == "at-least-once" || !v.summary.contains("(0 lost");
                if lost { "LOST" } else { "DUPLICATED" }
            }
            Err(e) => {
                eprintln!("{variant}: {e}");
                return ExitCode::from(2);
            }
        };
        println!(
            "{variant}: {semantics} {verdict} (expected {expected}) in {:.1} s\n",
            started.elapsed().as_secs_f64()
        );
        if verdict != expected {
            unexpected += 1;
        }
    }
    if unexpected > 0 {
        eprintln!("{unexpected} verdict(s) differ from the expected ones");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
