//! The same seed gives a byte-identical history; different seeds interleave differently.

use std::time::Duration;

use effectively_once::{Anchor, Fault, FaultSchedule, InstanceContext, Operation, Simulation};

use crate::fixtures::commit_after;
use crate::fixtures::notification::{self, BoxError, EMAIL, TOPIC};

/// Three instances of the commit-after loop over three partitions, with crashes, an ambiguous
/// commit, a failed email and a broker restart.
fn scenario(seed: u64) -> String {
    let faults = FaultSchedule::new()
        .with(
            Anchor::on(Operation::CommitMessage)
                .partition(1)
                .occurrence(2),
            Fault::CrashBefore,
        )
        .with(
            Anchor::on(Operation::Effect).occurrence(7),
            Fault::CrashAfter,
        )
        .with(
            Anchor::on(Operation::CommitMessage).occurrence(9),
            Fault::Ambiguous,
        )
        .with(Anchor::on(Operation::Effect).occurrence(12), Fault::Fail)
        .with(
            Anchor::on(Operation::Recv).occurrence(15),
            Fault::BrokerRestart(Duration::from_millis(500)),
        );
    let mut builder = Simulation::builder();
    builder
        .seed(seed)
        .topic(TOPIC, 3)
        .instances(3)
        .faults(faults);
    for record in notification::events(30) {
        builder.produce(record);
    }
    async fn instance(ctx: InstanceContext) -> Result<(), BoxError> {
        let consumer = ctx.create_consumer(&commit_after::config())?;
        commit_after::run(&consumer, &ctx.effect_sink(EMAIL)).await
    }
    let outcome = builder.build().expect("valid").run(instance).expect("runs");
    assert!(outcome.history().quiesced(), "{}", outcome.history());
    format!("{}\n{:?}", outcome.history(), outcome.history())
}

#[test]
fn the_same_seed_gives_a_byte_identical_history() {
    let first = scenario(42);
    let second = scenario(42);
    assert!(first == second, "histories differ:\n{first}\n---\n{second}");
    assert!(first.contains("CRASHED"), "the scenario exercises crashes");
    assert!(first.contains("broker is back"), "and a broker restart");
}

#[test]
fn different_seeds_interleave_differently() {
    let histories: std::collections::BTreeSet<String> = (1..=4).map(scenario).collect();
    assert_eq!(histories.len(), 4, "every seed gave its own interleaving");
}

/// Which branch of an unbiased `select!` between two ready futures wins, 32 times over, as the
/// effects the instance records (`a` or `b`).
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
fn unbiased_select_choices(seed: u64) -> String {
    let mut builder = Simulation::builder();
    builder.seed(seed).topic(TOPIC, 1);
    let outcome = builder
        .build()
        .expect("valid")
        .run(|ctx: InstanceContext| async move {
            let sink = ctx.effect_sink("branch");
            for _ in 0..32 {
                let branch = tokio::select! {
                    _ = std::future::ready(()) => "a",
                    _ = std::future::ready(()) => "b",
                };
                sink.perform(branch).await.expect("no fault");
            }
        })
        .expect("runs");
    outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            effectively_once::history::HistoryEvent::Effect { event_id, .. } => {
                Some(event_id.as_str())
            }
            _ => None,
        })
        .collect()
}

/// With `--cfg tokio_unstable` the kit seeds tokio's RNG from the run's seed: an unbiased
/// `select!` replays. (`ci/test.sh` runs this target once with that flag.)
#[cfg(tokio_unstable)]
#[test]
fn an_unbiased_select_replays_from_the_seed_with_tokio_unstable() {
    let first = unbiased_select_choices(5);
    assert_eq!(first.len(), 32);
    assert!(first.contains('a') && first.contains('b'), "{first}");
    assert_eq!(unbiased_select_choices(5), first);
    assert_ne!(
        unbiased_select_choices(6),
        first,
        "another seed, other choices"
    );
}

/// Without `--cfg tokio_unstable`, tokio's random generator is seeded at random: a consumer
/// whose history depends on an unbiased `select!` differs from one run to the next, and the
/// report says so rather than promising a replay.
#[cfg(not(tokio_unstable))]
#[test]
fn a_consumer_whose_unbiased_select_differs_between_runs_is_reported_as_not_deterministic() {
    use effectively_once::{
        CheckError, ConsumerHandle, KafkaConsumer, Verifier, check_effectively_once,
    };
    use rdkafka::consumer::CommitMode;

    let mut v = Verifier::default();
    v.topic(TOPIC)
        .effect_sink(EMAIL)
        .persist_failures(false)
        .cases(4);
    // It never sends the email (every case loses its events) and traces 32 draws of an
    // unbiased `select!` per record.
    let result = check_effectively_once(&v, |ctx: InstanceContext| async move {
        let consumer = ctx.create_consumer(&commit_after::config())?;
        consumer.subscribe(&[TOPIC])?;
        let trace = ctx.effect_sink("branch");
        loop {
            let message = consumer.recv().await?;
            for _ in 0..32 {
                let branch = tokio::select! {
                    _ = std::future::ready(()) => "a",
                    _ = std::future::ready(()) => "b",
                };
                trace.perform(branch).await?;
            }
            consumer.commit_message(&message, CommitMode::Sync)?;
        }
        #[allow(unreachable_code)]
        Ok::<(), BoxError>(())
    });
    let Err(CheckError::Violated(c)) = result else {
        panic!("expected a counterexample, got {result:?}");
    };
    let report = c.to_string();
    assert!(
        report.contains("this consumer is NOT deterministic: two runs of the same minimal scenario gave different histories"),
        "{report}"
    );
    assert!(
        report.contains("replay: if the consumer were deterministic: seed"),
        "{report}"
    );
}
