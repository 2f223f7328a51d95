//! Joining the run: the instance whose task creates a client.

use effectively_once::InstanceContext;
use rdkafka::error::{KafkaError, KafkaResult};

/// The instance of the calling task, or the error `create()` returns outside one.
pub(crate) fn instance(client: &str) -> KafkaResult<InstanceContext> {
    InstanceContext::current().ok_or_else(|| {
        KafkaError::ClientCreation(format!(
            "effectively-once-rdkafka: a simulated {client} joins the effectively-once run of \
             the task that creates it, and this task belongs to none. Create it in the \
             instance's own task (the future the factory returns) or in a task spawned with \
             `InstanceContext::spawn`, not in a plain `tokio::spawn`, another thread or outside \
             a run. (The crate's `simulated` feature is on, as a dev-dependency turns it on for \
             tests; builds without it get plain rdkafka.)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_run_is_a_client_creation_error_that_says_how_to_fix_it() {
        let error = instance("StreamConsumer").expect_err("no run here");
        let KafkaError::ClientCreation(message) = error else {
            panic!("unexpected error {error:?}");
        };
        assert!(message.contains("InstanceContext::spawn"), "{message}");
    }
}
