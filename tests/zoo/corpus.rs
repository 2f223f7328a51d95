//! Consumers written the way real programs are (`fixtures/corpus`): each bug is caught and
//! its correct twin passes.

use effectively_once::check::{check_at_least_once, run_scenario};
use effectively_once::scenario::{Event, Scenario, StreamEvent};
use effectively_once::{Semantics, Verifier};

use crate::fixtures::corpus::forwarder::{self, Order};
use crate::support::*;

fn forwarder_verifier() -> Verifier {
    let mut v = notification_verifier();
    for output in forwarder::outputs() {
        v.output_topic(output);
    }
    v
}

/// Two events, the first a poison record, one instance, no fault.
fn poison_then_event() -> Scenario {
    let event = |n: usize, poison| StreamEvent {
        event: Event {
            event_id: format!("evt-{n}"),
            key: "k0".into(),
            payload: serde_json::json!({ "value": n }),
        },
        produced_twice: false,
        poison,
        aborted_first: false,
    };
    Scenario {
        seed: 3,
        partitions: 1,
        instances: 1,
        late_joins: Vec::new(),
        events: vec![event(0, true), event(1, false)],
        faults: Vec::new(),
    }
}

#[test]
fn a_verbatim_copy_of_a_poison_record_is_attributed_to_it_not_a_phantom() {
    let run = run_scenario(
        Semantics::AtLeastOnce,
        &forwarder_verifier(),
        &poison_then_event(),
        |ctx| forwarder::instance(ctx, Order::CommitAfterAcks),
    )
    .unwrap();
    assert_eq!(run.violations, [], "{}", run.outcome.history());
    let copies = run
        .ledger
        .observed(forwarder::DOWNSTREAM[0])
        .expect("observed")
        .expect("read");
    assert_eq!(copies.get("evt-0"), Some(&1), "{copies:?}");
}

#[test]
fn the_forwarder_that_commits_after_the_acks_is_at_least_once() {
    let passed = check_at_least_once(&forwarder_verifier(), |ctx| {
        forwarder::instance(ctx, Order::CommitAfterAcks)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(passed.faults_fired > passed.cases as u64 / 2, "{passed}");
}

#[test]
fn the_forwarder_that_commits_first_loses_records() {
    let c = counterexample(check_at_least_once(&forwarder_verifier(), |ctx| {
        forwarder::instance(ctx, Order::CommitFirst)
    }));
    assert_eq!(c.violation().invariant, "at-least-once", "{c}");
}
