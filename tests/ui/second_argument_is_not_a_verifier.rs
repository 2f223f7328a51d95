// The second argument is a `&Verifier`, not the consumer's configuration or a case count.
use effectively_once::{InstanceContext, assert_at_least_once};
use rdkafka::ClientConfig;

async fn notification_service(_ctx: InstanceContext) {}

fn main() {
    let config = ClientConfig::new();
    assert_at_least_once!(notification_service, &config);
}
