// The consumer's error is shown in the report, so it must implement `Display`.
use effectively_once::{InstanceContext, assert_effectively_once};

#[derive(Debug)]
enum ConsumerError {
    Kafka,
}

async fn notification_service(_ctx: InstanceContext) -> Result<(), ConsumerError> {
    Err(ConsumerError::Kafka)
}

fn main() {
    assert_effectively_once!(notification_service);
}
