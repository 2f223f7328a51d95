//! Consume-transform-produce pipelines and transactional inputs: each wiring from the seeds
//! gets its exact verdict.

use effectively_once::check::{check_at_least_once, check_exactly_once, run_scenario};
use effectively_once::history::HistoryEvent;
use effectively_once::scenario::{Event, Scenario};
use effectively_once::scenario::{ScenarioFault, StreamEvent};
use effectively_once::{
    CheckError, Fault, FaultKind, InstanceContext, Operation, Semantics, Verifier,
    check_effectively_once,
};

use crate::fixtures::notification::BoxError;
use crate::fixtures::outbox;
use crate::fixtures::pipeline::{self, Wiring};
use crate::fixtures::services::read_uncommitted_service;
use crate::support::*;

/// The notification topic and payloads, outputs counted on both output topics.
fn pipeline_verifier() -> Verifier {
    let mut v = notification_verifier();
    for output in pipeline::outputs() {
        v.output_topic(output);
    }
    v
}

/// Every fault kind but upstream duplicates, which no pipeline can undo (see
/// `transactions_do_not_deduplicate_what_the_upstream_published_twice`).
fn all_but_upstream_duplicates() -> Vec<FaultKind> {
    FaultKind::ALL
        .into_iter()
        .filter(|k| *k != FaultKind::ProducerDuplicate)
        .collect()
}

fn exactly_once(wiring: Wiring) -> Box<effectively_once::Counterexample> {
    counterexample(check_exactly_once(&pipeline_verifier(), move |ctx| {
        pipeline::instance(ctx, wiring)
    }))
}

#[test]
fn the_transactional_pipeline_is_exactly_once() {
    let mut v = pipeline_verifier();
    v.faults(&all_but_upstream_duplicates());
    let passed = check_exactly_once(&v, |ctx| pipeline::instance(ctx, Wiring::Transactional))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(passed.cases, 256, "proptest's default case count");
    assert!(passed.faults_fired > passed.cases as u64 / 2, "{passed}");
    assert!(passed.crashes > 50, "{passed}");
}

#[test]
fn transactions_do_not_deduplicate_what_the_upstream_published_twice() {
    let mut v = pipeline_verifier();
    v.faults(&[FaultKind::ProducerDuplicate]);
    let c = counterexample(check_exactly_once(&v, |ctx| {
        pipeline::instance(ctx, Wiring::Transactional)
    }));
    assert_eq!(c.violation().invariant, "exactly-once", "{c}");
    assert!(c.scenario.events.iter().any(|e| e.produced_twice), "{c}");
    assert!(c.scenario.faults.is_empty(), "{c}");
}

#[test]
fn outputs_through_a_plain_producer_are_duplicated_by_a_crash_before_the_commit() {
    let c = exactly_once(Wiring::NonTransactional);
    assert_single_window(&c, "exactly-once", "DUPLICATED");
    snapshot("pipeline_non_transactional", &c.to_string());
}

#[test]
fn offsets_committed_by_the_consumer_after_the_transaction_duplicate_its_outputs() {
    let c = exactly_once(Wiring::ConsumerCommit);
    assert_single_window(&c, "exactly-once", "DUPLICATED");
    snapshot("pipeline_consumer_commit", &c.to_string());
}

#[test]
fn aborting_without_rewinding_skips_the_message_and_loses_its_outputs() {
    let c = exactly_once(Wiring::AbortWithoutRewind);
    println!("{c}");
    // The loss first (the next transaction committed the offset past the skipped message),
    // though the search met the wedge (the skipped last message is never committed) first.
    assert_eq!(c.violation().invariant, "exactly-once", "{c}");
    assert!(
        c.violation().details.iter().all(|d| d.ends_with("LOST")),
        "{c}"
    );
    let others: Vec<&str> = c
        .other_violations()
        .iter()
        .map(|o| o.violation().invariant.as_str())
        .collect();
    assert_eq!(others, ["liveness"], "{c}");
    assert!(
        c.passed_before > c.other_violations()[0].passed_before,
        "{c}"
    );
    snapshot("pipeline_abort_without_rewind", &c.to_string());
}

#[test]
fn exactly_once_without_an_output_topic_is_a_configuration_error() {
    match check_exactly_once(&notification_verifier(), |ctx| {
        pipeline::instance(ctx, Wiring::Transactional)
    }) {
        Err(CheckError::InvalidConfig(why)) => assert!(why.contains("output_topic"), "{why}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[test]
fn a_consumer_reading_uncommitted_acts_on_an_aborted_upstream_transaction() {
    let mut v = verifier();
    v.faults(&[FaultKind::Crash, FaultKind::AbortedUpstream]);
    let c = counterexample(check_effectively_once(&v, read_uncommitted_service));
    assert_eq!(c.violation().invariant, "no aborted read", "{c}");
    assert_eq!(
        (c.scenario.events.len(), c.scenario.faults.len()),
        (1, 0),
        "{c}"
    );
    assert!(c.scenario.events[0].aborted_first, "{c}");
    snapshot("read_uncommitted", &c.to_string());
}

/// One event, `evt-0`, on one partition, one instance, and a crash right after the pipeline's
/// first output of it: the transaction is left open.
fn crash_inside_the_transaction() -> Scenario {
    Scenario {
        seed: 0,
        partitions: 1,
        instances: 1,
        late_joins: Vec::new(),
        events: vec![StreamEvent {
            event: Event {
                event_id: "evt-0".into(),
                key: "k0".into(),
                payload: serde_json::json!({}),
            },
            produced_twice: false,
            poison: false,
            aborted_first: false,
        }],
        faults: vec![ScenarioFault {
            event: 0,
            operation: Operation::Send,
            occurrence: 1,
            fault: Fault::CrashAfter,
        }],
    }
}

/// When the transaction the crash left open was aborted, in virtual seconds, and whether the
/// case passed.
fn open_transaction_aborted_at(wiring: Wiring) -> (u64, bool) {
    let run = run_scenario(
        Semantics::ExactlyOnce,
        &pipeline_verifier(),
        &crash_inside_the_transaction(),
        move |ctx| pipeline::instance(ctx, wiring),
    )
    .unwrap();
    println!("{}", run.outcome.history());
    let aborted = run
        .outcome
        .history()
        .entries()
        .iter()
        .find(|e| matches!(e.event, HistoryEvent::TransactionAborted { .. }))
        .expect("the open transaction is aborted");
    (aborted.at.as_secs(), run.violations.is_empty())
}

#[test]
fn a_random_transactional_id_per_restart_is_still_exactly_once_but_leaves_transactions_open() {
    // Kafka 2.5+ (KIP-447) fences zombies through the consumer's group metadata, so the
    // random id does not duplicate (the search finds nothing)...
    let passed = check_exactly_once(&pipeline_verifier(), |ctx| {
        pipeline::instance(ctx, Wiring::RandomTransactionalId)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(passed.crashes > 50, "{passed}");
    // ...but nobody aborts a crashed instance's open transaction: it holds back the last
    // stable offset of the output partitions, and every read_committed reader behind it,
    // until transaction.timeout.ms (60 s). With a stable id the restart aborts it at once.
    assert_eq!(
        open_transaction_aborted_at(Wiring::Transactional),
        (1, true)
    );
    assert_eq!(
        open_transaction_aborted_at(Wiring::RandomTransactionalId),
        (60, true)
    );
}

async fn outbox_service(ctx: InstanceContext) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&crate::fixtures::store_consumer::config())?;
    let producer = ctx.create_producer(&outbox::producer_config())?;
    let mut store = ctx.durable_store()?;
    outbox::open(&mut store)?;
    outbox::run(&consumer, &producer, &mut store).await
}

fn outbox_verifier() -> Verifier {
    let mut v = notification_verifier();
    v.output_topic(outbox::published());
    v
}

#[test]
fn the_outbox_relay_publishes_every_event_at_least_once() {
    let passed =
        check_at_least_once(&outbox_verifier(), outbox_service).unwrap_or_else(|e| panic!("{e}"));
    assert!(passed.crashes > 50, "{passed}");
}

#[test]
fn the_outbox_relay_publishes_again_after_a_crash_between_the_ack_and_the_delete() {
    // One process: only a crash makes the relay publish a row twice (see below for two).
    let mut v = outbox_verifier();
    v.instances(1..=1);
    let c = counterexample(check_effectively_once(&v, outbox_service));
    assert_single_window(&c, "effectively-once", "DUPLICATED");
    snapshot("outbox_relay", &c.to_string());
}

#[test]
fn two_relays_on_one_outbox_publish_a_row_twice_when_a_member_joins_mid_input() {
    // The joining process's relay publishes the row the other relay is publishing: no fault
    // needed, only a second process started while the first has rows in flight.
    let c = counterexample(check_effectively_once(&outbox_verifier(), outbox_service));
    assert_eq!(c.violation().invariant, "effectively-once", "{c}");
    assert!(c.violation().details[0].ends_with("DUPLICATED"), "{c}");
    assert_eq!(
        (c.scenario.faults.len(), c.scenario.late_joins.len()),
        (0, 1),
        "{c}"
    );
}
