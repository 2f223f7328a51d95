//! Helpers shared by the zoo's tests.
#![allow(dead_code)]

use effectively_once::{CheckError, Counterexample, FaultKind, Passed, Verifier};

use crate::fixtures::notification::{self, EMAIL, TOPIC};

/// The default verifier, pointed at the notification service's topic and payload; it does not
/// save failures (these tests expect them).
pub fn notification_verifier() -> Verifier {
    let mut v = Verifier::default();
    v.topic(TOPIC)
        .encode(notification::encode)
        .persist_failures(false);
    v
}

/// Effects counted on the email sink.
pub fn verifier() -> Verifier {
    let mut v = notification_verifier();
    v.effect_sink(EMAIL);
    v
}

/// Effects read off the durable store with `query`.
pub fn store_verifier(effect: &str, query: &str) -> Verifier {
    let mut v = notification_verifier();
    v.store_effect(effect, query);
    v
}

pub fn counterexample(result: Result<Passed, CheckError>) -> Box<Counterexample> {
    match result {
        Err(CheckError::Violated(c)) => c,
        other => panic!("expected a counterexample, got {other:?}"),
    }
}

/// Compares the report with its snapshot, `tests/zoo/snapshots/{name}.snap`, through insta:
/// `cargo insta review` (or `INSTA_UPDATE=always cargo test`) accepts a changed one; under
/// `CI=true` a difference fails the test and nothing is written.
pub fn snapshot(name: &str, report: &str) {
    // insta ignores whitespace at the end of a snapshot (and reads `\r\n` as `\n`, and a
    // snapshot that differs only in leading newlines passes as a legacy format): keep the
    // report's own ends exact, as the byte-for-byte comparison before it did.
    assert!(
        report.strip_suffix('\n') == Some(report.trim()) && !report.contains('\r'),
        "a report has no surrounding whitespace but one final newline, and no carriage return:\n{report:?}"
    );
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/tests/zoo/snapshots"),
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!(name, report);
    });
}

/// The minimal scenario is one event and one fault, and the violation names that event.
pub fn assert_single_window(c: &Counterexample, invariant: &str, marker: &str) {
    assert_eq!(c.violation().invariant, invariant, "{c}");
    assert_eq!(
        (c.scenario.events.len(), c.scenario.faults.len()),
        (1, 1),
        "minimal: {c}"
    );
    assert_eq!(c.violation().event_ids, ["evt-0"], "{c}");
    assert!(c.violation().details[0].ends_with(marker), "{c}");
}

/// Passes `cases` cases with every fault kind (producer duplicates included), most of them
/// with a fault that fired.
pub fn assert_passes_with_every_fault_kind(
    mut v: Verifier,
    result: impl FnOnce(&Verifier) -> Result<Passed, CheckError>,
) {
    v.faults(&FaultKind::ALL);
    let passed = result(&v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(passed.cases, 256, "proptest's default case count");
    assert!(passed.faults_fired > passed.cases as u64 / 2, "{passed}");
}
