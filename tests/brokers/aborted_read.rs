//! The aborted-read check on brokers: an upstream transaction writes an event and aborts, then
//! writes it again and commits. Kafka hides the aborted copy from `read_committed` consumers.

use effectively_once::broker::BrokerProvider;
use effectively_once::broker::self_check::Capability;
use effectively_once::check::compare_on_broker;
use effectively_once::{FaultKind, Semantics, Verifier};

use crate::fixtures::services::{idempotency_key_service, read_uncommitted_service};
use crate::support::*;

fn aborted_upstream() -> Verifier {
    let mut v = email_verifier();
    v.faults(&[FaultKind::Crash, FaultKind::AbortedUpstream]);
    v
}

/// The simulator's minimal scenario for the read_uncommitted consumer: one event whose first
/// copy was aborted.
fn one_aborted_write() -> effectively_once::scenario::Scenario {
    let c = counterexample(effectively_once::check_effectively_once(
        &aborted_upstream(),
        read_uncommitted_service,
    ));
    assert!(c.scenario.events[0].aborted_first, "{c}");
    c.scenario
}

#[test]
fn the_aborted_read_check_on_the_container() {
    let provider = require_container!();
    let scenario = one_aborted_write();
    let hides = provider
        .self_check()
        .unwrap()
        .shortfall(Capability::HidesAbortedRecords)
        .is_none();
    // A read_committed consumer: correct on Kafka and on the simulator. A broker that hands it
    // the aborted copy (Tansu) is reported: not checkable on this broker, with the finding.
    let compared = compare_on_broker(
        Semantics::EffectivelyOnce,
        &aborted_upstream(),
        &provider,
        &scenario,
        idempotency_key_service,
    )
    .unwrap();
    println!("{compared}");
    assert!(compared.simulator.violations.is_empty(), "{compared}");
    let broker = compared.broker.as_ref().unwrap();
    assert!(broker.violations.is_empty(), "{compared}");
    let undecided = &broker.not_checkable;
    if hides {
        assert!(undecided.is_empty(), "{compared}");
    } else {
        assert_eq!(undecided.len(), 1, "{compared}");
        assert_eq!(undecided[0].violation.invariant, "no aborted read");
        assert!(
            undecided[0].violation.details[0]
                .contains("although it reads read_committed: the broker handed it out"),
            "{compared}"
        );
        assert!(
            undecided[0]
                .reason
                .contains("read_committed hides aborted records")
        );
    }
    assert_eq!(compared.agrees(), Some(true));

    // A read_uncommitted consumer acts on the aborted copy on any broker: its own bug.
    let compared = compare_on_broker(
        Semantics::EffectivelyOnce,
        &aborted_upstream(),
        &provider,
        &scenario,
        read_uncommitted_service,
    )
    .unwrap();
    println!("{compared}");
    let broker = compared.broker.as_ref().unwrap();
    assert_eq!(
        broker.violations[0].invariant, "no aborted read",
        "{compared}"
    );
    assert_eq!(compared.agrees(), Some(true), "{compared}");
}

#[test]
fn the_mock_cluster_cannot_run_transactional_input() {
    let compared = compare_on_broker(
        Semantics::EffectivelyOnce,
        &aborted_upstream(),
        &BrokerProvider::MockCluster,
        &one_aborted_write(),
        idempotency_key_service,
    )
    .unwrap();
    println!("{compared}");
    assert_eq!(compared.agrees(), None);
    let why = compared.broker.unwrap_err();
    assert!(why.contains("writes no markers"), "{why}");
}
