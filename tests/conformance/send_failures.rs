//! Sends that fail: a failed send returns `MessageTimedOut` and appends nothing, an ambiguous
//! one returns the same error but the record is appended, unknown partitions and topics fail
//! with librdkafka's errors, and a crash before or after a send loses or keeps the record.

use effectively_once::history::{HistoryEvent, TopicPartition};
use effectively_once::{Anchor, Fault, FaultSchedule, Operation, Outcome, Simulation};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use effectively_once::KafkaProducer;

use crate::support::*;

// ----- failed and ambiguous sends -----

#[test]
fn a_failed_send_returns_message_timed_out_and_appends_nothing() {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1)
        .faults(FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::Fail));
    let run = produce(
        &b,
        producer_config(&[]),
        vec![Out::to(TOPIC, "a").key("ka"), Out::to(TOPIC, "b").key("kb")],
    );
    assert!(run.outcome.unfired_faults().is_empty());
    let (error, message) = run.error(0);
    assert_eq!(
        *error,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    );
    // rdkafka hands the undelivered message back.
    assert_eq!(message.payload(), Some(&b"a"[..]));
    assert_eq!(message.key(), Some(&b"ka"[..]));
    assert_eq!(message.topic(), TOPIC);
    // Nothing was appended: the next record takes offset 0.
    assert_eq!(run.delivery(1).offset, 0);
    assert_eq!(payloads(&run.outcome, TOPIC, 0), ["b"]);
    assert!(run.outcome.history().events().any(|e| matches!(
        e,
        HistoryEvent::ProduceFailed { appended: false, partition, .. }
            if *partition == TopicPartition::new(TOPIC, 0)
    )));
}

#[test]
fn an_ambiguous_send_returns_message_timed_out_but_the_record_is_appended() {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1)
        .faults(FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::Ambiguous));
    let run = produce(
        &b,
        producer_config(&[]),
        vec![
            Out::to(TOPIC, "a"),
            // The application retries what it believes failed: a duplicate.
            Out::to(TOPIC, "a"),
        ],
    );
    assert!(run.outcome.unfired_faults().is_empty());
    let (error, message) = run.error(0);
    assert_eq!(
        *error,
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)
    );
    assert_eq!(message.payload(), Some(&b"a"[..]));
    assert_eq!(run.delivery(1).offset, 1);
    assert_eq!(payloads(&run.outcome, TOPIC, 0), ["a", "a"]);
    assert!(
        run.outcome
            .history()
            .events()
            .any(|e| matches!(e, HistoryEvent::ProduceFailed { appended: true, .. }))
    );
}

#[test]
fn sending_to_a_partition_the_topic_does_not_have_fails_with_unknown_partition() {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 2);
    let run = produce(
        &b,
        producer_config(&[]),
        vec![Out::to(TOPIC, "a").partition(2), Out::to(TOPIC, "b")],
    );
    assert_eq!(
        run.error(0).0,
        KafkaError::MessageProduction(RDKafkaErrorCode::UnknownPartition)
    );
    assert!(run.delivery(1).offset == 0);
    assert_eq!(
        run.outcome.cluster().records(TOPIC, 0).len()
            + run.outcome.cluster().records(TOPIC, 1).len(),
        1
    );
}

#[test]
fn sending_to_a_topic_that_does_not_exist_fails_with_unknown_topic_or_partition() {
    // The simulated cluster does not auto-create topics: librdkafka fails the message with the
    // metadata error, UNKNOWN_TOPIC_OR_PART (rdkafka_topic.c, rd_kafka_topic_assign_uas).
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1);
    let run = produce(
        &b,
        producer_config(&[]),
        vec![Out::to("no-such-topic", "a"), Out::to(TOPIC, "b")],
    );
    assert_eq!(
        run.error(0).0,
        KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    assert_eq!(run.delivery(1).offset, 0);
}

// ----- crashes around a send -----

/// Incarnation 1 sends `a`, incarnation 2 sends `b`; both with `config`.
fn send_a_then_b_after_restart(config: ClientConfig, faults: FaultSchedule) -> Outcome {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 1).faults(faults);
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let config = config.clone();
            async move {
                let producer = ctx.create_producer(&config)?;
                let payload = if ctx.incarnation().number == 1 {
                    "a"
                } else {
                    "b"
                };
                producer
                    .send(
                        FutureRecord::<str, str>::to(TOPIC)
                            .key("k")
                            .payload(payload),
                        Timeout::Never,
                    )
                    .await
                    .map_err(|(e, _)| e)?;
                Ok::<(), KafkaError>(())
            }
        })
        .unwrap();
    show(&outcome);
    assert!(outcome.unfired_faults().is_empty());
    outcome
}

#[test]
fn a_crash_before_a_send_appends_nothing_and_a_crash_after_it_keeps_the_record() {
    let before = send_a_then_b_after_restart(
        producer_config(&[]),
        FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::CrashBefore),
    );
    assert_eq!(payloads(&before, TOPIC, 0), ["b"]);
    let after = send_a_then_b_after_restart(
        producer_config(&[]),
        FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::CrashAfter),
    );
    assert_eq!(payloads(&after, TOPIC, 0), ["a", "b"]);
}
