//! The public bug zoo on real brokers: each buggy consumer's minimal counterexample, found on
//! the simulator, breaks the same invariant on the broker; correct consumers pass sampled
//! scenarios with faults on both (the differential test).

use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::{FaultKind, Semantics};

use crate::fixtures::dedup_same_transaction::{INBOX, INBOX_QUERY, Mark};
use crate::fixtures::services::*;
use crate::fixtures::state_check::{NOTIFIED, NOTIFIED_QUERY, Transition};
use crate::fixtures::upsert_natural_key::{TASK_ROW, TASK_ROW_QUERY, Write};
use crate::support::*;

/// Every buggy consumer of the zoo whose minimal scenario a broker can run.
fn the_buggy_zoo_agrees(provider: &BrokerProvider) {
    use Semantics::*;
    assert_broker_agrees(
        provider,
        AtLeastOnce,
        &email_verifier(),
        commit_before_service,
    );
    assert_broker_agrees(
        provider,
        EffectivelyOnce,
        &email_verifier(),
        commit_after_service,
    );
    assert_broker_agrees(
        provider,
        EffectivelyOnce,
        &email_verifier(),
        dedup_after_effect_service,
    );
    assert_broker_agrees(
        provider,
        EffectivelyOnce,
        &store_verifier(INBOX, INBOX_QUERY),
        |ctx| inbox_service(ctx, Mark::SeparateTransaction),
    );
    assert_broker_agrees(
        provider,
        EffectivelyOnce,
        &store_verifier(TASK_ROW, TASK_ROW_QUERY),
        |ctx| task_table_service(ctx, Write::PlainInsert),
    );
    assert_broker_agrees(
        provider,
        EffectivelyOnce,
        &store_verifier(NOTIFIED, NOTIFIED_QUERY),
        |ctx| state_check_service(ctx, Transition::Unconditional),
    );
    // Liveness: bounded restarts and a short time limit, so that the broker run ends in
    // seconds. (Not a shorter liveness bound: how long a group takes to catch up depends on
    // session timeouts, which a real broker run caps at 2 s.)
    let mut v = email_verifier();
    v.simulation(|sim| {
        sim.max_restarts(2);
    });
    assert_broker_agrees(provider, EffectivelyOnce, &v, poison_panics_service);
    let mut v = email_verifier();
    v.faults(&[FaultKind::Crash, FaultKind::PoisonRecord])
        .simulation(|sim| {
            sim.time_limit(Duration::from_secs(20))
                .settle(Duration::from_secs(1));
        });
    assert_broker_agrees(provider, EffectivelyOnce, &v, poison_awaits_forever_service);
}

#[test]
fn the_buggy_zoo_breaks_the_same_invariants_on_the_mock_cluster() {
    the_buggy_zoo_agrees(&BrokerProvider::MockCluster);
}

#[test]
fn the_buggy_zoo_breaks_the_same_invariants_on_the_container() {
    the_buggy_zoo_agrees(&require_container!());
}

/// Correct consumers pass sampled scenarios on both.
fn correct_consumers_agree(provider: &BrokerProvider) {
    use Semantics::*;
    assert_sampled_scenarios_agree(
        provider,
        EffectivelyOnce,
        &email_verifier(),
        2,
        idempotency_key_service,
    );
    assert_sampled_scenarios_agree(
        provider,
        AtLeastOnce,
        &email_verifier(),
        2,
        commit_after_service,
    );
    assert_sampled_scenarios_agree(
        provider,
        EffectivelyOnce,
        &store_verifier(INBOX, INBOX_QUERY),
        2,
        |ctx| inbox_service(ctx, Mark::SameTransaction),
    );
}

#[test]
fn correct_consumers_pass_the_same_scenarios_on_the_mock_cluster() {
    correct_consumers_agree(&BrokerProvider::MockCluster);
}

#[test]
fn correct_consumers_pass_the_same_scenarios_on_the_container() {
    correct_consumers_agree(&require_container!());
}

/// The assertions' path: the search on the simulator, the verdict confirmed on the broker.
#[test]
fn a_check_with_a_broker_confirms_its_verdict_there() {
    let mut v = email_verifier();
    v.broker(Some(BrokerProvider::MockCluster)).broker_cases(1);
    let c = counterexample(effectively_once::check_effectively_once(
        &v,
        commit_after_service,
    ));
    let report = c.to_string();
    assert!(
        report.contains("on the simulator and on librdkafka's mock cluster: the verdicts agree"),
        "{report}"
    );
    let passed = effectively_once::check_effectively_once(&v, idempotency_key_service)
        .unwrap_or_else(|e| panic!("{e}"));
    let report = passed.to_string();
    println!("{report}");
    assert!(
        report.contains("1 of 1 sampled scenarios agreed on librdkafka's mock cluster"),
        "{report}"
    );
}
