// The factory returns the consumer's future, not a value.
use effectively_once::{InstanceContext, assert_effectively_once};

fn main() {
    assert_effectively_once!(|_ctx: InstanceContext| 42);
}
