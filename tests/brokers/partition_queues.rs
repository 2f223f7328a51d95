//! `split_partition_queue` measured on librdkafka's mock cluster: each case of
//! `tests/conformance/partition_queues_cases.rs` sees there what the conformance tests assert
//! of the simulator.

use effectively_once::broker::BrokerProvider;

#[path = "../conformance/partition_queues_cases.rs"]
mod cases;
use crate::seek_pause::cases as seek_pause_cases;

use cases::{run, simulation};

fn mock() -> Option<&'static BrokerProvider> {
    Some(&BrokerProvider::MockCluster)
}

#[test]
fn a_split_partition_comes_only_from_its_queue_and_only_once_the_consumer_polled() {
    assert_eq!(
        run(&simulation(2, 4), mock(), cases::split_first),
        cases::SPLIT_FIRST
    );
}

#[test]
fn a_queue_delivers_without_the_consumer_being_polled_once_assigned() {
    assert_eq!(
        run(&simulation(2, 4), mock(), cases::main_not_polled),
        cases::MAIN_NOT_POLLED
    );
}

#[test]
fn a_queue_of_a_partition_that_does_not_exist_is_handed_out() {
    assert_eq!(
        run(&simulation(2, 4), mock(), cases::unknown_partition),
        cases::UNKNOWN_PARTITION
    );
}

#[test]
fn a_dropped_queue_leaves_its_records_undelivered_until_split_again() {
    assert_eq!(
        run(&simulation(2, 4), mock(), cases::dropped_queue),
        cases::DROPPED_QUEUE
    );
}

#[test]
fn a_queue_delivers_again_when_its_partition_is_assigned_again() {
    assert_eq!(
        run(&simulation(1, 4), mock(), cases::across_rebalance),
        cases::ACROSS_REBALANCE
    );
}

#[test]
fn a_dropped_recv_of_a_queue_consumes_nothing() {
    assert_eq!(
        run(&cases::stalled_simulation(), mock(), cases::cancel_safe),
        cases::CANCEL_SAFE
    );
}
