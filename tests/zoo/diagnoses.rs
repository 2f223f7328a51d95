//! Diagnoses of known anti-patterns: each pattern named, in the report, on a consumer written
//! the way real programs are; and no diagnosis where the bug is another one, or where the
//! consumer is correct.

use effectively_once::check::{DiagnosisKind, check_at_least_once, check_exactly_once};
use effectively_once::{Counterexample, Verifier, check_effectively_once};

use crate::fixtures::corpus::stream_loop::{self, Loop};
use crate::fixtures::dedup_same_transaction::{INBOX, INBOX_QUERY, Mark};
use crate::fixtures::pipeline::{self, Wiring};
use crate::fixtures::services::*;
use crate::fixtures::upsert_natural_key::{TASK_ROW, TASK_ROW_QUERY, Write};
use crate::fixtures::{
    audit_outside_txn, commit_own_offset, latest_start, store_before_effect, store_without_commit,
};
use crate::support::*;

/// The counterexample's only diagnosis is `kind`, stated as a fact or as "likely" as
/// `likely` says, and the report prints it after the violations.
fn assert_diagnosed(c: &Counterexample, kind: DiagnosisKind, likely: bool) {
    let diagnoses = c.diagnoses();
    let kinds: Vec<DiagnosisKind> = diagnoses.iter().map(|d| d.kind).collect();
    assert_eq!(kinds, [kind], "{c}");
    let d = &diagnoses[0];
    assert_eq!(d.likely, likely, "{c}");
    assert_eq!(d.sentence.starts_with("likely "), likely, "{c}");
    let report = c.to_string();
    let (verdict, rest) = report
        .split_once("\ndiagnosis:\n")
        .expect("a diagnosis paragraph");
    assert!(verdict.contains(" violated: "), "{report}");
    assert!(
        !verdict.contains("minimal scenario"),
        "right after the violations: {report}"
    );
    let first_words: String = d.sentence.split(' ').take(4).collect::<Vec<_>>().join(" ");
    assert!(rest.starts_with(&format!("  - {first_words}")), "{report}");
}

/// The counterexample has no diagnosis and its report no diagnosis paragraph (before those of
/// the other invariants' counterexamples).
fn assert_undiagnosed(c: &Counterexample) {
    assert_eq!(c.diagnoses(), [], "{c}");
    let report = c.to_string();
    let own = report
        .split("\neffectively-once check also failed: ")
        .next()
        .expect("split yields one part");
    assert!(!own.contains("\ndiagnosis:\n"), "{c}");
}

fn pipeline_verifier() -> Verifier {
    let mut v = notification_verifier();
    for output in pipeline::outputs() {
        v.output_topic(output);
    }
    v
}

#[test]
fn a_new_group_left_at_latest_is_diagnosed_from_the_reset_the_simulator_recorded() {
    let c = counterexample(check_at_least_once(&verifier(), latest_start::instance));
    assert_eq!(c.violation().invariant, "at-least-once", "{c}");
    assert_diagnosed(&c, DiagnosisKind::StartedAtLatest, false);
    let report = c.to_string();
    assert!(
        report.contains("from 1 (no committed offset: auto.offset.reset=latest)"),
        "the timeline says where the start came from: {report}"
    );
    snapshot("latest_start", &report);
    // The picture says it too.
    let page = std::fs::read_to_string(c.picture().expect("a picture was written")).unwrap();
    let sentence = &c.diagnoses()[0].sentence;
    assert!(
        page.contains("<h3>diagnosis</h3>") && page.contains("a new group starting at `latest`"),
        "{sentence}"
    );
}

#[test]
fn committing_the_records_own_offset_is_diagnosed() {
    let c = counterexample(check_at_least_once(
        &verifier(),
        commit_own_offset::instance,
    ));
    assert_diagnosed(&c, DiagnosisKind::CommittedOwnOffset, true);
    snapshot("commit_own_offset", &c.to_string());
}

#[test]
fn a_chunk_committed_across_a_rebalance_is_diagnosed_as_a_commit_moving_backwards() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        stream_loop::instance(ctx, Loop::ChunksAcrossRebalance)
    }));
    assert_diagnosed(&c, DiagnosisKind::CommitMovedBackwards, false);
}

#[test]
fn an_offset_stored_before_a_failed_email_that_was_only_logged_is_diagnosed() {
    let c = counterexample(check_at_least_once(
        &verifier(),
        store_before_effect::instance,
    ));
    assert_diagnosed(&c, DiagnosisKind::StoredBeforeFailedEffect, false);
    assert!(c.diagnoses()[0].sentence.contains("swallowed"), "{c}");
    snapshot("store_before_effect", &c.to_string());
}

#[test]
fn librdkafkas_store_at_receive_committed_on_close_over_a_failed_email_is_likely_diagnosed() {
    let c = counterexample(check_at_least_once(&verifier(), auto_commit_service));
    assert_diagnosed(&c, DiagnosisKind::StoredBeforeFailedEffect, true);
    let sentence = &c.diagnoses()[0].sentence;
    assert!(sentence.contains("enable.auto.offset.store"), "{c}");
    // The consumer returned the error: it was not swallowed, closing committed it.
    assert!(!sentence.contains("swallowed"), "{c}");
    assert!(sentence.contains("closing it committed"), "{c}");
}

#[test]
fn stored_offsets_that_nothing_commits_are_diagnosed() {
    let c = counterexample(check_at_least_once(
        &verifier(),
        store_without_commit::instance,
    ));
    assert_diagnosed(&c, DiagnosisKind::StoredNeverCommitted, true);
    snapshot("store_without_commit", &c.to_string());
}

#[test]
fn a_dedup_mark_written_after_the_email_is_diagnosed() {
    let c = counterexample(check_effectively_once(
        &verifier(),
        dedup_after_effect_service,
    ));
    assert_diagnosed(&c, DiagnosisKind::DedupMarkOutsideTransaction, true);
}

#[test]
fn a_dedup_mark_in_a_store_transaction_of_its_own_is_diagnosed() {
    let c = counterexample(check_effectively_once(
        &store_verifier(INBOX, INBOX_QUERY),
        |ctx| inbox_service(ctx, Mark::SeparateTransaction),
    ));
    assert_diagnosed(&c, DiagnosisKind::DedupMarkOutsideTransaction, true);
}

#[test]
fn an_audit_record_sent_by_a_plain_producer_beside_the_transaction_is_diagnosed() {
    let c = counterexample(check_exactly_once(
        &pipeline_verifier(),
        audit_outside_txn::instance,
    ));
    assert_eq!(c.violation().invariant, "exactly-once", "{c}");
    assert_diagnosed(&c, DiagnosisKind::OutputOutsideTransaction, false);
    snapshot("audit_outside_txn", &c.to_string());
}

#[test]
fn other_bugs_get_no_diagnosis() {
    // Losses and duplicates of the crash windows no listed anti-pattern explains.
    for c in [
        counterexample(check_at_least_once(&verifier(), commit_before_service)),
        counterexample(check_effectively_once(&verifier(), commit_after_service)),
        counterexample(check_effectively_once(
            &store_verifier(TASK_ROW, TASK_ROW_QUERY),
            |ctx| task_table_service(ctx, Write::PlainInsert),
        )),
        counterexample(check_effectively_once(&verifier(), poison_panics_service)),
        // Transactional outputs, offsets committed outside: not outputs outside it.
        counterexample(check_exactly_once(&pipeline_verifier(), |ctx| {
            pipeline::instance(ctx, Wiring::ConsumerCommit)
        })),
        // No transaction at all.
        counterexample(check_exactly_once(&pipeline_verifier(), |ctx| {
            pipeline::instance(ctx, Wiring::NonTransactional)
        })),
    ] {
        assert_undiagnosed(&c);
    }
}

#[test]
fn records_committed_as_they_complete_lose_one_undiagnosed_and_commit_backwards_after_a_pause() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        stream_loop::instance(ctx, Loop::ConcurrentCommitEach)
    }));
    // The loss: a later record's commit covered one still in flight, no listed pattern.
    assert_eq!(c.violation().invariant, "at-least-once", "{c}");
    assert_undiagnosed(&c);
    // The liveness failure: a record handed over before a 25 h freeze completed after the
    // group moved on, and its commit took the group's offset back.
    let other = &c.other_violations()[0];
    assert_eq!(other.violation().invariant, "liveness", "{c}");
    assert_diagnosed(other, DiagnosisKind::CommitMovedBackwards, false);
}

#[test]
fn correct_consumers_pass_with_reports_unchanged() {
    let passed = check_at_least_once(&verifier(), commit_after_service).expect("passes");
    let report = passed.to_string();
    assert!(
        report.starts_with(
            "effectively-once check passed: at-least-once held in 256 cases (seed 0; "
        ) && !report.contains('\n'),
        "{report}"
    );
    check_effectively_once(&verifier(), idempotency_key_service).expect("passes");
}
