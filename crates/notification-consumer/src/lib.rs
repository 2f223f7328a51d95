//! The notification service: consumes `task.created` events and emails the task's assignee.
//!
//! Written against rdkafka's concrete types (a `StreamConsumer` built by
//! `ClientConfig::create()`), with the email behind the service's own [`Mailer`]. The
//! `rdkafka` it is built with is `effectively-once-rdkafka`: plain rdkafka in `cargo build`,
//! the kit's simulated clients in `cargo test`, with no change to this code.

use std::future::Future;

use futures_util::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

/// Errors of the service and its mailer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sends emails.
pub trait Mailer: Send + Sync {
    /// Sends the email for `event_id`. An email API that takes an idempotency key sends at
    /// most one email per key, however often it is called.
    fn send(
        &self,
        event_id: &str,
        idempotency_key: Option<&str>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Where the service reads from, and how.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The consumer group.
    pub group_id: String,
    /// The topic the Task API publishes to.
    pub topic: String,
    /// Hand the event id to the email API as its idempotency key: a redelivered event (after a
    /// crash between the email and the commit) does not email twice.
    pub idempotency_keys: bool,
}

impl Settings {
    /// The settings from the environment (`KAFKA_BROKERS`, `NOTIFICATION_GROUP`,
    /// `TASK_TOPIC`, `EMAIL_IDEMPOTENCY_KEYS`: `false` turns them off), with local defaults.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or(default.to_string());
        Settings {
            brokers: var("KAFKA_BROKERS", "localhost:9092"),
            group_id: var("NOTIFICATION_GROUP", "notification-service"),
            topic: var("TASK_TOPIC", "task-events"),
            idempotency_keys: var("EMAIL_IDEMPOTENCY_KEYS", "true") != "false",
        }
    }
}

/// The notification service.
pub struct NotificationService<M> {
    consumer: StreamConsumer,
    mailer: M,
    idempotency_keys: bool,
}

impl<M: Mailer> NotificationService<M> {
    /// Connects to the cluster and subscribes to the task topic.
    pub fn new(settings: &Settings, mailer: M) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()?;
        consumer.subscribe(&[&settings.topic])?;
        Ok(NotificationService {
            consumer,
            mailer,
            idempotency_keys: settings.idempotency_keys,
        })
    }

    /// Emails each event, committing its offset once the email is out (at-least-once; with
    /// idempotency keys, effectively once). Returns on the first consumer or mailer error.
    pub async fn run(&self) -> Result<(), BoxError> {
        let mut messages = self.consumer.stream();
        while let Some(message) = messages.next().await {
            let message = message?;
            match event_id(message.payload()) {
                Some(event_id) => {
                    let key = self.idempotency_keys.then_some(event_id.as_str());
                    self.mailer.send(&event_id, key).await?;
                }
                // A record that is not a task event: skip it, or it would wedge the partition.
                None => eprintln!(
                    "notification-service: skipping an unreadable record at {}[{}]@{}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                ),
            }
            self.consumer.commit_message(&message, CommitMode::Sync)?;
        }
        Ok(())
    }
}

/// The event id of a task event's JSON payload (`{"event_id": "evt-1", ...}`).
fn event_id(payload: Option<&[u8]>) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload?).ok()?;
    Some(value.get("event_id")?.as_str()?.to_string())
}
