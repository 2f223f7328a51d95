//! BaseProducer and ThreadedProducer measured on librdkafka's mock cluster: each case of
//! `tests/conformance/base_producer_cases.rs` sees there what the simulator is held to.

use effectively_once::FaultSchedule;
use effectively_once::broker::BrokerProvider;

#[path = "../conformance/base_producer_cases.rs"]
mod cases;

use cases::{run, simulation};

fn mock() -> Option<&'static BrokerProvider> {
    Some(&BrokerProvider::MockCluster)
}

#[test]
fn delivery_reports_wait_for_poll_and_carry_partition_and_offset_in_order() {
    let sim = simulation(FaultSchedule::new());
    assert_eq!(
        run(&sim, mock(), cases::served_by_poll),
        cases::SERVED_BY_POLL
    );
}

#[test]
fn a_full_queue_refuses_until_the_reports_are_served() {
    let sim = simulation(FaultSchedule::new());
    assert_eq!(run(&sim, mock(), cases::queue_full), cases::QUEUE_FULL);
}

#[test]
fn flush_returns_once_every_report_was_served() {
    let sim = simulation(FaultSchedule::new());
    assert_eq!(
        run(&sim, mock(), cases::flush_serves_all),
        cases::FLUSH_SERVES_ALL
    );
}

#[test]
fn a_threaded_producer_serves_reports_in_the_background() {
    let sim = simulation(FaultSchedule::new());
    assert_eq!(run(&sim, mock(), cases::threaded), cases::THREADED);
}

#[test]
fn dropping_the_producer_purges_what_is_queued() {
    let sim = simulation(FaultSchedule::new());
    assert_eq!(run(&sim, mock(), cases::dropped), cases::DROPPED);
}

#[test]
fn a_lost_ack_without_idempotence_reports_the_duplicate_retry() {
    let sim = simulation(cases::lost_ack_faults());
    assert_eq!(run(&sim, mock(), cases::lost_ack()), cases::LOST_ACK);
}

#[test]
fn a_lost_ack_with_idempotence_reports_the_original() {
    let sim = simulation(cases::lost_ack_faults());
    assert_eq!(
        run(&sim, mock(), cases::lost_ack_idempotent()),
        cases::LOST_ACK_IDEMPOTENT
    );
}

#[test]
fn a_failed_delivery_reaches_the_callback_with_the_record() {
    let sim = simulation(cases::failed_faults());
    assert_eq!(run(&sim, mock(), cases::failed()), cases::FAILED);
}
