//! The notification service as the binary it ships: `crates/notification-consumer` built by
//! `cargo build` (plain rdkafka, nothing of the kit linked in), verified as a black box with
//! its own environment variables (`KAFKA_BROKERS`, `EMAIL_API_URL`, ...), the same verdicts as
//! its simulated tests (`crates/notification-consumer/tests/effectively_once.rs`): with
//! idempotency keys effectively once, without them a redelivery emails twice.

use effectively_once::Semantics;
use effectively_once::check::{BlackBox, BlackBoxError};

/// The service's binary with its own variables set from the kit's addresses.
fn service(idempotency_keys: bool) -> BlackBox {
    // Built once: the second build finds nothing to do.
    let mut service = BlackBox::cargo_bin("notification-consumer", "notification-consumer")
        .unwrap_or_else(|e| panic!("{e}"));
    service
        .env("KAFKA_BROKERS", "{bootstrap}")
        .env("EMAIL_API_URL", "{effects_url}/effects/email")
        .env("TASK_TOPIC", "{topic}")
        .env("NOTIFICATION_GROUP", "{group}")
        .env("EMAIL_IDEMPOTENCY_KEYS", idempotency_keys.to_string());
    service
}

#[test]
fn the_shipped_binary_holds_effectively_once_with_idempotency_keys() {
    let passed = service(true)
        .check(Semantics::EffectivelyOnce)
        .unwrap_or_else(|e| panic!("{e}"));
    // The pilot and, for 3 events, 4 faults at each of 3 effect calls and at each commit.
    assert!(passed.runs >= 1 + 3 * 4 + 3 * 4, "{passed}");
    println!("{passed}");
}

#[test]
fn without_idempotency_keys_the_shipped_binary_emails_a_redelivered_event_twice() {
    let error = service(false)
        .check(Semantics::EffectivelyOnce)
        .expect_err("a crash between the email and the commit duplicates it");
    let BlackBoxError::Violated(counterexample) = error else {
        panic!("not a violation: {error}");
    };
    let report = counterexample.to_string();
    assert!(
        counterexample
            .violation
            .summary
            .contains("(0 lost, 1 duplicated)"),
        "{report}"
    );
    assert_eq!(
        counterexample.fault, "CrashAfter at effect call 1 of evt-0",
        "{report}"
    );
    // Shrunk to the one event the fault hits.
    assert_eq!(counterexample.events, ["evt-0"], "{report}");
    assert_eq!(counterexample.shrunk_from, 3, "{report}");
    assert!(report.contains("(shrunk from 3 events)"), "{report}");
    // The binary's own output is in the report.
    assert!(report.contains("emailed evt-0"), "{report}");
    // Still at-least-once: nothing is lost at any crash point.
    let held = service(false)
        .check(Semantics::AtLeastOnce)
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{held}");
}
