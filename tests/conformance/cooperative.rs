//! The cooperative-sticky protocol (incremental rebalancing) on the simulator, against what
//! librdkafka does on its mock cluster (`tests/brokers/cooperative.rs`, the same case).

use crate::cooperative_cases::{FIRST, SECOND, SECOND_FIRST, changes, join_then_leave};

#[test]
fn a_cooperative_member_revokes_only_the_partitions_that_move_and_is_given_them_back() {
    let (first, second) = join_then_leave(None);
    assert_eq!(changes(&first), FIRST, "{first:?}");
    assert_eq!(changes(&second), SECOND, "{second:?}");
    assert_eq!(second.first().map(String::as_str), Some(SECOND_FIRST));
    let after_revoke: Vec<&String> = first
        .iter()
        .skip_while(|c| !c.starts_with("revoke"))
        .collect();
    assert!(
        after_revoke.iter().any(|c| c.starts_with("assign 0")),
        "the generation after the revoke is taken up with an empty Assign callback: {first:?}"
    );
}
