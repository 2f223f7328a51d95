//! Broker restarts ([`Fault::BrokerRestart`]) on librdkafka's mock cluster and on a container,
//! which the kit takes down and brings back with their state kept: librdkafka lives through
//! them as the simulator says (`tests/conformance/broker_restart.rs`), and the zoo's consumers
//! get the same verdicts through restarts on all three. A cluster the kit did not start
//! refuses the fault, clearly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use effectively_once::broker::{BrokerError, BrokerProvider};
use effectively_once::check::compare_on_broker;
use effectively_once::history::HistoryEvent;
use effectively_once::{
    Anchor, Error, Fault, FaultSchedule, InputRecord, Operation, Outcome, Semantics, Simulation,
};

use crate::fixtures::commit_each;
use crate::fixtures::scenarios::twelve_events_three_restarts;
use crate::fixtures::services::{commit_after_service, idempotency_key_service};
use crate::support::*;

/// The outage, the longest the kit plays on a real broker. Outage 500 ms vs session 6 s (the
/// kit's cap in runs with restarts): the first heartbeat after the restart came 0.5 to 1.5 s
/// after the last one before it on the mock cluster at load 7 on 2 cores (reconnect backoff,
/// then a coordinator lookup behind a fetch of at most 100 ms, up to three times), which
/// leaves at least 4.5 s of slack. With the former 2 s session one run in two lost its member
/// there (a 2.27 s gap, three lookups each behind a 500 ms fetch).
const DOWN: Duration = Duration::from_millis(500);

fn simulation(faults: FaultSchedule) -> Simulation {
    let mut b = Simulation::builder();
    b.topic("events", 1);
    for n in 0..3 {
        b.produce(InputRecord::new("events").payload(format!("e{n}")));
    }
    b.faults(faults).build().unwrap()
}

fn run(provider: Option<&BrokerProvider>, faults: FaultSchedule) -> (Outcome, Vec<String>) {
    let sim = simulation(faults);
    let notes = Arc::new(Mutex::new(Vec::new()));
    let seen = notes.clone();
    let factory = move |ctx| {
        let notes = seen.clone();
        commit_each::run(ctx, "restarts", "events", None, move |n| {
            notes.lock().unwrap().push(n)
        })
    };
    let outcome = match provider {
        Some(p) => sim.run_on(p, factory),
        None => sim.run(factory),
    }
    .unwrap();
    println!("{}", outcome.history());
    let notes = notes.lock().unwrap().clone();
    (outcome, notes)
}

/// The commits, without the recv errors (how many of those librdkafka reports varies).
fn commits(notes: &[String]) -> Vec<&str> {
    notes
        .iter()
        .filter(|n| !n.starts_with("recv "))
        .map(String::as_str)
        .collect()
}

fn lost_partitions(outcome: &Outcome) -> bool {
    outcome
        .history()
        .events()
        .any(|e| matches!(e, HistoryEvent::PartitionsRevoked { lost: true, .. }))
}

/// A restart while offset 1 is committed: the commit waits and goes through, the poll reports
/// the lost connection, the group stays as it was; on the simulator and on `provider`.
fn a_short_restart_holds_the_commit_and_keeps_the_group(provider: &BrokerProvider) {
    let faults = || {
        FaultSchedule::new().with(
            Anchor::on(Operation::CommitMessage).record(0, 1),
            Fault::BrokerRestart(DOWN),
        )
    };
    let (simulated, on_sim) = run(None, faults());
    let (real, on_real) = run(Some(provider), faults());
    for (outcome, notes) in [(&simulated, &on_sim), (&real, &on_real)] {
        assert_eq!(
            commits(notes),
            ["0@0 commit ok", "0@1 commit ok", "0@2 commit ok"],
            "{notes:?}"
        );
        // The lost connection is reported through the poll (librdkafka: one error per failed
        // connection attempt, the simulator: one).
        let errors = notes.len() - 3;
        assert!(errors >= 1, "{notes:?}");
        assert!(
            notes
                .iter()
                .filter(|n| n.starts_with("recv "))
                .all(|n| n.contains("BrokerTransportFailure") || n.contains("AllBrokersDown")),
            "{notes:?}"
        );
        assert!(!lost_partitions(outcome), "{}", outcome.history());
        assert_eq!(
            outcome.cluster().committed_offset("restarts", "events", 0),
            Some(3)
        );
        assert!(
            outcome
                .history()
                .events()
                .any(|e| *e == HistoryEvent::BrokerBack),
            "{}",
            outcome.history()
        );
    }
}

#[test]
fn a_short_restart_holds_the_commit_and_keeps_the_group_on_the_mock_cluster() {
    a_short_restart_holds_the_commit_and_keeps_the_group(&BrokerProvider::MockCluster);
}

#[test]
fn a_short_restart_holds_the_commit_and_keeps_the_group_on_the_container() {
    a_short_restart_holds_the_commit_and_keeps_the_group(&require_container!());
}

/// A restart before offset 1 is handed out: it comes once, after the broker is back.
fn a_restart_before_a_fetch_is_answered_delivers_the_record_once_after_it(
    provider: &BrokerProvider,
) {
    let faults = || {
        FaultSchedule::new().with(
            Anchor::on(Operation::Recv).record(0, 1),
            Fault::BrokerRestart(DOWN),
        )
    };
    for provider in [None, Some(provider)] {
        let (outcome, notes) = run(provider, faults());
        assert_eq!(
            commits(&notes),
            ["0@0 commit ok", "0@1 commit ok", "0@2 commit ok"],
            "{notes:?}"
        );
        assert!(notes.iter().any(|n| n.starts_with("recv ")), "{notes:?}");
        assert!(!lost_partitions(&outcome), "{}", outcome.history());
    }
}

#[test]
fn a_restart_before_a_fetch_is_answered_delivers_the_record_once_after_it_on_the_mock_cluster() {
    a_restart_before_a_fetch_is_answered_delivers_the_record_once_after_it(
        &BrokerProvider::MockCluster,
    );
}

#[test]
fn a_restart_before_a_fetch_is_answered_delivers_the_record_once_after_it_on_the_container() {
    a_restart_before_a_fetch_is_answered_delivers_the_record_once_after_it(&require_container!());
}

/// The zoo's consumers return recv errors: each restart makes them exit, and the kit restarts
/// them as a supervisor would. Committing after the effect stays at-least-once (nothing is
/// lost) and the idempotency key keeps it effectively-once, on the simulator and on `provider`.
fn consumers_that_exit_on_the_lost_connection_get_the_same_verdicts(
    provider: &BrokerProvider,
    instances: u32,
) {
    let scenario = twelve_events_three_restarts(instances);
    let v = email_verifier();
    for (semantics, compared) in [
        (
            Semantics::AtLeastOnce,
            compare_on_broker(
                Semantics::AtLeastOnce,
                &v,
                provider,
                &scenario,
                commit_after_service,
            ),
        ),
        (
            Semantics::EffectivelyOnce,
            compare_on_broker(
                Semantics::EffectivelyOnce,
                &v,
                provider,
                &scenario,
                idempotency_key_service,
            ),
        ),
    ] {
        let compared = compared.unwrap();
        println!("{semantics:?}: {compared}");
        assert_eq!(compared.agrees(), Some(true), "{compared}");
        let broker = compared.broker.as_ref().unwrap();
        assert!(broker.violations.is_empty(), "{compared}");
        let restarts = broker
            .outcome
            .history()
            .events()
            .filter(|e| {
                matches!(
                    e,
                    HistoryEvent::FaultInjected {
                        fault: Fault::BrokerRestart(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(restarts, 3, "{}", broker.outcome.history());
    }
}

#[test]
fn consumers_that_exit_on_the_lost_connection_get_the_same_verdicts_on_the_mock_cluster() {
    consumers_that_exit_on_the_lost_connection_get_the_same_verdicts(
        &BrokerProvider::MockCluster,
        2,
    );
}

#[test]
fn consumers_that_exit_on_the_lost_connection_get_the_same_verdicts_on_the_container() {
    // One instance: with two, Tansu's group wedged after the second restart in about one run
    // of three (no member was assigned a partition again; the run hit its time limit).
    consumers_that_exit_on_the_lost_connection_get_the_same_verdicts(&require_container!(), 1);
}

#[test]
fn brokers_the_kit_cannot_restart_and_outages_longer_than_a_session_are_refused() {
    let refused = |provider: &BrokerProvider, down| {
        let sim = simulation(FaultSchedule::new().with(
            Anchor::on(Operation::CommitMessage),
            Fault::BrokerRestart(down),
        ));
        match sim.run_on(provider, |ctx| {
            commit_each::run(ctx, "restarts", "events", None, |_| {})
        }) {
            Err(Error::Broker(BrokerError::Unsupported(why))) => why,
            other => panic!("expected Unsupported, got {other:?}"),
        }
    };
    // Refused before anything is started: nothing listens here.
    let external = BrokerProvider::External {
        bootstrap: "127.0.0.1:1".into(),
    };
    let why = refused(&external, DOWN);
    assert!(why.contains("only the brokers it started"), "{why}");
    let why = refused(&BrokerProvider::MockCluster, Duration::from_secs(3));
    assert!(why.contains("at most 500ms"), "{why}");
    // And the sampled scenarios for such brokers leave restarts out.
    let restarting = twelve_events_three_restarts(2);
    assert!(effectively_once::check::runs_on_a_broker(
        &restarting,
        &BrokerProvider::MockCluster
    ));
    assert!(!effectively_once::check::runs_on_a_broker(
        &restarting,
        &external
    ));
    let mut longer = restarting.clone();
    longer.faults[0].fault = Fault::BrokerRestart(Duration::from_secs(3));
    assert!(!effectively_once::check::runs_on_a_broker(
        &longer,
        &BrokerProvider::MockCluster
    ));
}

#[test]
fn stalls_longer_than_a_broker_run_can_wait_are_refused_and_left_out_of_its_scenarios() {
    // A 6-minute stall (as a max.poll.interval.ms breach has) takes 6 minutes of wall time.
    let sim = simulation(FaultSchedule::new().with(
        Anchor::on(Operation::Recv),
        Fault::Stall(Duration::from_secs(6 * 60)),
    ));
    match sim.run_on(&BrokerProvider::MockCluster, |ctx| {
        commit_each::run(ctx, "stalls", "events", None, |_| {})
    }) {
        Err(Error::Broker(BrokerError::Unsupported(why))) => {
            assert!(why.contains("stalls of up to 20s"), "{why}")
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    let mut stalled = twelve_events_three_restarts(2);
    stalled.faults[0].fault = Fault::Stall(Duration::from_secs(20));
    assert!(effectively_once::check::runs_on_a_broker(
        &stalled,
        &BrokerProvider::MockCluster
    ));
    stalled.faults[0].fault = Fault::Stall(Duration::from_secs(21));
    assert!(!effectively_once::check::runs_on_a_broker(
        &stalled,
        &BrokerProvider::MockCluster
    ));
}
