//! `split_partition_queue`: consumers and what they see, shared by the conformance tests (the
//! simulator) and the broker tests (librdkafka on its mock cluster, where each expectation was
//! measured). Each case notes what the application saw, in order, from the consumer's `recv`
//! (`main`) and from a partition queue (`queue`).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use effectively_once::clients::KafkaPartitionQueue;
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, InputRecord, InstanceContext, KafkaConsumer,
    Simulation,
};
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;

pub use super::seek_pause_cases::{BoxError, Notes, consumer_config, run, simulation};
use super::seek_pause_cases::{Noting, list};

fn note<M: Message>(
    source: &str,
    got: Result<KafkaResult<M>, tokio::time::error::Elapsed>,
) -> String {
    match got {
        Ok(Ok(m)) => format!("{source} {}/{}@{}", m.topic(), m.partition(), m.offset()),
        Ok(Err(e)) => format!("{source} error {e}"),
        Err(_) => format!("{source} nothing"),
    }
}

/// The consumer's next record, waiting at most `secs` seconds.
async fn main_next<C: KafkaConsumer>(consumer: &C, secs: u64, notes: &Notes) {
    let got = tokio::time::timeout(Duration::from_secs(secs), consumer.recv()).await;
    notes.push(note("main", got));
}

/// The queue's next record, waiting at most `secs` seconds.
async fn queue_next<C: KafkaConsumer + 'static>(
    queue: &C::PartitionQueue,
    secs: u64,
    notes: &Notes,
) {
    let got = tokio::time::timeout(Duration::from_secs(secs), queue.recv()).await;
    notes.push(note("queue", got));
}

/// The case's consumer, in an `Arc` as `split_partition_queue` wants it.
fn consumer(
    ctx: &InstanceContext,
    notes: &Notes,
) -> Result<Arc<effectively_once::Consumer>, BoxError> {
    Ok(Arc::new(ctx.create_consumer_with_handler(
        &consumer_config("g"),
        Noting(notes.clone()),
    )?))
}

// ----- the cases -----

/// A queue split off before the first poll: nothing comes before the consumer is polled (the
/// group assigns nothing); then the consumer's `recv` hands out only the other partition, the
/// queue its own partition, in order.
pub async fn split_first(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = consumer(&ctx, &notes)?;
    let queue = consumer
        .split_partition_queue("t", 0)
        .ok_or("no queue for t/0")?;
    consumer.subscribe(&["t"])?;
    queue_next::<effectively_once::Consumer>(&queue, 3, &notes).await;
    for _ in 0..4 {
        main_next(&*consumer, 10, &notes).await;
    }
    main_next(&*consumer, 2, &notes).await;
    for _ in 0..4 {
        queue_next::<effectively_once::Consumer>(&queue, 10, &notes).await;
    }
    queue_next::<effectively_once::Consumer>(&queue, 2, &notes).await;
    Ok(())
}

/// Once the partition is assigned, its queue delivers although the consumer is not polled.
pub async fn main_not_polled(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = consumer(&ctx, &notes)?;
    let queue = consumer
        .split_partition_queue("t", 0)
        .ok_or("no queue for t/0")?;
    consumer.subscribe(&["t"])?;
    main_next(&*consumer, 10, &notes).await;
    for _ in 0..4 {
        queue_next::<effectively_once::Consumer>(&queue, 10, &notes).await;
    }
    queue_next::<effectively_once::Consumer>(&queue, 2, &notes).await;
    Ok(())
}

/// A queue asked for a partition that does not exist is handed out (and delivers nothing).
pub async fn unknown_partition(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = consumer(&ctx, &notes)?;
    let queue = consumer.split_partition_queue("t", 7);
    notes.push(format!("queue for t/7: {}", queue.is_some()));
    consumer.subscribe(&["t"])?;
    let got = tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await;
    notes.push(match got {
        Ok(Ok(m)) => format!(
            "main {}/{}",
            m.topic(),
            if m.partition() < 2 { "0-1" } else { "?" }
        ),
        _ => "main nothing".into(),
    });
    if let Some(queue) = queue {
        queue_next::<effectively_once::Consumer>(&queue, 2, &notes).await;
    }
    Ok(())
}

/// Dropping the queue: the partition's records go nowhere (not back to the consumer's
/// `recv`) until the partition is split again; the new queue goes on where the old stopped.
pub async fn dropped_queue(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = consumer(&ctx, &notes)?;
    let queue = consumer
        .split_partition_queue("t", 0)
        .ok_or("no queue for t/0")?;
    consumer.subscribe(&["t"])?;
    for _ in 0..4 {
        main_next(&*consumer, 10, &notes).await;
    }
    for _ in 0..2 {
        queue_next::<effectively_once::Consumer>(&queue, 10, &notes).await;
    }
    drop(queue);
    notes.push("queue dropped");
    main_next(&*consumer, 3, &notes).await;
    let queue = consumer
        .split_partition_queue("t", 0)
        .ok_or("no queue for t/0")?;
    notes.push("split again");
    for _ in 0..2 {
        queue_next::<effectively_once::Consumer>(&queue, 10, &notes).await;
    }
    queue_next::<effectively_once::Consumer>(&queue, 2, &notes).await;
    Ok(())
}

/// An eager rebalance (a new subscription) revokes the split partition and assigns it again:
/// the same queue delivers again, from the committed offset, without a new split.
pub async fn across_rebalance(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = consumer(&ctx, &notes)?;
    let queue = consumer
        .split_partition_queue("t", 0)
        .ok_or("no queue for t/0")?;
    consumer.subscribe(&["t"])?;
    main_next(&*consumer, 3, &notes).await;
    let mut last = None;
    for _ in 0..2 {
        let m = tokio::time::timeout(Duration::from_secs(10), queue.recv()).await?;
        let m = m?;
        notes.push(format!(
            "queue {}/{}@{}",
            m.topic(),
            m.partition(),
            m.offset()
        ));
        last = Some(m);
    }
    if let Some(m) = &last {
        consumer.commit_message(m, CommitMode::Sync)?;
        notes.push(format!(
            "committed {}",
            list(&consumer.committed(Duration::from_secs(10).into())?)
        ));
    }
    consumer.subscribe(&["t", "u"])?;
    main_next(&*consumer, 3, &notes).await;
    for _ in 0..2 {
        queue_next::<effectively_once::Consumer>(&queue, 10, &notes).await;
    }
    queue_next::<effectively_once::Consumer>(&queue, 2, &notes).await;
    Ok(())
}

/// Topic `t`, one partition of 4 records, whose second record's `recv` stalls 300 ms.
pub fn stalled_simulation() -> Simulation {
    let mut b = Simulation::builder();
    b.topic("t", 1)
        .topic("u", 1)
        .faults(FaultSchedule::new().with(
            Anchor::on(effectively_once::Operation::Recv).record(0, 1),
            Fault::Stall(Duration::from_millis(300)),
        ));
    for n in 0..4 {
        b.produce(
            InputRecord::new("t")
                .partition(0)
                .payload(format!("p0-{n}")),
        );
    }
    b.time_limit(Duration::from_secs(60)).build().unwrap()
}

/// The queue's `recv` is cancel-safe: a `recv` dropped while its record is stalled (a 100 ms
/// timeout against a 300 ms stall) consumes nothing; the next one hands the record out.
pub async fn cancel_safe(ctx: InstanceContext, notes: Notes) -> Result<(), BoxError> {
    let consumer = consumer(&ctx, &notes)?;
    let queue = consumer
        .split_partition_queue("t", 0)
        .ok_or("no queue for t/0")?;
    consumer.subscribe(&["t"])?;
    let main = {
        let consumer = consumer.clone();
        async move {
            loop {
                let _ = consumer.recv().await;
            }
        }
    };
    let reader = async {
        let mut got = 0;
        let mut attempts = 0;
        while got < 4 && attempts < 200 {
            attempts += 1;
            match tokio::time::timeout(Duration::from_millis(100), queue.recv()).await {
                Ok(Ok(m)) => {
                    got += 1;
                    notes.push(format!(
                        "queue {}/{}@{}",
                        m.topic(),
                        m.partition(),
                        m.offset()
                    ));
                }
                Ok(Err(e)) => notes.push(format!("queue error {e}")),
                Err(_) => {}
            }
        }
    };
    tokio::select! {
        _ = main => {}
        _ = reader => {}
    }
    Ok(())
}

// ----- what librdkafka's mock cluster showed (`tests/brokers/partition_queues.rs`) -----

/// [`split_first`] on `simulation(2, 4)`.
pub const SPLIT_FIRST: &[&str] = &[
    "queue nothing",
    "assign [t/0@-,t/1@-]",
    "main t/1@0",
    "main t/1@1",
    "main t/1@2",
    "main t/1@3",
    "main nothing",
    "queue t/0@0",
    "queue t/0@1",
    "queue t/0@2",
    "queue t/0@3",
    "queue nothing",
    "revoke [t/0@-,t/1@-]",
];
/// [`main_not_polled`] on `simulation(2, 4)`.
pub const MAIN_NOT_POLLED: &[&str] = &[
    "assign [t/0@-,t/1@-]",
    "main t/1@0",
    "queue t/0@0",
    "queue t/0@1",
    "queue t/0@2",
    "queue t/0@3",
    "queue nothing",
    "revoke [t/0@-,t/1@-]",
];
/// [`unknown_partition`] on `simulation(2, 4)`.
pub const UNKNOWN_PARTITION: &[&str] = &[
    "queue for t/7: true",
    "assign [t/0@-,t/1@-]",
    "main t/0-1",
    "queue error Message consumption error: UnknownPartition (Local: Unknown partition)",
    "revoke [t/0@-,t/1@-]",
];
/// [`dropped_queue`] on `simulation(2, 4)`.
pub const DROPPED_QUEUE: &[&str] = &[
    "assign [t/0@-,t/1@-]",
    "main t/1@0",
    "main t/1@1",
    "main t/1@2",
    "main t/1@3",
    "queue t/0@0",
    "queue t/0@1",
    "queue dropped",
    "main nothing",
    "split again",
    "queue t/0@2",
    "queue t/0@3",
    "queue nothing",
    "revoke [t/0@-,t/1@-]",
];
/// [`across_rebalance`] on `simulation(1, 4)`.
pub const ACROSS_REBALANCE: &[&str] = &[
    "assign [t/0@-]",
    "main nothing",
    "queue t/0@0",
    "queue t/0@1",
    "committed [t/0@2]",
    "revoke [t/0@-]",
    "assign [t/0@-,u/0@-]",
    "main nothing",
    "queue t/0@2",
    "queue t/0@3",
    "queue nothing",
    "revoke [t/0@-,u/0@-]",
];
/// [`cancel_safe`] on [`stalled_simulation`].
pub const CANCEL_SAFE: &[&str] = &[
    "assign [t/0@-]",
    "queue t/0@0",
    "queue t/0@1",
    "queue t/0@2",
    "queue t/0@3",
    "revoke [t/0@-]",
];
