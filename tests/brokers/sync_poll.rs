//! The synchronous poll loop (`fixtures/corpus/sync_poll.rs`, rdkafka's `BaseConsumer` API on
//! a thread of its own) on librdkafka's mock cluster: the same verdicts as on the simulator.

use effectively_once::Semantics;
use effectively_once::broker::BrokerProvider;

use crate::fixtures::corpus::sync_poll::{self, Order};
use crate::support::*;

#[test]
fn the_sync_poll_loop_that_commits_before_its_email_loses_it_on_the_mock_cluster_too() {
    assert_broker_agrees(
        &BrokerProvider::MockCluster,
        Semantics::EffectivelyOnce,
        &email_verifier(),
        |ctx| sync_poll::instance(ctx, Order::CommitFirst),
    );
}

#[test]
fn the_sync_poll_loop_that_commits_after_its_idempotent_email_passes_on_the_mock_cluster_too() {
    assert_sampled_scenarios_agree(
        &BrokerProvider::MockCluster,
        Semantics::EffectivelyOnce,
        &email_verifier(),
        2,
        |ctx| sync_poll::instance(ctx, Order::EffectFirst),
    );
}
