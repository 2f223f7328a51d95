// The consumer's future ends with `()` or a `Result`, not with another value.
use effectively_once::{InstanceContext, assert_at_most_once};

fn main() {
    assert_at_most_once!(|_ctx: InstanceContext| async { 42 });
}
