// The verifier is passed by reference: `&verifier`.
use effectively_once::{InstanceContext, Verifier, assert_effectively_once};

async fn notification_service(_ctx: InstanceContext) {}

fn main() {
    let mut verifier = Verifier::default();
    verifier.topic("task-events");
    assert_effectively_once!(notification_service, verifier);
}
