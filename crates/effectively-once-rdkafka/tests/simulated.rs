//! The simulated clients, driven by code written against rdkafka's paths (this crate under
//! the name `rdkafka`, as users depend on it), on the kit's simulator.
#![cfg(feature = "simulated")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::history::HistoryEvent;
use effectively_once::{Anchor, Fault, FaultSchedule, InputRecord, Operation, Simulation};
use effectively_once_rdkafka as rdkafka;
use futures_util::StreamExt;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext};

const TOPIC: &str = "events";
const GROUP: &str = "dropin";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", "kafka:9092")
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000");
    config
}

fn events(partitions: i32, per_partition: usize) -> effectively_once::SimulationBuilder {
    let mut sim = Simulation::builder();
    sim.topic(TOPIC, partitions);
    for p in 0..partitions {
        for n in 0..per_partition {
            sim.produce(
                InputRecord::new(TOPIC)
                    .partition(p)
                    .payload(format!("p{p}-{n}")),
            );
        }
    }
    sim
}

/// Observations made inside the instances.
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

/// Commits the processed (stored) offsets before partitions go: the usual rdkafka context.
struct CommitOnRevoke {
    notes: Notes,
}

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let result = consumer.commit_consumer_state(CommitMode::Sync);
            self.notes.push(format!(
                "revoke {} partitions: {result:?}",
                partitions.count()
            ));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            let assigned = consumer.assignment().map(|a| a.count());
            self.notes.push(format!(
                "assigned {} partitions: {assigned:?}",
                partitions.count()
            ));
        }
    }
}

impl Drop for CommitOnRevoke {
    fn drop(&mut self) {
        self.notes.push("context dropped");
    }
}

/// One instance reads the three records of `events[0]` and drops its consumer, whose context
/// commits in the revoke of the close; returns the notes and the committed offset.
fn commit_on_revoke_at_close(provider: Option<&BrokerProvider>) -> (Vec<String>, Option<i64>) {
    let notes = Notes::default();
    let seen = notes.clone();
    let simulation = events(1, 3).build().unwrap();
    let factory = move |_ctx| {
        let notes = notes.clone();
        async move {
            let consumer: StreamConsumer<CommitOnRevoke> =
                config().create_with_context(CommitOnRevoke {
                    notes: notes.clone(),
                })?;
            consumer.subscribe(&[TOPIC])?;
            for _ in 0..3 {
                consumer.recv().await?;
            }
            drop(consumer);
            notes.push("consumer dropped");
            Ok::<_, BoxError>(())
        }
    };
    let outcome = match provider {
        None => simulation.run(factory),
        Some(provider) => simulation.run_on(provider, factory),
    }
    .unwrap();
    let committed = outcome.cluster().committed_offset(GROUP, TOPIC, 0);
    (seen.all(), committed)
}

const CLOSE_NOTES: [&str; 4] = [
    "assigned 1 partitions: Ok(1)",
    "revoke 1 partitions: Ok(())",
    "context dropped",
    "consumer dropped",
];

#[test]
fn a_commit_in_the_revoke_of_the_close_reaches_the_consumer_and_nothing_leaks() {
    assert_eq!(
        commit_on_revoke_at_close(None),
        (CLOSE_NOTES.map(String::from).to_vec(), Some(3))
    );
}

/// The same consumer on librdkafka (the mock cluster): its close calls the revoke callback
/// on the thread that destroys the consumer, with librdkafka's own consumer lent.
#[test]
fn on_librdkafka_too_the_revoke_of_the_close_commits_through_the_context() {
    assert_eq!(
        commit_on_revoke_at_close(Some(&BrokerProvider::MockCluster)),
        (CLOSE_NOTES.map(String::from).to_vec(), Some(3))
    );
}

#[test]
fn without_the_context_the_close_commits_nothing() {
    let outcome = events(1, 3)
        .build()
        .unwrap()
        .run(|_ctx| async move {
            let consumer: StreamConsumer = config().create()?;
            consumer.subscribe(&[TOPIC])?;
            for _ in 0..3 {
                consumer.recv().await?;
            }
            Ok::<_, BoxError>(())
        })
        .unwrap();
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), None);
}

#[test]
fn a_rebalance_inside_recv_runs_the_callbacks_with_a_working_consumer() {
    let notes = Notes::default();
    let seen = notes.clone();
    let mut sim = events(2, 3);
    sim.instances(2)
        .start_at(1, Duration::from_secs(10))
        .time_limit(Duration::from_secs(60));
    let outcome = sim
        .build()
        .unwrap()
        .run(move |ctx| {
            let notes = notes.clone();
            async move {
                let instance = ctx.instance();
                let consumer: StreamConsumer<CommitOnRevoke> =
                    config().create_with_context(CommitOnRevoke {
                        notes: notes.clone(),
                    })?;
                consumer.subscribe(&[TOPIC])?;
                let mut messages = consumer.stream();
                while let Some(message) = messages.next().await {
                    let message = message?;
                    notes.push(format!("{instance} got {}", message.offset()));
                }
                Ok::<_, BoxError>(())
            }
        })
        .unwrap();
    let notes = seen.all();
    // The first instance took both partitions and read them; the late joiner's arrival
    // revoked them inside its `recv`, and the commit there went through.
    let revoke = notes
        .iter()
        .position(|n| n == "revoke 2 partitions: Ok(())")
        .unwrap_or_else(|| panic!("{notes:#?}"));
    assert_eq!(notes[0], "assigned 2 partitions: Ok(2)", "{notes:#?}");
    assert_eq!(
        notes[1..revoke]
            .iter()
            .filter(|n| n.contains(" got "))
            .count(),
        6,
        "{notes:#?}"
    );
    for p in 0..2 {
        assert_eq!(
            outcome.cluster().committed_offset(GROUP, TOPIC, p),
            Some(3),
            "{notes:#?}"
        );
    }
}

#[test]
fn a_crash_in_a_commit_of_the_callback_crashes_the_instance() {
    let notes = Notes::default();
    let seen = notes.clone();
    let mut sim = events(1, 2);
    sim.faults(FaultSchedule::new().with(Anchor::on(Operation::Commit), Fault::CrashBefore))
        .max_restarts(1);
    let outcome = sim
        .build()
        .unwrap()
        .run(move |_ctx| {
            let notes = notes.clone();
            async move {
                let consumer: StreamConsumer<CommitOnRevoke> =
                    config().create_with_context(CommitOnRevoke {
                        notes: notes.clone(),
                    })?;
                consumer.subscribe(&[TOPIC])?;
                for _ in 0..2 {
                    consumer.recv().await?;
                }
                notes.push("read two");
                Ok::<_, BoxError>(())
            }
        })
        .unwrap();
    let crashes = outcome
        .history()
        .events()
        .filter(|e| matches!(e, HistoryEvent::InstanceCrashed { .. }))
        .count();
    assert_eq!(crashes, 1, "{}", outcome.history());
    // The crashed commit stopped the callback (its note was never written) as the kit stops a
    // crashed instance; the second incarnation read both records again and committed at its
    // close.
    assert_eq!(
        seen.all(),
        [
            "assigned 1 partitions: Ok(1)",
            "read two",
            "context dropped",
            "assigned 1 partitions: Ok(1)",
            "read two",
            "revoke 1 partitions: Ok(())",
            "context dropped",
        ],
        "{}",
        outcome.history()
    );
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(2));
}

#[test]
fn clients_join_the_run_from_the_instance_task_and_its_spawned_tasks_only() {
    let notes = Notes::default();
    let seen = notes.clone();
    events(1, 0)
        .build()
        .unwrap()
        .run(move |ctx| {
            let notes = notes.clone();
            async move {
                let spawned = ctx.spawn(async { config().create::<StreamConsumer>().is_ok() });
                notes.push(format!("InstanceContext::spawn: {:?}", spawned.await.ok()));
                let plain = tokio::spawn(async {
                    match config().create::<StreamConsumer>() {
                        Err(KafkaError::ClientCreation(m)) => m.contains("InstanceContext::spawn"),
                        _ => false,
                    }
                });
                notes.push(format!("tokio::spawn refused: {:?}", plain.await.ok()));
            }
        })
        .unwrap();
    assert_eq!(
        seen.all(),
        [
            "InstanceContext::spawn: Some(true)",
            "tokio::spawn refused: Some(true)"
        ]
    );
}

#[test]
fn a_future_producer_sends_what_the_consumer_reads() {
    let outcome = events(1, 3)
        .topic("out", 1)
        .build()
        .unwrap()
        .run(|_ctx| async move {
            let consumer: StreamConsumer = config().create()?;
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", "kafka:9092")
                .set("enable.idempotence", "true")
                .create()?;
            consumer.subscribe(&[TOPIC])?;
            for _ in 0..3 {
                let message = consumer.recv().await?;
                let payload = message
                    .payload_view::<str>()
                    .unwrap_or(Ok(""))?
                    .to_uppercase();
                producer
                    .send(
                        FutureRecord::<(), _>::to("out").payload(&payload),
                        Duration::ZERO,
                    )
                    .await
                    .map_err(|(e, _)| e)?;
                consumer.commit_message(&message, CommitMode::Sync)?;
            }
            Ok::<_, BoxError>(())
        })
        .unwrap();
    let out: Vec<_> = outcome
        .cluster()
        .records("out", 0)
        .iter()
        .map(|r| r.payload.clone())
        .collect();
    assert_eq!(out.len(), 3, "{}", outcome.history());
}

/// `split_partition_queue` as rdkafka programs call it: the queue's task reads and commits its
/// partition (through the consumer), the main task polls the consumer and gets the others.
#[test]
fn a_split_partition_queue_hands_out_its_partition_and_recv_the_others() {
    let notes = Notes::default();
    let seen = notes.clone();
    events(2, 3)
        .build()
        .unwrap()
        .run(move |ctx| {
            let notes = seen.clone();
            async move {
                let consumer: Arc<StreamConsumer> = Arc::new(config().create()?);
                let queue = consumer.split_partition_queue(TOPIC, 0).ok_or("no queue")?;
                consumer.subscribe(&[TOPIC])?;
                let reader = {
                    let (consumer, notes) = (consumer.clone(), notes.clone());
                    ctx.spawn(async move {
                        let mut stream = queue.stream();
                        for _ in 0..3 {
                            let message = stream.next().await.ok_or("ended")??;
                            notes.push(format!(
                                "queue p{}@{}",
                                message.partition(),
                                message.offset()
                            ));
                            consumer.commit_message(&message, CommitMode::Sync)?;
                        }
                        Ok::<_, BoxError>(())
                    })
                };
                for _ in 0..3 {
                    let message = consumer.recv().await?;
                    notes.push(format!(
                        "main p{}@{}",
                        message.partition(),
                        message.offset()
                    ));
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await;
                reader.await??;
                Ok::<_, BoxError>(())
            }
        })
        .unwrap();
    let mut all = notes.all();
    all.sort();
    assert_eq!(
        all,
        [
            "main p1@0",
            "main p1@1",
            "main p1@2",
            "queue p0@0",
            "queue p0@1",
            "queue p0@2"
        ]
    );
}
