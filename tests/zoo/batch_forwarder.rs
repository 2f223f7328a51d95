//! A transactional forwarder that commits every `N` records and does nothing when its
//! partitions are revoked: the open transaction later commits the offsets of a partition
//! another member took over and already processed again, duplicating its outputs. The search
//! reports the duplicate, not only the wedge of the last partial batch.

use std::collections::BTreeMap;
use std::time::Duration;

use effectively_once::{
    ConsumerHandle, Counterexample, FaultKind, InstanceContext, KafkaConsumer, KafkaProducer,
    Verifier, check::check_exactly_once,
};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::fixtures::notification::{BoxError, TOPIC, TaskCreated};
use crate::fixtures::pipeline::{self, AUDIT, SUMMARIES, Wiring, send};
use crate::support::*;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Forwards each record to both output topics in a transaction that commits every `batch`
/// records with their offsets; a revoke leaves the transaction open.
async fn batch_forwarder(ctx: InstanceContext, batch: usize) -> Result<(), BoxError> {
    let consumer = ctx.create_consumer(&pipeline::consumer_config())?;
    let producer = ctx.create_producer(&pipeline::producer_config(&ctx, Wiring::Transactional))?;
    producer.init_transactions(TIMEOUT)?;
    consumer.subscribe(&[TOPIC])?;
    let mut pending: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut in_transaction = 0;
    loop {
        let message = consumer.recv().await?;
        if in_transaction == 0 {
            producer.begin_transaction()?;
        }
        if let Ok(event) = TaskCreated::parse(&message) {
            let summary = json!({ "event_id": event.event_id, "task": event.task_id });
            send(&producer, SUMMARIES, &event.task_id, summary).await?;
            let audit = json!({ "event_id": event.event_id, "action": "forwarded" });
            send(&producer, AUDIT, &event.task_id, audit).await?;
        }
        pending.insert(
            (message.topic().to_string(), message.partition()),
            message.offset() + 1,
        );
        in_transaction += 1;
        if in_transaction == batch {
            let mut offsets = TopicPartitionList::new();
            for ((topic, partition), offset) in std::mem::take(&mut pending) {
                offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
            }
            let metadata = consumer
                .group_metadata()
                .ok_or("the consumer has no group metadata")?;
            producer.send_offsets_to_transaction(&offsets, &metadata, TIMEOUT)?;
            producer.commit_transaction(TIMEOUT)?;
            in_transaction = 0;
        }
    }
}

fn verifier() -> Verifier {
    let mut v = notification_verifier();
    for output in pipeline::outputs() {
        v.output_topic(output);
    }
    v
}

fn invariants(c: &Counterexample) -> Vec<&str> {
    std::iter::once(c)
        .chain(c.other_violations())
        .map(|c| c.violation().invariant.as_str())
        .collect()
}

#[test]
fn a_batch_left_open_on_revoke_duplicates_its_outputs_and_the_search_says_so() {
    // The default fault kinds and case count.
    let c = counterexample(check_exactly_once(&verifier(), |ctx| {
        batch_forwarder(ctx, 2)
    }));
    println!("{c}");
    // The duplicate first, though the partial batch wedges the group too; each invariant
    // with its own minimal scenario.
    assert_eq!(
        invariants(&c),
        ["exactly-once", "offsets match outputs", "liveness"],
        "{c}"
    );
    assert!(
        c.violation()
            .details
            .iter()
            .all(|d| d.ends_with("DUPLICATED")),
        "{c}"
    );
    // A member joins while the other holds an open batch: one event, no fault.
    assert_eq!(
        (
            c.scenario.events.len(),
            c.scenario.faults.len(),
            c.scenario.late_joins.len()
        ),
        (1, 0, 1),
        "{c}"
    );
    let liveness = &c.other_violations()[1];
    assert_eq!(
        (
            liveness.scenario.events.len(),
            liveness.scenario.faults.len()
        ),
        (1, 0),
        "the partial batch alone: {c}"
    );
}

#[test]
fn the_default_space_has_a_member_join_while_another_holds_an_open_batch() {
    // Whole batches only: the work is uncommitted only while the consumer is in the middle
    // of its input, so only a member that joins then finds it.
    let mut v = verifier();
    v.events(4..=4).faults(&[FaultKind::LateJoin]);
    let c = counterexample(check_exactly_once(&v, |ctx| batch_forwarder(ctx, 2)));
    println!("{c}");
    assert_eq!(c.violation().invariant, "exactly-once", "{c}");
    assert!(
        c.violation()
            .details
            .iter()
            .all(|d| d.ends_with("DUPLICATED")),
        "{c}"
    );
    assert_eq!(c.scenario.late_joins.len(), 1, "{c}");
}
