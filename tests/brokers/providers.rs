//! Each provider runs the same 100-event scenario with three crashes and agrees with the
//! simulator; an external cluster gets fresh topics and is cleaned up.

use std::time::Instant;

use effectively_once::broker::{BrokerError, BrokerProvider};
use effectively_once::check::{compare_on_broker, run_scenario};
use effectively_once::{Error, Semantics};

use crate::fixtures::scenarios::hundred_events_three_crashes;
use crate::fixtures::services::{commit_after_service, idempotency_key_service};
use crate::support::*;

fn hundred_events_agree(provider: &BrokerProvider) {
    let scenario = hundred_events_three_crashes();
    let v = email_verifier();
    // Warm the self-check cache, so the wall time below is the run's alone.
    provider.self_check().unwrap();
    let compared = compare_on_broker(
        Semantics::EffectivelyOnce,
        &v,
        provider,
        &scenario,
        idempotency_key_service,
    )
    .unwrap();
    println!("{compared}");
    assert_eq!(compared.agrees(), Some(true), "{compared}");
    let broker = compared.broker.as_ref().unwrap();
    assert!(broker.violations.is_empty(), "{compared}");
    let crashes = broker
        .outcome
        .history()
        .to_string()
        .matches("CRASHED")
        .count();
    assert_eq!(crashes, 3, "{}", broker.outcome.history());
    let started = Instant::now();
    run_scenario(
        Semantics::EffectivelyOnce,
        &v,
        &scenario,
        idempotency_key_service,
    )
    .unwrap();
    println!(
        "100 events, 3 crashes: {:.2}s on {provider}, {:.3}s on the simulator",
        compared.broker_wall.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_hundred_events_with_three_crashes_on_the_mock_cluster() {
    hundred_events_agree(&BrokerProvider::MockCluster);
}

#[test]
fn a_hundred_events_with_three_crashes_on_the_container() {
    hundred_events_agree(&require_container!());
}

#[test]
fn an_external_cluster_gets_fresh_topics_and_is_cleaned_up() {
    // A container stands in for the cluster someone named.
    let cluster = require_container!().start(&[]).unwrap();
    let external = BrokerProvider::External {
        bootstrap: cluster.bootstrap().to_string(),
    };
    let mut v = email_verifier();
    v.broker(Some(external.clone()));
    let scenario = effectively_once::check::broker_scenarios(&v, &external, 1).remove(0);
    let run = run_scenario(Semantics::AtLeastOnce, &v, &scenario, commit_after_service).unwrap();
    assert!(run.violations.is_empty(), "{:?}", run.violations);
    // The run deleted its topic: the same scenario runs again.
    run_scenario(Semantics::AtLeastOnce, &v, &scenario, commit_after_service).unwrap();
    // A topic that exists is refused, not reused.
    let kept = external.start(&[("task-events".to_string(), 1)]).unwrap();
    match run_scenario(Semantics::AtLeastOnce, &v, &scenario, commit_after_service) {
        Err(Error::Broker(BrokerError::TopicExists(topic))) => assert_eq!(topic, "task-events"),
        other => panic!("expected TopicExists, got {other:?}"),
    }
    drop(kept);
}
