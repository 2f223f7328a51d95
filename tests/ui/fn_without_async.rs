// A consumer written as a plain `fn` (the `async` forgotten) returns its result, not a future.
use effectively_once::{InstanceContext, assert_effectively_once};

fn notification_service(ctx: InstanceContext) -> Result<(), String> {
    let _email = ctx.effect_sink("email");
    Ok(())
}

fn main() {
    assert_effectively_once!(notification_service);
}
