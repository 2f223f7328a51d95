//! The simulated BaseProducer and ThreadedProducer, driven by code written against rdkafka's
//! paths (a `ProducerContext` whose `delivery` notes each report), on the kit's simulator and
//! on librdkafka's mock cluster with the same expectations.
#![cfg(feature = "simulated")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::{Anchor, Fault, FaultSchedule, InstanceContext, Operation, Simulation};
use effectively_once_rdkafka as rdkafka;
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The delivery reports, as the context noted them: `#id partition@offset payload [error]`.
#[derive(Clone, Default)]
struct Notes(Arc<Mutex<Vec<String>>>);

impl Notes {
    fn push(&self, note: impl Into<String>) {
        self.0.lock().unwrap().push(note.into());
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A context as rdkafka programs write one: each record carries its id to the callback.
struct Reports {
    notes: Notes,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, id: usize) {
        let (message, error) = match delivery_result {
            Ok(message) => (message, String::new()),
            Err((error, message)) => (message, format!(" {error}")),
        };
        let payload = message.payload_view::<str>().and_then(Result::ok);
        self.notes.push(format!(
            "#{id} {}@{} {}{error}",
            message.partition(),
            message.offset(),
            payload.unwrap_or("-"),
        ));
    }
}

fn config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", "kafka:9092")
        .set("linger.ms", "0");
    config
}

fn record(id: usize, payload: &str) -> BaseRecord<'_, (), str, usize> {
    BaseRecord::with_opaque_to("out", id)
        .payload(payload)
        .partition(0)
}

/// Runs `case` with a topic `out` of one partition on the simulator (`None`) or `provider`:
/// the notes, and the payloads that reached `out`.
fn run<F, Fut>(
    provider: Option<&BrokerProvider>,
    faults: FaultSchedule,
    case: F,
) -> (Vec<String>, Vec<String>)
where
    F: Fn(InstanceContext, Notes) -> Fut + Clone + 'static,
    Fut: Future<Output = Result<(), BoxError>> + 'static,
{
    let notes = Notes::default();
    let seen = notes.clone();
    let mut sim = Simulation::builder();
    sim.topic("out", 1)
        .faults(faults)
        .time_limit(Duration::from_secs(60));
    let sim = sim.build().unwrap();
    let f = move |ctx| case(ctx, seen.clone());
    let outcome = match provider {
        None => sim.run(f),
        Some(p) => sim.run_on(p, f),
    }
    .unwrap();
    let out = outcome
        .cluster()
        .records("out", 0)
        .iter()
        .map(|r| String::from_utf8_lossy(r.payload.as_deref().unwrap_or_default()).into_owned())
        .collect();
    (notes.all(), out)
}

/// Reports reach the context only from `poll` and `flush`.
async fn served_by_poll_and_flush(_ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let producer: BaseProducer<Reports> = config().create_with_context(Reports {
        notes: notes.clone(),
    })?;
    producer.send(record(0, "a")).map_err(|(e, _)| e)?;
    producer.send(record(1, "b")).map_err(|(e, _)| e)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // (librdkafka's in_flight_count counts the other events of its queue too: not noted.)
    notes.push(format!(
        "after 1s without poll: {} reports",
        notes.all().len()
    ));
    producer.poll(Duration::from_millis(100));
    producer.send(record(2, "c")).map_err(|(e, _)| e)?;
    producer.flush(Duration::from_secs(10))?;
    notes.push(format!("flushed: in flight {}", producer.in_flight_count()));
    Ok(())
}

const SERVED: [&str; 5] = [
    "after 1s without poll: 0 reports",
    "#0 0@0 a",
    "#1 0@1 b",
    "#2 0@2 c",
    "flushed: in flight 0",
];

#[test]
fn a_base_producer_serves_its_delivery_callbacks_from_poll_and_flush() {
    let (notes, out) = run(None, FaultSchedule::new(), served_by_poll_and_flush);
    assert_eq!(notes, SERVED);
    assert_eq!(out, ["a", "b", "c"]);
}

#[test]
fn on_librdkafka_too_the_callbacks_come_from_poll_and_flush() {
    let (notes, out) = run(
        Some(&BrokerProvider::MockCluster),
        FaultSchedule::new(),
        served_by_poll_and_flush,
    );
    assert_eq!(notes, SERVED);
    assert_eq!(out, ["a", "b", "c"]);
}

/// A ThreadedProducer calls the context from its own background task, without `poll`.
async fn threaded(_ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let producer: ThreadedProducer<Reports> = config().create_with_context(Reports {
        notes: notes.clone(),
    })?;
    let clone = producer.clone();
    producer.send(record(0, "a")).map_err(|(e, _)| e)?;
    clone.send(record(1, "b")).map_err(|(e, _)| e)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    notes.push(format!(
        "after 1s: in flight {}",
        producer.in_flight_count()
    ));
    drop(clone);
    producer.flush(Duration::from_secs(10))?;
    Ok(())
}

#[test]
fn a_threaded_producer_serves_its_callbacks_itself() {
    let (notes, out) = run(None, FaultSchedule::new(), threaded);
    assert_eq!(notes, ["#0 0@0 a", "#1 0@1 b", "after 1s: in flight 0"]);
    assert_eq!(out, ["a", "b"]);
}

/// Two records, each flushed: the first one's acknowledgement is lost.
async fn two_flushed(_ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let producer: BaseProducer<Reports> = config().create_with_context(Reports {
        notes: notes.clone(),
    })?;
    for (id, payload) in ["a", "b"].into_iter().enumerate() {
        producer.send(record(id, payload)).map_err(|(e, _)| e)?;
        producer.flush(Duration::from_secs(10))?;
    }
    Ok(())
}

#[test]
fn a_lost_ack_duplicates_the_record_and_the_report_names_the_retry() {
    let faults = FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::LoseAck);
    let (notes, out) = run(None, faults, two_flushed);
    assert_eq!(notes, ["#0 0@1 a", "#1 0@2 b"]);
    assert_eq!(out, ["a", "a", "b"]);
}

#[test]
fn a_failed_delivery_reaches_the_context_with_the_record() {
    let faults = FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::Fail);
    let (notes, out) = run(None, faults, two_flushed);
    assert_eq!(
        notes,
        [
            "#0 0@-1001 a Message production error: MessageTimedOut (Local: Message timed out)",
            "#1 0@0 b",
        ]
    );
    assert_eq!(out, ["b"]);
}

#[test]
fn the_default_context_sends_without_callbacks_and_drop_purges() {
    let (_, out) = run(None, FaultSchedule::new(), |_ctx, notes| async move {
        let producer: BaseProducer = config().create()?;
        producer
            .send(BaseRecord::<(), str>::to("out").payload("a"))
            .map_err(|(e, _)| e)?;
        producer.flush(Duration::from_secs(10))?;
        producer
            .send(BaseRecord::<(), str>::to("out").payload("never"))
            .map_err(|(e, _)| e)?;
        drop(producer);
        notes.push("dropped");
        Ok(())
    });
    assert_eq!(out, ["a"]);
}

/// A context with a custom partitioner is refused: the simulator does not call it.
struct Custom;

impl ClientContext for Custom {}

impl ProducerContext<Custom> for Custom {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}

    fn get_custom_partitioner(&self) -> Option<&Custom> {
        Some(self)
    }
}

impl rdkafka::producer::Partitioner for Custom {
    fn partition(&self, _: &str, _: Option<&[u8]>, _: i32, _: impl Fn(i32) -> bool) -> i32 {
        0
    }
}

#[test]
fn a_custom_partitioner_is_refused_at_creation() {
    let (notes, _) = run(None, FaultSchedule::new(), |_ctx, notes| async move {
        let created = config().create_with_context::<_, BaseProducer<Custom, Custom>>(Custom);
        notes.push(match created {
            Err(rdkafka::error::KafkaError::ClientCreation(m)) => m,
            other => format!("{other:?}"),
        });
        Ok(())
    });
    assert!(notes[0].contains("custom partitioner"), "{notes:?}");
}
