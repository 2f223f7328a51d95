// The factory takes exactly one argument, the instance's context.
use effectively_once::{InstanceContext, assert_at_least_once};

fn main() {
    assert_at_least_once!(|_ctx: InstanceContext, _partition: i32| async {});
}
