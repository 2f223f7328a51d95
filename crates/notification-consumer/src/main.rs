//! The notification service's process: reads the settings from the environment, emails
//! through the log until an email API is wired in, stops on Ctrl-C.

use notification_consumer::{BoxError, Mailer, NotificationService, Settings};

/// Prints each email instead of sending it.
struct LogMailer;

impl Mailer for LogMailer {
    async fn send(&self, event_id: &str, idempotency_key: Option<&str>) -> Result<(), BoxError> {
        println!("email for {event_id} (idempotency key {idempotency_key:?})");
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let service = NotificationService::new(&Settings::from_env(), LogMailer)?;
    tokio::select! {
        result = service.run() => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
