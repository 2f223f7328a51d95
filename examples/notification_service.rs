//! The seeds' notification service on the simulated cluster.
//!
//! The Task API publishes `task.created`; the notification service consumes it and sends an
//! email, committing the offset after the email (at-least-once). This example runs two instances
//! of it over three partitions and crashes one of them in the window between the email and the
//! commit. It prints the timeline and how many emails each event produced: the crash sends one
//! email twice. Then it runs the other two seed loops through their own crash windows, where
//! they lose events instead. Finally it hands both versions of the service to the verifier:
//! the naive one fails with its minimal crash sequence and timeline printed, and the path of
//! the timeline's picture (an HTML page under `target/effectively-once/`); the fixed one (the
//! event id as the email API's idempotency key) passes every generated case.
//!
//! Run it with `cargo run --example notification_service`.

#[path = "../fixtures/mod.rs"]
mod fixtures;

use std::time::Duration;

use effectively_once::{
    Anchor, CheckError, Fault, FaultSchedule, InstanceContext, Operation, Outcome, Simulation,
    Verifier, check_effectively_once,
};
use fixtures::notification::{self, BoxError, EMAIL, TOPIC};
use fixtures::{auto_commit, commit_after, commit_before, idempotency_key};

const EVENTS: usize = 12;

fn simulate<Fut>(
    instances: u32,
    faults: FaultSchedule,
    consumer: fn(InstanceContext) -> Fut,
) -> Result<Outcome, effectively_once::Error>
where
    Fut: std::future::Future<Output = Result<(), BoxError>> + 'static,
{
    let mut builder = Simulation::builder();
    builder
        .seed(7)
        .topic(TOPIC, 3)
        .instances(instances)
        .faults(faults);
    for record in notification::events(EVENTS) {
        builder.produce(record);
    }
    builder.build()?.run(consumer)
}

/// One line per event that was not emailed exactly once.
fn summary(outcome: &Outcome) -> Vec<String> {
    let emails = outcome.history().effect_counts(EMAIL);
    (0..EVENTS)
        .map(|n| format!("evt-{n}"))
        .filter_map(|id| match emails.get(&id).copied().unwrap_or(0) {
            1 => None,
            0 => Some(format!("{id}: never emailed (LOST)")),
            k => Some(format!("{id}: emailed {k} times (DUPLICATE)")),
        })
        .collect()
}

async fn notification_service(ctx: InstanceContext) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&commit_after::config())?;
    commit_after::run(&consumer, &ctx.effect_sink(EMAIL)).await
}

async fn commit_before_service(ctx: InstanceContext) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&commit_before::config())?;
    commit_before::run(&consumer, &ctx.effect_sink(EMAIL)).await
}

async fn auto_commit_service(ctx: InstanceContext) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&auto_commit::config())?;
    auto_commit::run(&consumer, &ctx.effect_sink(EMAIL)).await
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The at-least-once notification service: crash after the email for the record at offset 1
    // of partition 0, before its offset is committed.
    let window = Anchor::on(Operation::CommitMessage).record(0, 1);
    let outcome = simulate(
        2,
        FaultSchedule::new().with(window.clone(), Fault::CrashBefore),
        notification_service,
    )?;
    println!(
        "== notification service (commit after processing), crash before the commit of {TOPIC}[0]@1 ==\n"
    );
    print!("{}", outcome.history());
    println!(
        "\nemails sent: {} for {EVENTS} events",
        outcome
            .history()
            .effect_counts(EMAIL)
            .values()
            .sum::<usize>()
    );
    for line in summary(&outcome) {
        println!("  {line}");
    }

    // The other two seed loops, each through the window that hurts it.
    let others: [(&str, FaultSchedule, Outcome); 2] = [
        (
            "commit before processing, crash after the commit",
            FaultSchedule::new().with(window.clone(), Fault::CrashAfter),
            simulate(
                2,
                FaultSchedule::new().with(window.clone(), Fault::CrashAfter),
                commit_before_service,
            )?,
        ),
        (
            "auto-commit, a slow email outlives the auto-commit, then a crash",
            auto_commit_faults(),
            simulate(2, auto_commit_faults(), auto_commit_service)?,
        ),
    ];
    for (title, faults, outcome) in &others {
        println!("\n== {title} ==");
        for rule in faults.rules() {
            println!("  fault: {} -> {}", rule.anchor, rule.fault);
        }
        let lines = summary(outcome);
        if lines.is_empty() {
            println!("  every event emailed exactly once");
        }
        for line in lines {
            println!("  {line}");
        }
    }
    println!("\nSame seed, same timeline: run it again and compare.");

    // The verifier: generated event streams and fault schedules instead of a hand-picked one.
    let mut verifier = Verifier::default();
    verifier
        .topic(TOPIC)
        .encode(notification::encode)
        .effect_sink(EMAIL)
        .persist_failures(false);
    println!("\n== the verifier on the naive service (commit after processing, no dedup) ==\n");
    match check_effectively_once(&verifier, notification_service) {
        Ok(passed) => println!("unexpectedly passed: {passed}"),
        Err(CheckError::Violated(counterexample)) => {
            print!("{counterexample}");
            if let Some(page) = counterexample.picture() {
                println!(
                    "\nThe picture of this timeline (open it in a browser): {}",
                    page.display()
                );
            }
            println!(
                "\nIn plain words: the naive service is NOT effectively-once; the smallest failing \
                 case is {} event and {} fault.",
                counterexample.scenario.events.len(),
                counterexample.scenario.faults.len()
            );
        }
        Err(e) => return Err(Box::new(e)),
    }
    println!("\n== the verifier on the fixed service (the event id as the idempotency key) ==\n");
    let passed = check_effectively_once(&verifier, fixed_service)?;
    println!("{passed}");
    println!(
        "In plain words: the fixed service sent every email exactly once in all {} cases.",
        passed.cases
    );
    Ok(())
}

async fn fixed_service(ctx: InstanceContext) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&idempotency_key::config())?;
    idempotency_key::run(&consumer, &ctx.effect_sink(EMAIL)).await
}

fn auto_commit_faults() -> FaultSchedule {
    FaultSchedule::new()
        .with(
            Anchor::on(Operation::Effect).record(0, 1),
            Fault::Stall(Duration::from_millis(1500)),
        )
        .with(
            Anchor::on(Operation::AutoCommit).record(0, 1),
            Fault::CrashAfter,
        )
}
