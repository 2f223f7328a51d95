//! Cancel-safety: rdkafka documents `StreamConsumer::recv` as cancel-safe (a future dropped
//! before it resolves loses no message), and a `FutureProducer`'s record is handed to
//! librdkafka when `send` is first polled, so dropping the delivery future does not take it
//! back.

use std::collections::BTreeMap;
use std::time::Duration;

use effectively_once::history::HistoryEvent;
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, KafkaConsumer, KafkaProducer, Operation,
};
use rdkafka::consumer::CommitMode;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;

use crate::support::*;

/// A batch loop: records go into a batch until a 100 ms linger timer fires; then each is
/// processed and the last one committed. The timer branch comes first (`biased;`), so a recv
/// still pending when the timer fires is dropped.
async fn linger_batches(ctx: effectively_once::InstanceContext) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
    consumer.subscribe(&[TOPIC])?;
    let sink = ctx.effect_sink("e");
    let mut batch = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                for m in &batch {
                    sink.perform(&payload(m)).await?;
                }
                if let Some(last) = batch.last() {
                    consumer.commit_message(last, CommitMode::Sync)?;
                }
                batch.clear();
            }
            m = consumer.recv() => batch.push(m?),
        }
    }
}

fn deliveries(outcome: &effectively_once::Outcome) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for e in outcome.history().events() {
        if let HistoryEvent::Delivered { position, .. } = e {
            *counts.entry(position.offset).or_insert(0) += 1;
        }
    }
    counts
}

fn a_dropped_recv_loses_nothing(fault: Fault) {
    let mut b = builder(1, 4);
    b.faults(FaultSchedule::new().with(Anchor::on(Operation::Recv).record(0, 1), fault));
    let outcome = b.build().unwrap().run(linger_batches).unwrap();
    show(&outcome);
    assert!(outcome.history().quiesced(), "{fault}");
    let fired = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::FaultInjected { .. })
    });
    assert_eq!(fired.len(), 1, "{fault}");
    let effects = outcome.history().effect_counts("e");
    let expected: BTreeMap<String, usize> = (0..4).map(|n| (format!("p0-{n}"), 1)).collect();
    assert_eq!(effects, expected, "{fault}: every record processed once");
    let expected: BTreeMap<i64, usize> = (0..4).map(|o| (o, 1)).collect();
    assert_eq!(
        deliveries(&outcome),
        expected,
        "{fault}: every record delivered once"
    );
}

#[test]
fn a_recv_dropped_during_a_stall_on_its_record_loses_nothing() {
    a_dropped_recv_loses_nothing(Fault::Stall(secs(20)));
}

#[test]
fn a_recv_dropped_when_its_process_thaws_loses_nothing() {
    // Shorter than session.timeout.ms: the member keeps its partition.
    a_dropped_recv_loses_nothing(Fault::Freeze(secs(2)));
}

#[test]
fn a_record_is_delivered_when_the_recv_future_resolves_not_when_it_is_picked() {
    // A stall of 3 s on the recv of offset 1: the record is handed over 3 s later, and the
    // history says so (its delivery, its stored offset).
    let mut b = builder(1, 2);
    b.faults(FaultSchedule::new().with(
        Anchor::on(Operation::Recv).record(0, 1),
        Fault::Stall(secs(3)),
    ));
    let notes = Notes::default();
    let seen = notes.clone();
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let notes = seen.clone();
            async move {
                let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
                consumer.subscribe(&[TOPIC])?;
                let start = tokio::time::Instant::now();
                loop {
                    let m = consumer.recv().await?;
                    notes.push(format!("{} at {}s", m.offset(), start.elapsed().as_secs()));
                    consumer.commit_message(&m, CommitMode::Sync)?;
                }
                #[allow(unreachable_code)]
                Ok::<(), BoxError>(())
            }
        })
        .unwrap();
    show(&outcome);
    assert_eq!(notes.all(), ["0 at 0s", "1 at 3s"]);
    let fault_at = entries_where(&outcome, |e| {
        matches!(e, HistoryEvent::FaultInjected { .. })
    })[0]
        .at;
    let delivered_at = entries_where(
        &outcome,
        |e| matches!(e, HistoryEvent::Delivered { position, .. } if position.offset == 1),
    )[0]
    .at;
    assert_eq!(delivered_at, fault_at + secs(3));
}

#[test]
fn a_send_whose_delivery_future_is_dropped_still_reaches_the_broker() {
    // rdkafka's FutureProducer enqueues the record when `send` is first polled; dropping the
    // delivery future does not cancel it. A stall on the send holds up the acknowledgement.
    let mut b = builder(1, 0);
    b.topic("out", 1).faults(FaultSchedule::new().with(
        Anchor::on(Operation::Send).occurrence(1),
        Fault::Stall(secs(5)),
    ));
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let producer = ctx.create_producer(&producer_config(&[]))?;
            let record = FutureRecord::<(), str>::to("out").payload("x");
            let sent = tokio::time::timeout(
                Duration::from_millis(100),
                producer.send(record, Timeout::Never),
            )
            .await;
            assert!(sent.is_err(), "the stalled send is still pending");
            tokio::time::sleep(secs(10)).await;
            Ok::<(), BoxError>(())
        })
        .unwrap();
    show(&outcome);
    assert_eq!(payloads(&outcome, "out", 0), ["x"]);
}
