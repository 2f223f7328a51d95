//! librdkafka's cooperative-sticky protocol (incremental rebalancing, KIP-429) on its mock
//! cluster: the case of `tests/conformance/cooperative_cases.rs`, whose expectations were
//! measured here and which the simulator meets too.

use effectively_once::broker::BrokerProvider;

#[path = "../conformance/cooperative_cases.rs"]
mod cases;

use cases::{FIRST, SECOND, SECOND_FIRST, changes, join_then_leave};

#[test]
fn a_cooperative_member_revokes_only_the_partitions_that_move_on_the_mock_cluster() {
    let (first, second) = join_then_leave(Some(&BrokerProvider::MockCluster));
    assert_eq!(changes(&first), FIRST, "{first:?}");
    assert_eq!(changes(&second), SECOND, "{second:?}");
    assert_eq!(second.first().map(String::as_str), Some(SECOND_FIRST));
}
