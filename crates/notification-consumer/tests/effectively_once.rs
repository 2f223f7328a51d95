//! The notification service, unchanged, on the kit's simulated Kafka: its `StreamConsumer` is
//! the simulated one (the `simulated` feature of the dev-dependency), its email goes to an
//! effect sink.

use effectively_once::{
    EffectSink, InstanceContext, Verifier, assert_effectively_once, check_effectively_once,
};
use notification_consumer::{BoxError, Mailer, NotificationService, Settings};

/// The email API of the tests: the kit's effect sink, which honours idempotency keys as a
/// real email API would.
struct SinkMailer(EffectSink);

impl Mailer for SinkMailer {
    async fn send(&self, event_id: &str, idempotency_key: Option<&str>) -> Result<(), BoxError> {
        match idempotency_key {
            Some(key) => self.0.perform_idempotent(event_id, key).await?,
            None => self.0.perform(event_id).await?,
        }
        Ok(())
    }
}

fn settings(idempotency_keys: bool) -> Settings {
    Settings {
        brokers: "kafka:9092".into(),
        group_id: "notification-service".into(),
        // The verifier's topic.
        topic: "events".into(),
        idempotency_keys,
    }
}

/// One instance of the service, as `main` starts it.
async fn service(ctx: InstanceContext, idempotency_keys: bool) -> Result<(), BoxError> {
    let mailer = SinkMailer(ctx.effect_sink("email"));
    let service = NotificationService::new(&settings(idempotency_keys), mailer)?;
    service.run().await
}

fn verifier() -> Verifier {
    let mut verifier = Verifier::default();
    verifier.cases(48).persist_failures(false);
    verifier
}

#[test]
fn with_idempotency_keys_each_event_is_emailed_exactly_once() {
    assert_effectively_once!(|ctx| service(ctx, true), &verifier());
}

#[test]
fn without_idempotency_keys_a_redelivery_emails_twice_and_the_kit_finds_it() {
    let error = check_effectively_once(&verifier(), |ctx| service(ctx, false)).expect_err(
        "without idempotency keys a crash between the email and the commit duplicates it",
    );
    let counterexample = error
        .counterexample()
        .unwrap_or_else(|| panic!("not a violation: {error}"));
    let violation = counterexample.violation();
    // Duplicated, never lost: the commit comes after the email.
    assert!(violation.summary.contains("(0 lost,"), "{counterexample}");
    assert!(
        violation.details.iter().any(|d| d.ends_with("DUPLICATED")),
        "{counterexample}"
    );
}

#[test]
fn outside_a_run_the_service_cannot_be_created() {
    let Err(error) = NotificationService::new(&settings(true), NoMail) else {
        panic!("a simulated consumer was created outside a run");
    };
    assert!(
        error.to_string().contains("InstanceContext::spawn"),
        "{error}"
    );
}

struct NoMail;

impl Mailer for NoMail {
    async fn send(&self, _: &str, _: Option<&str>) -> Result<(), BoxError> {
        Ok(())
    }
}
