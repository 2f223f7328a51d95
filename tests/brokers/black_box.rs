//! A consumer program verified as a black box on a broker container instead of the mock
//! cluster: the notification service's shipped binary (plain rdkafka) through the wire proxy,
//! a fresh container per run. The proxy rewrites that broker's addresses and decodes its
//! answers; the verdicts are the mock cluster's (`tests/rdkafka_binary/`).

use effectively_once::Semantics;
use effectively_once::check::{BlackBox, BlackBoxError};

use crate::support::require_container;

/// The shipped binary, told the kit's addresses under its own variable names.
fn service(idempotency_keys: bool) -> BlackBox {
    let mut service = BlackBox::cargo_bin("notification-consumer", "notification-consumer")
        .unwrap_or_else(|e| panic!("{e}"));
    service
        .env("KAFKA_BROKERS", "{bootstrap}")
        .env("EMAIL_API_URL", "{effects_url}/effects/email")
        .env("TASK_TOPIC", "{topic}")
        .env("NOTIFICATION_GROUP", "{group}")
        .env("EMAIL_IDEMPOTENCY_KEYS", idempotency_keys.to_string())
        .events(1)
        .at_once(3)
        .picture(false);
    service
}

#[test]
fn on_the_container_a_shipped_binary_is_verified_through_the_wire_proxy() {
    let provider = require_container!();
    // Without idempotency keys, a crash between the email and the commit emails twice.
    let error = service(false)
        .broker(provider.clone())
        .check(Semantics::EffectivelyOnce)
        .expect_err("a redelivery emails twice");
    let BlackBoxError::Violated(counterexample) = error else {
        panic!("not a violation: {error}");
    };
    assert_eq!(
        counterexample.fault, "CrashAfter at effect call 1 of evt-0",
        "{counterexample}"
    );
    assert!(
        counterexample
            .violation
            .summary
            .contains("(0 lost, 1 duplicated)"),
        "{counterexample}"
    );
    // The commit after the restart was seen on the wire, from the container.
    assert!(
        counterexample
            .timeline
            .contains("commit (seen on the wire) task-events[0]=1 ok"),
        "{counterexample}"
    );
    // And nothing is lost at any crash point: no false alarm on this broker either.
    let held = service(false)
        .broker(provider)
        .check(Semantics::AtLeastOnce)
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{held}");
}

/// The Python consumer that commits its offsets in transactions (with an output record), on a
/// broker that stores transactional offsets (the mock cluster does not, and is refused):
/// nothing is lost at any crash point, and a crash between the email and the transaction's
/// commit emails again.
#[test]
fn on_the_container_a_transactional_python_consumer_is_judged_through_its_transactions() {
    let provider = require_container!();
    let Some(python) = std::env::var("EFFECTIVELY_ONCE_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
    else {
        if std::env::var_os("EFFECTIVELY_ONCE_REQUIRE_PYTHON").is_some() {
            panic!("EFFECTIVELY_ONCE_REQUIRE_PYTHON is set but EFFECTIVELY_ONCE_PYTHON is not");
        }
        crate::support::skipped("set EFFECTIVELY_ONCE_PYTHON to a python with confluent-kafka");
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/python/transactional_email.py"
    );
    let mut consumer = BlackBox::command([python.as_str(), "-u", script]);
    consumer
        .broker(provider)
        .events(1)
        .at_once(3)
        .picture(false)
        .encode(|event| {
            format!(
                r#"{{"data":{{"email":"owner@example.com","task_id":"t"}},"event_id":"{}","type":"task.created"}}"#,
                event.event_id
            )
            .into_bytes()
        });
    let held = consumer
        .check(Semantics::AtLeastOnce)
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{held}");
    let error = consumer
        .check(Semantics::EffectivelyOnce)
        .expect_err("a crash between the email and the transaction emails again");
    let BlackBoxError::Violated(counterexample) = error else {
        panic!("not a violation: {error}");
    };
    assert!(
        counterexample
            .violation
            .summary
            .contains("(0 lost, 1 duplicated)"),
        "{counterexample}"
    );
    assert!(
        counterexample
            .timeline
            .contains("transaction \"notifier-1\" committed"),
        "{counterexample}"
    );
}
