//! Offsets kept in the consumer's own database (`fixtures/db_offsets.rs`): one instance that
//! `assign`s its partitions from the offsets it stored with its results, and never commits to
//! Kafka. The kit reads its progress from the store (`Verifier::progress_from_store`).

use effectively_once::{CheckError, Verifier, check_effectively_once};

use crate::fixtures::db_offsets::{Offsets, PROGRESS_QUERY, RESULT, RESULT_QUERY};
use crate::fixtures::services::db_offsets_service;
use crate::support::*;

/// One instance (a manual assignment has no group to share the partitions), effects read off
/// the results table.
fn db_verifier() -> Verifier {
    let mut v = store_verifier(RESULT, RESULT_QUERY);
    v.instances(1..=1);
    v
}

/// With the default fault kinds: an upstream producer's duplicate (`ProducerDuplicate`) is
/// two records, which offsets alone cannot tell apart; deduplicating by event id is another
/// fixture's pattern (`dedup_same_transaction`).
#[test]
fn offsets_written_in_the_results_transaction_are_effectively_once() {
    let mut v = db_verifier();
    v.progress_from_store(PROGRESS_QUERY);
    let passed =
        check_effectively_once(&v, |ctx| db_offsets_service(ctx, Offsets::SameTransaction))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(passed.cases, 256, "proptest's default case count");
    assert!(passed.faults_fired > passed.cases as u64 / 2, "{passed}");
}

#[test]
fn offsets_written_after_the_result_duplicate_when_a_crash_falls_between_the_commits() {
    let mut v = db_verifier();
    v.progress_from_store(PROGRESS_QUERY);
    let c = counterexample(check_effectively_once(&v, |ctx| {
        db_offsets_service(ctx, Offsets::SeparateTransaction)
    }));
    assert_single_window(&c, "effectively-once", "DUPLICATED");
    snapshot("db_offsets_separate_transaction", &c.to_string());
}

/// Without the opt-in the kit looks for Kafka commits that never come: the verdict says so and
/// names the opt-in.
#[test]
fn without_progress_from_store_the_liveness_verdict_names_the_opt_in() {
    let c = counterexample(check_effectively_once(&db_verifier(), |ctx| {
        db_offsets_service(ctx, Offsets::SameTransaction)
    }));
    let v = c.violation();
    assert_eq!(v.invariant, "liveness", "{c}");
    assert!(
        v.summary.contains("never committed") && v.summary.contains("progress_from_store"),
        "{c}"
    );
}

#[test]
fn a_progress_query_with_the_wrong_columns_is_an_error_not_a_verdict() {
    let mut v = db_verifier();
    v.progress_from_store("SELECT topic, next_offset FROM kafka_offsets");
    match check_effectively_once(&v, |ctx| db_offsets_service(ctx, Offsets::SameTransaction)) {
        Err(CheckError::Simulation(e)) => assert_eq!(
            e.to_string(),
            "progress_from_store: the query \"SELECT topic, next_offset FROM kafka_offsets\" \
             failed: it returns 2 columns; expected `topic, partition, next_offset`"
        ),
        other => panic!("expected the query's error, got {other:?}"),
    }
}
