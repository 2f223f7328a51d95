//! BaseProducer and ThreadedProducer on the simulator: the cases of `base_producer_cases.rs`,
//! whose expectations were measured on librdkafka's mock cluster (`tests/brokers`).

use effectively_once::FaultSchedule;

#[path = "base_producer_cases.rs"]
mod cases;

use cases::{run, simulation};

#[test]
fn delivery_reports_wait_for_poll_and_carry_partition_and_offset_in_order() {
    let sim = simulation(FaultSchedule::new());
    assert_eq!(
        run(&sim, None, cases::served_by_poll),
        cases::SERVED_BY_POLL
    );
}

#[test]
fn a_full_queue_refuses_until_the_reports_are_served() {
    let sim = simulation(FaultSchedule::new());
    assert_eq!(run(&sim, None, cases::queue_full), cases::QUEUE_FULL);
}

#[test]
fn flush_returns_once_every_report_was_served() {
    let sim = simulation(FaultSchedule::new());
    assert_eq!(
        run(&sim, None, cases::flush_serves_all),
        cases::FLUSH_SERVES_ALL
    );
}

#[test]
fn a_threaded_producer_serves_reports_in_the_background() {
    let sim = simulation(FaultSchedule::new());
    assert_eq!(run(&sim, None, cases::threaded), cases::THREADED);
}

#[test]
fn dropping_the_producer_purges_what_is_queued() {
    let sim = simulation(FaultSchedule::new());
    assert_eq!(run(&sim, None, cases::dropped), cases::DROPPED);
}

#[test]
fn a_lost_ack_without_idempotence_reports_the_duplicate_retry() {
    let sim = simulation(cases::lost_ack_faults());
    assert_eq!(run(&sim, None, cases::lost_ack()), cases::LOST_ACK);
}

#[test]
fn a_lost_ack_with_idempotence_reports_the_original() {
    let sim = simulation(cases::lost_ack_faults());
    assert_eq!(
        run(&sim, None, cases::lost_ack_idempotent()),
        cases::LOST_ACK_IDEMPOTENT
    );
}

#[test]
fn a_failed_delivery_reaches_the_callback_with_the_record() {
    let sim = simulation(cases::failed_faults());
    assert_eq!(run(&sim, None, cases::failed()), cases::FAILED);
}
