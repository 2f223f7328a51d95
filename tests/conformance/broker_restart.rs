//! A broker restart ([`Fault::BrokerRestart`]) as librdkafka lives through it against a broker
//! whose storage survives (measured on librdkafka's mock cluster, `tests/brokers/restart.rs`):
//! every consumer's poll reports the lost connection; fetches, produce requests and commits
//! wait for the broker; a restart shorter than the session keeps the group as it was, a longer
//! one costs every member its session (partitions lost, the waiting commit fails).

use std::time::Duration;

use effectively_once::history::{HistoryEvent, MemberRemoval};
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, KafkaConsumer, KafkaProducer, Operation, Outcome,
};
use rdkafka::consumer::CommitMode;
use rdkafka::producer::FutureRecord;

use crate::fixtures::commit_each;
use crate::support::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn run_commit_each(records: usize, faults: FaultSchedule) -> (Outcome, Vec<String>) {
    let mut b = builder(1, records);
    b.faults(faults);
    let notes = Notes::default();
    let seen = notes.clone();
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let notes = seen.clone();
            commit_each::run(ctx, GROUP, TOPIC, Some(6000), move |n| notes.push(n))
        })
        .unwrap();
    show(&outcome);
    (outcome, notes.all())
}

/// When the fault fired.
fn restart_at(outcome: &Outcome) -> Duration {
    outcome
        .history()
        .entries()
        .iter()
        .find(|e| {
            matches!(
                e.event,
                HistoryEvent::FaultInjected {
                    fault: Fault::BrokerRestart(_),
                    ..
                }
            )
        })
        .expect("the restart fired")
        .at
}

/// When offset `offset` of partition 0 was handed to the application, each time.
fn deliveries(outcome: &Outcome, offset: i64) -> Vec<Duration> {
    outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::Delivered { position, .. } if position.offset == offset => Some(e.at),
            _ => None,
        })
        .collect()
}

const TRANSPORT: &str =
    "Message consumption error: BrokerTransportFailure (Local: Broker transport failure)";

#[test]
fn a_short_restart_holds_the_commit_until_the_broker_is_back_and_keeps_the_group() {
    let down = Duration::from_millis(500);
    let (outcome, notes) = run_commit_each(
        3,
        FaultSchedule::new().with(
            Anchor::on(Operation::CommitMessage).record(0, 1),
            Fault::BrokerRestart(down),
        ),
    );
    // The commit waited for the broker and was applied; the lost connection was reported
    // once, by the next poll; nothing was redelivered.
    assert_eq!(
        notes,
        [
            "0@0 commit ok".to_string(),
            "0@1 commit ok".into(),
            format!("recv {TRANSPORT}"),
            "0@2 commit ok".into(),
        ]
    );
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(3));
    // No session ran out: the group is the one it was.
    assert!(
        !outcome
            .history()
            .events()
            .any(|e| matches!(e, HistoryEvent::MemberRemoved { .. }))
    );
    // The next record was fetched only when the broker was back.
    let [next] = deliveries(&outcome, 2)[..] else {
        panic!("offset 2 delivered once");
    };
    assert!(next >= restart_at(&outcome) + down, "{next:?}");
}

#[test]
fn a_restart_before_a_fetch_is_answered_delivers_that_record_once_after_the_broker_is_back() {
    let down = Duration::from_millis(500);
    let (outcome, notes) = run_commit_each(
        2,
        FaultSchedule::new().with(
            Anchor::on(Operation::Recv).record(0, 1),
            Fault::BrokerRestart(down),
        ),
    );
    assert_eq!(
        notes,
        [
            "0@0 commit ok".to_string(),
            format!("recv {TRANSPORT}"),
            "0@1 commit ok".into(),
        ]
    );
    let [delivered] = deliveries(&outcome, 1)[..] else {
        panic!("offset 1 delivered once");
    };
    assert!(delivered >= restart_at(&outcome) + down, "{delivered:?}");
}

#[test]
fn a_restart_that_outlasts_the_session_fails_the_waiting_commit_and_the_member_loses_its_partitions()
 {
    // session.timeout.ms=6000, down 10 s: librdkafka gives up on the commit, revokes its
    // partitions as lost and rejoins once the broker is back; the record is redelivered.
    let down = Duration::from_secs(10);
    let (outcome, notes) = run_commit_each(
        3,
        FaultSchedule::new().with(
            Anchor::on(Operation::CommitMessage).record(0, 1),
            Fault::BrokerRestart(down),
        ),
    );
    let at = restart_at(&outcome);
    assert_eq!(
        notes,
        [
            "0@0 commit ok".to_string(),
            "0@1 commit Consumer commit error: WaitingForCoordinator (Local: Waiting for coordinator)"
                .into(),
            format!("recv {TRANSPORT}"),
            "0@1 commit ok".into(),
            "0@2 commit ok".into(),
        ]
    );
    let removed: Vec<_> = outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::MemberRemoved { reason, .. } => Some((e.at, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(removed, [(at + secs(6), MemberRemoval::SessionTimeout)]);
    // Lost when the session ran out, while the broker was still down.
    let lost: Vec<Duration> = outcome
        .history()
        .entries()
        .iter()
        .filter(|e| matches!(e.event, HistoryEvent::PartitionsRevoked { lost: true, .. }))
        .map(|e| e.at)
        .collect();
    assert_eq!(lost, [at + secs(6)]);
    // Redelivered, once the broker was back.
    let again = deliveries(&outcome, 1);
    assert_eq!(again.len(), 2, "{again:?}");
    assert!(again[1] >= at + down, "{again:?}");
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(3));
}

#[test]
fn a_produce_request_waits_for_the_broker_and_is_appended_once() {
    let down = Duration::from_millis(500);
    let mut b = builder(1, 1);
    b.topic("out", 1)
        .faults(FaultSchedule::new().with(Anchor::on(Operation::Send), Fault::BrokerRestart(down)));
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
            let producer = ctx.create_producer(&rdkafka::ClientConfig::new())?;
            consumer.subscribe(&[TOPIC])?;
            loop {
                let Ok(m) = consumer.recv().await else {
                    continue;
                };
                producer
                    .send(FutureRecord::<(), [u8]>::to("out"), Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e)?;
                consumer.commit_message(&m, CommitMode::Sync)?;
            }
            #[allow(unreachable_code)]
            Ok::<(), BoxError>(())
        })
        .unwrap();
    show(&outcome);
    let produced: Vec<Duration> = outcome
        .history()
        .entries()
        .iter()
        .filter(|e| matches!(&e.event, HistoryEvent::RecordProduced { position, .. } if position.topic == "out"))
        .map(|e| e.at)
        .collect();
    assert_eq!(produced.len(), 1, "{produced:?}");
    assert!(produced[0] >= restart_at(&outcome) + down);
    assert_eq!(outcome.cluster().end_offset("out", 0), Some(1));
}

/// A consumer closed while the broker is down sends nothing that gets through: no final
/// commit and no LeaveGroup; its member stays until its session runs out (measured on the
/// mock cluster: `tests/brokers/close_during_outage.rs`), even though its process lives on.
#[test]
fn a_consumer_closed_during_an_outage_does_not_leave_its_member_times_out() {
    let mut b = builder(1, 2);
    b.faults(FaultSchedule::new().with(
        Anchor::on(Operation::Recv).record(0, 1),
        Fault::BrokerRestart(Duration::from_secs(2)),
    ));
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let mut config = manual_commit(GROUP);
            config.set("enable.auto.commit", "true");
            let consumer = ctx.create_consumer(&config)?;
            consumer.subscribe(&[TOPIC])?;
            consumer.recv().await?;
            // The broker goes down before the second record is handed out: the poll says so,
            // and the consumer closes right then; the process lives on.
            let lost = consumer.recv().await;
            assert!(lost.is_err(), "{lost:?}");
            drop(consumer);
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<(), BoxError>(())
        })
        .unwrap();
    show(&outcome);
    let down_at = restart_at(&outcome);
    let removed: Vec<(Duration, MemberRemoval)> = outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::MemberRemoved { reason, .. } => Some((e.at, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        removed,
        [(down_at + secs(6), MemberRemoval::SessionTimeout)],
        "removed 6 s (its session) after its last heartbeat, not when the broker came back"
    );
    let committed = outcome
        .history()
        .events()
        .any(|e| matches!(e, HistoryEvent::OffsetsCommitted { .. }));
    assert!(!committed, "the close's final commit did not get through");
}
