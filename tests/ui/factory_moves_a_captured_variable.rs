// The factory starts every incarnation of the consumer, so it cannot move what it captured
// into one incarnation's future: each future gets its own clone.
use effectively_once::{InstanceContext, assert_effectively_once};

fn main() {
    let sink = String::from("email");
    assert_effectively_once!(|ctx: InstanceContext| async move {
        let _email = ctx.effect_sink(&sink);
    });
}
