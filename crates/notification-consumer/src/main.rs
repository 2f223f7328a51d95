//! The notification service's process: reads the settings from the environment and sends each
//! email through the email API at `EMAIL_API_URL` (printing it instead when that is not set),
//! stops on Ctrl-C.

use notification_consumer::{BoxError, Mailer, NotificationService, Settings};

/// Prints each email instead of sending it.
struct LogMailer;

impl Mailer for LogMailer {
    async fn send(&self, event_id: &str, idempotency_key: Option<&str>) -> Result<(), BoxError> {
        println!("email for {event_id} (idempotency key {idempotency_key:?})");
        Ok(())
    }
}

/// Sends each email with `POST {url}`, a JSON body naming the event and, when the service
/// uses them, an `Idempotency-Key` header (the email API sends at most one email per key).
struct HttpMailer {
    client: reqwest::Client,
    url: String,
}

impl Mailer for HttpMailer {
    async fn send(&self, event_id: &str, idempotency_key: Option<&str>) -> Result<(), BoxError> {
        let mut request = self
            .client
            .post(&self.url)
            .json(&serde_json::json!({ "event_id": event_id }));
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await?.error_for_status()?;
        println!("emailed {event_id}");
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let settings = Settings::from_env();
    match std::env::var("EMAIL_API_URL") {
        Ok(url) => {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?;
            run(NotificationService::new(
                &settings,
                HttpMailer { client, url },
            )?)
            .await
        }
        Err(_) => run(NotificationService::new(&settings, LogMailer)?).await,
    }
}

/// Runs the service until it fails or Ctrl-C.
async fn run<M: Mailer>(service: NotificationService<M>) -> Result<(), BoxError> {
    tokio::select! {
        result = service.run() => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
