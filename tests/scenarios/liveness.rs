//! The liveness bound counts from the end of the last disturbance, however faults stack.

use std::time::Duration;

use effectively_once::check::run_scenario;
use effectively_once::scenario::{Event, Scenario, ScenarioFault, StreamEvent};
use effectively_once::{Fault, Operation, Semantics, Verifier};

use crate::fixtures::notification::{self, EMAIL, TOPIC};
use crate::fixtures::services::commit_after_service;

fn event(n: usize) -> StreamEvent {
    StreamEvent {
        event: Event {
            event_id: format!("evt-{n}"),
            key: format!("k{n}"),
            payload: serde_json::json!({ "n": n }),
        },
        produced_twice: false,
        poison: false,
        aborted_first: false,
    }
}

#[test]
fn a_correct_consumer_frozen_twice_25h_on_the_same_recv_is_live() {
    let freeze = ScenarioFault {
        event: 0,
        operation: Operation::Recv,
        occurrence: 1,
        fault: Fault::Freeze(Duration::from_secs(25 * 3600)),
    };
    let scenario = Scenario {
        seed: 0,
        partitions: 1,
        instances: 1,
        late_joins: Vec::new(),
        events: (0..3).map(event).collect(),
        faults: vec![freeze.clone(), freeze],
    };
    let mut v = Verifier::default();
    v.topic(TOPIC)
        .encode(notification::encode)
        .effect_sink(EMAIL)
        .persist_failures(false);
    let run = run_scenario(Semantics::AtLeastOnce, &v, &scenario, commit_after_service).unwrap();
    let history = run.outcome.history();
    let fired = history
        .events()
        .filter(|e| {
            matches!(
                e,
                effectively_once::history::HistoryEvent::FaultInjected { .. }
            )
        })
        .count();
    assert_eq!(fired, 2, "{history}");
    assert!(run.violations.is_empty(), "{:?}\n{history}", run.violations);
}
