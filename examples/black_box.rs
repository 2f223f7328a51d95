//! Black-box verification of consumer *programs*: the notification service written in Python
//! with confluent-kafka (`fixtures/python/`), each variant run as a process against librdkafka's
//! mock cluster through the kit's wire proxy and effect service, through every crash point of
//! a fault-free run. Prints each verdict and how long it took.
//!
//! Needs a Python with confluent-kafka: `EFFECTIVELY_ONCE_PYTHON` names it (`ci/test.sh`
//! makes one in `target/python-venv`), else `python3` is tried.
//!
//! ```text
//! cargo run --example black_box
//! ```

use std::process::ExitCode;

use effectively_once::Semantics;
use effectively_once::check::{BlackBox, BlackBoxError};
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

fn main() -> ExitCode {
    let python = std::env::var("EFFECTIVELY_ONCE_PYTHON").unwrap_or_else(|_| "python3".into());
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/python");
    let variants = [
        ("commit_after.py", Semantics::EffectivelyOnce, "DUPLICATED"),
        ("commit_before.py", Semantics::AtLeastOnce, "LOST"),
        ("auto_commit_slow.py", Semantics::AtLeastOnce, "LOST"),
        ("idempotency_key.py", Semantics::EffectivelyOnce, "holds"),
    ];
    let mut unexpected = 0;
    for (script, semantics, expected) in variants {
        let path = format!("{fixtures}/{script}");
        let mut black_box = BlackBox::command([python.as_str(), "-u", path.as_str()]);
        black_box.encode(task_created);
        let started = std::time::Instant::now();
        let verdict = match black_box.check(semantics) {
            Ok(passed) => {
                println!("{passed}");
                "holds"
            }
            Err(BlackBoxError::Violated(c)) => {
                println!("{}", c.violation);
                println!("  the fault: {}", c.fault);
                // effectively-once says "(n lost, m duplicated)"; at-least-once only loses.
                let v = &c.violation;
                let lost = v.invariant == "at-least-once" || !v.summary.contains("(0 lost");
                if lost { "LOST" } else { "DUPLICATED" }
            }
            Err(e) => {
                eprintln!("{script}: {e}");
                return ExitCode::from(2);
            }
        };
        println!(
            "{script}: {semantics} {verdict} (expected {expected}) in {:.1} s\n",
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
