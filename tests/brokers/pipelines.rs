//! Consume-transform-produce pipelines on brokers: the producer side (sends, transactions,
//! offsets sent with the transaction) on librdkafka.

use effectively_once::broker::BrokerProvider;
use effectively_once::check::compare_on_broker;
use effectively_once::{FaultKind, Semantics, Verifier};

use crate::fixtures::pipeline::{self, Wiring};
use crate::support::*;

fn pipeline_verifier() -> Verifier {
    let mut v = crate::zoo_support::notification_verifier();
    for output in pipeline::outputs() {
        v.output_topic(output);
    }
    v
}

/// The non-transactional pipeline's duplicate (a crash between its sends and its commit) is
/// a duplicate on every broker: its outputs are plain records.
fn a_non_transactional_pipeline_duplicates(provider: &BrokerProvider) {
    assert_broker_agrees(
        provider,
        Semantics::ExactlyOnce,
        &pipeline_verifier(),
        |ctx| pipeline::instance(ctx, Wiring::NonTransactional),
    );
}

#[test]
fn a_non_transactional_pipeline_duplicates_on_the_mock_cluster() {
    a_non_transactional_pipeline_duplicates(&BrokerProvider::MockCluster);
}

#[test]
fn a_non_transactional_pipeline_duplicates_on_the_container() {
    a_non_transactional_pipeline_duplicates(&require_container!());
}

/// The transactional pipeline through crashes: exactly-once on the simulator; on a broker
/// whose transactions fall short, not checkable there (never a consumer bug).
fn the_transactional_pipeline(provider: &BrokerProvider, v: &Verifier, count: usize) {
    let scenarios = effectively_once::check::broker_scenarios(v, provider, count);
    for scenario in &scenarios {
        let compared = compare_on_broker(Semantics::ExactlyOnce, v, provider, scenario, |ctx| {
            pipeline::instance(ctx, Wiring::Transactional)
        })
        .unwrap();
        println!("{scenario}\n{compared}");
        assert!(compared.simulator.violations.is_empty(), "{compared}");
        assert_eq!(compared.agrees(), Some(true), "{compared}");
    }
}

fn with_crashes() -> Verifier {
    let mut v = pipeline_verifier();
    v.faults(&[FaultKind::Crash]);
    v
}

/// The mock cluster stores no transactional offsets, so the group never catches up: the run
/// ends at its time limit (20 s here), and liveness is not checkable there.
#[test]
fn the_transactional_pipeline_on_the_mock_cluster() {
    let mut v = with_crashes();
    v.simulation(|sim| {
        sim.time_limit(std::time::Duration::from_secs(20));
    });
    the_transactional_pipeline(&BrokerProvider::MockCluster, &v, 1);
}

#[test]
fn the_transactional_pipeline_on_the_container() {
    the_transactional_pipeline(&require_container!(), &with_crashes(), 2);
}
