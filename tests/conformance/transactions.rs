//! Transactions: `transactional.id` epochs and fencing, markers that occupy offsets, the last
//! stable offset, `isolation.level`, offsets committed with the transaction, the transaction
//! timeout, and librdkafka's errors for calls out of order.

use std::time::Duration;

use effectively_once::clients::GroupMetadata;
use effectively_once::history::HistoryEvent;
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, InstanceContext, KafkaConsumer, KafkaProducer,
    Operation, Outcome, Simulation, SimulationBuilder,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::support::*;

const OUT: &str = "out";
const T: Duration = Duration::from_secs(5);

fn transactional(id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("transactional.id", id);
    c
}

fn reader(group: &str, isolation: &str) -> ClientConfig {
    let mut c = manual_commit(group);
    c.set("isolation.level", isolation);
    c
}

async fn send<P: KafkaProducer>(producer: &P, payload: &str) -> Result<(), KafkaError> {
    producer
        .send(FutureRecord::<(), _>::to(OUT).payload(payload), T)
        .await
        .map(drop)
        .map_err(|(e, _)| e)
}

/// Reads `OUT` forever with `config`, noting `{label}:{payload}@{seconds}` per record.
async fn read_out(ctx: &InstanceContext, config: ClientConfig, label: &str, notes: &Notes) {
    let consumer = ctx.create_consumer(&config).expect("consumer");
    consumer.subscribe(&[OUT]).expect("subscribe");
    let start = tokio::time::Instant::now();
    loop {
        let m = consumer.recv().await.expect("recv");
        let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        notes.push(format!("{label}:{payload}@{}", start.elapsed().as_secs()));
        consumer
            .commit_message(&m, rdkafka::consumer::CommitMode::Sync)
            .expect("commit");
    }
}

fn sim() -> SimulationBuilder {
    let mut b = Simulation::builder();
    b.topic(OUT, 1).topic(TOPIC, 1);
    b
}

/// Runs `writer` as instance 0 next to a `read_committed` reader (instance 1, notes `rc:`)
/// and a `read_uncommitted` one (instance 2, notes `ru:`) of `OUT`.
fn with_both_readers<F, Fut>(writer: F) -> (Outcome, Notes)
where
    F: Fn(InstanceContext) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let notes = Notes::default();
    let mut b = sim();
    b.instances(3);
    let n = notes.clone();
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let (n, writer) = (n.clone(), writer.clone());
            async move {
                match ctx.instance().0 {
                    0 => writer(ctx).await,
                    1 => read_out(&ctx, reader("rc", "read_committed"), "rc", &n).await,
                    _ => read_out(&ctx, reader("ru", "read_uncommitted"), "ru", &n).await,
                }
            }
        })
        .unwrap();
    (outcome, notes)
}

fn code(e: &KafkaError) -> (RDKafkaErrorCode, bool, bool) {
    match e {
        KafkaError::Transaction(e) => (e.code(), e.is_fatal(), e.txn_requires_abort()),
        other => panic!("not a transactional error: {other:?}"),
    }
}

fn notes_of(outcome: &Outcome, notes: &Notes) -> Vec<String> {
    show(outcome);
    let mut all = notes.all();
    all.sort();
    all
}

#[test]
fn markers_occupy_offsets_and_read_committed_skips_aborted_records_read_uncommitted_does_not() {
    let (outcome, notes) = with_both_readers(|ctx| async move {
        let p = ctx.create_producer(&transactional("tx")).unwrap();
        p.init_transactions(T).unwrap();
        for (payloads, commit) in [(&["a", "b"][..], true), (&["c"], false)] {
            p.begin_transaction().unwrap();
            for payload in payloads {
                send(&p, payload).await.unwrap();
            }
            if commit {
                p.commit_transaction(T).unwrap();
            } else {
                p.abort_transaction(T).unwrap();
            }
        }
        p.begin_transaction().unwrap();
        send(&p, "d").await.unwrap();
        p.commit_transaction(T).unwrap();
    });
    let log: Vec<(bool, bool)> = outcome
        .cluster()
        .records(OUT, 0)
        .iter()
        .map(|r| (r.control, r.aborted))
        .collect();
    // a b COMMIT c ABORT d COMMIT
    assert_eq!(
        log,
        [
            (false, false),
            (false, false),
            (true, false),
            (false, true),
            (true, false),
            (false, false),
            (true, false)
        ]
    );
    let seen: Vec<String> = notes_of(&outcome, &notes)
        .into_iter()
        .map(|n| n.split('@').next().unwrap().to_string())
        .collect();
    assert_eq!(
        seen,
        ["rc:a", "rc:b", "rc:d", "ru:a", "ru:b", "ru:c", "ru:d"]
    );
    assert!(
        outcome.history().quiesced(),
        "markers do not hold quiescence back"
    );
}

#[test]
fn read_committed_never_reads_past_the_last_stable_offset() {
    let (outcome, notes) = with_both_readers(|ctx| async move {
        let p = ctx.create_producer(&transactional("tx")).unwrap();
        p.init_transactions(T).unwrap();
        p.begin_transaction().unwrap();
        send(&p, "in-txn").await.unwrap();
        // A plain record after the open transaction's first record.
        let plain = ctx.create_producer(&ClientConfig::new()).unwrap();
        send(&plain, "plain").await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        p.commit_transaction(T).unwrap();
    });
    assert_eq!(
        notes_of(&outcome, &notes),
        ["rc:in-txn@10", "rc:plain@10", "ru:in-txn@0", "ru:plain@0"]
    );
}

#[test]
fn init_transactions_fences_the_older_epoch_and_aborts_its_open_transaction() {
    let notes = Notes::default();
    let mut b = sim();
    b.instances(2);
    let n = notes.clone();
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let n = n.clone();
            async move {
                if ctx.instance().0 == 1 {
                    return read_out(&ctx, reader("rc", "read_committed"), "rc", &n).await;
                }
                let zombie = ctx.create_producer(&transactional("tx")).unwrap();
                zombie.init_transactions(T).unwrap();
                zombie.begin_transaction().unwrap();
                send(&zombie, "zombie-1").await.unwrap();
                let fresh = ctx.create_producer(&transactional("tx")).unwrap();
                fresh.init_transactions(T).unwrap();
                let e = send(&zombie, "zombie-2").await.unwrap_err();
                n.push(format!("zombie send: {:?}", e.rdkafka_error_code()));
                let e = zombie.commit_transaction(T).unwrap_err();
                n.push(format!("zombie commit: {:?}", code(&e)));
                fresh.begin_transaction().unwrap();
                send(&fresh, "fresh").await.unwrap();
                fresh.commit_transaction(T).unwrap();
            }
        })
        .unwrap();
    let events: Vec<&HistoryEvent> = outcome.history().events().collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, HistoryEvent::TransactionsInitialized { epoch: 1, .. }))
    );
    assert!(
        events.iter().any(|e| matches!(e,
        HistoryEvent::TransactionAborted { reason, .. } if reason == "fenced by a newer instance"))
    );
    let aborted: Vec<bool> = outcome
        .cluster()
        .records(OUT, 0)
        .iter()
        .filter(|r| !r.control)
        .map(|r| r.aborted)
        .collect();
    assert_eq!(
        aborted,
        [true, false],
        "zombie-1 aborted; zombie-2 never written"
    );
    assert_eq!(
        notes_of(&outcome, &notes),
        [
            "rc:fresh@0",
            "zombie commit: (Fenced, true, false)",
            "zombie send: Some(Fenced)",
        ]
    );
}

#[test]
fn offsets_sent_to_a_transaction_are_committed_if_and_only_if_it_commits() {
    let b = sim();
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&manual_commit(GROUP)).unwrap();
            consumer.subscribe(&[TOPIC]).unwrap();
            let metadata = consumer.group_metadata().expect("metadata");
            let p = ctx.create_producer(&transactional("tx")).unwrap();
            p.init_transactions(T).unwrap();
            for (offset, commit) in [(5, false), (7, true), (9, false)] {
                let mut offsets = TopicPartitionList::new();
                offsets
                    .add_partition_offset(TOPIC, 0, Offset::Offset(offset))
                    .unwrap();
                p.begin_transaction().unwrap();
                p.send_offsets_to_transaction(&offsets, &metadata, T)
                    .unwrap();
                if commit {
                    p.commit_transaction(T).unwrap();
                } else {
                    p.abort_transaction(T).unwrap();
                }
            }
        })
        .unwrap();
    show(&outcome);
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(7));
}

#[test]
fn a_transaction_open_longer_than_its_timeout_is_aborted_and_its_producer_fenced() {
    let notes = Notes::default();
    let n = notes.clone();
    let outcome = sim()
        .build()
        .unwrap()
        .run(move |ctx| {
            let n = n.clone();
            async move {
                let mut config = transactional("tx");
                config.set("transaction.timeout.ms", "2000");
                let p = ctx.create_producer(&config).unwrap();
                p.init_transactions(T).unwrap();
                p.begin_transaction().unwrap();
                send(&p, "slow").await.unwrap();
                tokio::time::sleep(Duration::from_secs(3)).await;
                n.push(format!("{:?}", code(&p.commit_transaction(T).unwrap_err())));
            }
        })
        .unwrap();
    show(&outcome);
    assert_eq!(notes.all(), ["(Fenced, true, false)"]);
    assert!(outcome.cluster().records(OUT, 0)[0].aborted);
    assert!(outcome.history().events().any(|e| matches!(e,
        HistoryEvent::TransactionAborted { reason, .. } if reason.contains("transaction.timeout.ms"))));
}

#[test]
fn an_ambiguous_commit_transaction_commits_and_aborting_it_afterwards_is_fatal() {
    let notes = Notes::default();
    let n = notes.clone();
    let mut b = sim();
    b.faults(FaultSchedule::new().with(Anchor::on(Operation::CommitTransaction), Fault::Ambiguous));
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let n = n.clone();
            async move {
                let p = ctx.create_producer(&transactional("tx")).unwrap();
                p.init_transactions(T).unwrap();
                p.begin_transaction().unwrap();
                send(&p, "x").await.unwrap();
                let e = p.commit_transaction(T).unwrap_err();
                n.push(format!("commit: {:?}", code(&e)));
                let e = p.abort_transaction(T).unwrap_err();
                n.push(format!("abort: {:?}", code(&e)));
            }
        })
        .unwrap();
    show(&outcome);
    assert_eq!(
        notes.all(),
        [
            "commit: (RequestTimedOut, false, true)",
            "abort: (InvalidTransactionalState, true, false)"
        ]
    );
    let log = outcome.cluster().records(OUT, 0);
    assert_eq!(
        (log.len(), log[0].aborted, log[1].control),
        (2, false, true)
    );
}

#[test]
fn transactional_calls_out_of_order_are_librdkafka_state_errors() {
    let notes = Notes::default();
    let n = notes.clone();
    let outcome = sim()
        .build()
        .unwrap()
        .run(move |ctx| {
            let n = n.clone();
            async move {
                let p = ctx.create_producer(&transactional("tx")).unwrap();
                let note = |what: &str, e: KafkaError| {
                    n.push(format!("{what}: {:?} {e}", code(&e)));
                };
                note("begin before init", p.begin_transaction().unwrap_err());
                p.init_transactions(T).unwrap();
                note("commit without begin", p.commit_transaction(T).unwrap_err());
                let e = send(&p, "outside").await.unwrap_err();
                n.push(format!("send outside: {:?}", e.rdkafka_error_code()));
                p.begin_transaction().unwrap();
                note("begin twice", p.begin_transaction().unwrap_err());
            }
        })
        .unwrap();
    show(&outcome);
    assert_eq!(
        notes.all(),
        [
            "begin before init: (State, false, false) Transaction error: Operation not valid in state Init",
            "commit without begin: (State, false, false) Transaction error: Operation not valid in state Ready",
            "send outside: Some(State)",
            "begin twice: (State, false, false) Transaction error: Operation not valid in state InTransaction",
        ]
    );
}

#[test]
fn offsets_from_a_consumer_of_an_older_generation_are_refused_and_the_transaction_must_abort() {
    // KIP-447 (Kafka 2.5+): the coordinator checks the consumer's group metadata, so a zombie
    // whose partitions moved on cannot commit its transaction.
    let notes = Notes::default();
    let n = notes.clone();
    let mut b = builder(1, 3);
    b.topic(OUT, 1).faults(FaultSchedule::new().with(
        Anchor::on(Operation::Recv).occurrence(2),
        Fault::Freeze(secs(30)),
    ));
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let n = n.clone();
            async move {
                let consumer = ctx.create_consumer(&manual_commit(GROUP)).unwrap();
                consumer.subscribe(&[TOPIC]).unwrap();
                consumer.recv().await.unwrap();
                let before = consumer.group_metadata().unwrap();
                // Frozen for 30 s: the session times out and the member is removed; the
                // record is delivered all the same, and the consumer learns on its next poll.
                consumer.recv().await.unwrap();
                let p = ctx.create_producer(&transactional("tx")).unwrap();
                p.init_transactions(T).unwrap();
                let attempt = |label: &'static str, metadata: GroupMetadata, next: i64| {
                    let (p, n) = (&p, n.clone());
                    async move {
                        let mut offsets = TopicPartitionList::new();
                        offsets
                            .add_partition_offset(TOPIC, 0, Offset::Offset(next))
                            .unwrap();
                        p.begin_transaction().unwrap();
                        send(p, label).await.unwrap();
                        match p.send_offsets_to_transaction(&offsets, &metadata, T) {
                            Ok(()) => {
                                p.commit_transaction(T).unwrap();
                                n.push(format!("{label}: committed at {next}"));
                            }
                            Err(e) => {
                                n.push(format!("{label}: {:?}", code(&e)));
                                p.abort_transaction(T).unwrap();
                            }
                        }
                    }
                };
                attempt("zombie", before, 2).await;
                // The next poll rejoins; the group starts over from the committed offset.
                let m = consumer.recv().await.unwrap();
                let fresh = consumer.group_metadata().unwrap();
                attempt("rejoined", fresh, m.offset() + 1).await;
            }
        })
        .unwrap();
    show(&outcome);
    assert_eq!(
        notes.all(),
        [
            "zombie: (IllegalGeneration, false, true)",
            "rejoined: committed at 1"
        ]
    );
    let aborted: Vec<bool> = outcome
        .cluster()
        .records(OUT, 0)
        .iter()
        .filter(|r| !r.control)
        .map(|r| r.aborted)
        .collect();
    assert_eq!(aborted, [true, false]);
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(1));
}

#[test]
fn a_transactional_error_returned_by_the_consumer_reads_the_same_in_every_process() {
    // Same seed, same bytes: librdkafka's message for a zombie's refused offsets names the
    // broker that answered, which for the simulator is the kit's probe on a random port. The
    // history (and so the report) must not carry that port.
    let run = || {
        let mut b = builder(1, 2);
        b.topic(OUT, 1)
            .max_restarts(0)
            .faults(FaultSchedule::new().with(
                Anchor::on(Operation::Recv).occurrence(2),
                Fault::Freeze(secs(30)),
            ));
        let outcome = b
            .build()
            .unwrap()
            .run(|ctx| async move {
                let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
                consumer.subscribe(&[TOPIC])?;
                consumer.recv().await?;
                let before = consumer.group_metadata().ok_or("no metadata")?;
                consumer.recv().await?;
                let p = ctx.create_producer(&transactional("tx"))?;
                p.init_transactions(T)?;
                p.begin_transaction()?;
                let mut offsets = TopicPartitionList::new();
                offsets.add_partition_offset(TOPIC, 0, Offset::Offset(2))?;
                p.send_offsets_to_transaction(&offsets, &before, T)?;
                Ok::<(), BoxError>(())
            })
            .unwrap();
        outcome.history().to_string()
    };
    let first = run();
    println!("{first}");
    assert_eq!(first, run());
    assert!(
        first.contains(
            "Transaction error: Failed to commit offsets to transaction on broker \
             kit-probe:9092/1: effectively-once-probe((null))[0](Broker: Specified group \
             generation id is not valid)"
        ),
        "{first}"
    );
}
