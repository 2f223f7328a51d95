//! `recv` is cancel-safe, as rdkafka documents `StreamConsumer::recv`: a consumer that drops a
//! pending `recv` (a `select!` whose linger timer fires first) loses no record, on the
//! simulator and on librdkafka's mock cluster, also when the `recv` is stalled. The same holds
//! for a dropped `next()` of `stream()`.

use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::history::HistoryEvent;
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, InputRecord, KafkaConsumer, Operation, Outcome,
    Simulation,
};
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::consumer::CommitMode;
use rdkafka::message::Message;

/// How the batch loop waits for its next record.
#[derive(Clone, Copy, Debug)]
enum Receive {
    /// `consumer.recv()`.
    Recv,
    /// `next()` on `consumer.stream()`.
    StreamNext,
}

/// Five records; the `recv` of the second stalls for 300 ms. The consumer batches what it
/// receives, flushes (one effect per record, then a commit of the batch's last offset) when a
/// 100 ms linger timer fires, and stops once all five are flushed.
fn linger_batches(provider: Option<&BrokerProvider>, receive: Receive) -> Outcome {
    let mut b = Simulation::builder();
    b.topic("t", 1).faults(FaultSchedule::new().with(
        Anchor::on(Operation::Recv).record(0, 1),
        Fault::Stall(Duration::from_millis(300)),
    ));
    for n in 0..5 {
        b.produce(InputRecord::new("t").payload(format!("evt-{n}")));
    }
    let simulation = b.build().unwrap();
    let factory = move |ctx: effectively_once::InstanceContext| async move {
        let consumer = ctx.create_consumer(
            ClientConfig::new()
                .set("group.id", "batcher")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest"),
        )?;
        consumer.subscribe(&["t"])?;
        let sink = ctx.effect_sink("email");
        let mut batch: Vec<(String, i64)> = Vec::new();
        let mut flushed = 0;
        let mut linger = tokio::time::interval(Duration::from_millis(100));
        let mut messages = Box::pin(consumer.stream());
        while flushed < 5 {
            tokio::select! {
                biased;
                _ = linger.tick() => {
                    let Some(last) = batch.last().map(|(_, offset)| *offset) else {
                        continue;
                    };
                    for (event_id, _) in batch.drain(..) {
                        sink.perform(&event_id).await?;
                        flushed += 1;
                    }
                    let mut offsets = rdkafka::TopicPartitionList::new();
                    offsets.add_partition_offset("t", 0, rdkafka::Offset::Offset(last + 1))?;
                    consumer.commit(&offsets, CommitMode::Sync)?;
                }
                message = async {
                    match receive {
                        Receive::Recv => consumer.recv().await,
                        Receive::StreamNext => messages.next().await.expect("the stream is endless"),
                    }
                } => {
                    let message = message?;
                    let payload = String::from_utf8_lossy(message.payload().unwrap_or_default());
                    batch.push((payload.into_owned(), message.offset()));
                }
            }
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    };
    match provider {
        None => simulation.run(factory),
        Some(provider) => simulation.run_on(provider, factory),
    }
    .unwrap()
}

fn effects(outcome: &Outcome) -> Vec<String> {
    outcome
        .history()
        .events()
        .filter_map(|e| match e {
            HistoryEvent::Effect { event_id, .. } => Some(event_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_recv_dropped_by_a_linger_timer_loses_no_record_on_the_simulator_and_the_mock_cluster() {
    a_dropped_wait_loses_no_record(Receive::Recv);
}

#[test]
fn a_stream_next_dropped_by_a_linger_timer_loses_no_record_on_the_simulator_and_the_mock_cluster() {
    a_dropped_wait_loses_no_record(Receive::StreamNext);
}

fn a_dropped_wait_loses_no_record(receive: Receive) {
    for provider in [Some(BrokerProvider::MockCluster), None] {
        let outcome = linger_batches(provider.as_ref(), receive);
        let stalled = outcome
            .history()
            .events()
            .any(|e| matches!(e, HistoryEvent::FaultInjected { .. }));
        assert!(
            stalled,
            "{provider:?}: the stall fired\n{}",
            outcome.history()
        );
        assert_eq!(
            effects(&outcome),
            ["evt-0", "evt-1", "evt-2", "evt-3", "evt-4"],
            "{provider:?}\n{}",
            outcome.history()
        );
    }
}
