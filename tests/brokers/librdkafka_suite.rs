//! Behaviours librdkafka's own test suite asserts (its tests 0030, 0089, 0103, 0113, 0118 and
//! 0130), each run through the kit's API on the simulator and on librdkafka against its mock
//! cluster: the same consumer code must see the same thing on both.

use std::future::Future;
use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::{
    Anchor, ConsumerHandle, Fault, FaultSchedule, InputRecord, InstanceContext, InstanceExit,
    KafkaConsumer, KafkaProducer, Operation, Outcome, RebalanceHandler, Simulation,
};
use rdkafka::consumer::{CommitMode, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

use crate::notes::Notes;

/// `t/0@3,u/1@-` style: each partition with its offset (`-` for `Offset::Invalid`).
fn list(l: &TopicPartitionList) -> String {
    let entries: Vec<String> = l
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}/{}@{o}", e.topic(), e.partition()),
            Offset::Invalid => format!("{}/{}@-", e.topic(), e.partition()),
            other => format!("{}/{}@{other:?}", e.topic(), e.partition()),
        })
        .collect();
    format!("[{}]", entries.join(","))
}

fn outcome(result: KafkaResult<()>) -> String {
    match result {
        Ok(()) => "ok".into(),
        Err(KafkaError::Transaction(e)) => format!(
            "{:?} (fatal: {}, abortable: {}, retriable: {}): {e}",
            e.code(),
            e.is_fatal(),
            e.txn_requires_abort(),
            e.is_retriable()
        ),
        Err(e) => e.to_string(),
    }
}

/// A rebalance handler that notes every callback; `on_revoke` runs inside the revoke callback
/// and its note follows.
struct Noting {
    notes: Notes,
    on_revoke: fn(&dyn ConsumerHandle) -> Option<String>,
}

impl Noting {
    fn new(notes: &Notes) -> Self {
        Noting {
            notes: notes.clone(),
            on_revoke: |_| None,
        }
    }
}

impl RebalanceHandler for Noting {
    fn pre_rebalance(&self, consumer: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(l) => self.notes.push(format!("assign {}", list(l))),
            Rebalance::Revoke(l) => {
                self.notes.push(format!("revoke {}", list(l)));
                if let Some(note) = (self.on_revoke)(consumer) {
                    self.notes.push(note);
                }
            }
            Rebalance::Error(e) => self.notes.push(format!("rebalance error {e}")),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.notes.push(format!(
            "commit callback {}: {}",
            list(offsets),
            outcome(result)
        ));
    }
}

fn consumer_config(group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    config
}

/// `records` records on partition 0 of `t` (of `partitions`).
fn simulation(partitions: i32, records: usize) -> Simulation {
    let mut b = Simulation::builder();
    b.topic("t", partitions);
    for n in 0..records {
        b.produce(InputRecord::new("t").partition(0).payload(format!("e{n}")));
    }
    b.time_limit(Duration::from_secs(60)).build().unwrap()
}

/// Runs `factory` on the simulator and on the mock cluster; the notes of each, with the
/// outcome.
fn on_both<F, Fut>(sim: &Simulation, factory: F) -> [(Outcome, Vec<String>); 2]
where
    F: Fn(InstanceContext, Notes) -> Fut + Clone + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let run = |provider: Option<&BrokerProvider>| {
        let notes = Notes::default();
        let seen = notes.clone();
        let factory = factory.clone();
        let f = move |ctx| factory(ctx, seen.clone());
        let outcome = match provider {
            None => sim.run(f),
            Some(p) => sim.run_on(p, f),
        }
        .unwrap();
        let notes = notes.all();
        println!(
            "--- {}:\n{notes:#?}\n{}",
            provider.map_or("simulator".into(), |p| p.to_string()),
            outcome.history()
        );
        (outcome, notes)
    };
    [run(None), run(Some(&BrokerProvider::MockCluster))]
}

/// Waits for the next record, at most `secs` seconds; notes what came.
async fn next<C: KafkaConsumer>(consumer: &C, secs: u64, notes: &Notes, who: &str) {
    match tokio::time::timeout(Duration::from_secs(secs), consumer.recv()).await {
        Ok(Ok(m)) => notes.push(format!(
            "{who} got {}/{}@{}",
            m.topic(),
            m.partition(),
            m.offset()
        )),
        Ok(Err(e)) => notes.push(format!("{who} recv error {e}")),
        Err(_) => {}
    }
}

/// librdkafka's 0103 (`do_test_txn_local`): transactional calls on a producer without a
/// `transactional.id` fail with `_NOT_CONFIGURED`.
#[test]
fn transactional_calls_without_a_transactional_id_fail_with_not_configured() {
    let [sim, real] = on_both(&simulation(1, 0), |ctx, notes| async move {
        let producer = ctx.create_producer(&ClientConfig::new())?;
        let consumer = ctx.create_consumer(&consumer_config("g"))?;
        let timeout = Duration::from_secs(5);
        notes.push(format!(
            "init: {}",
            outcome(producer.init_transactions(timeout))
        ));
        notes.push(format!("begin: {}", outcome(producer.begin_transaction())));
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset("t", 0, Offset::Offset(0))?;
        let metadata = consumer.group_metadata().ok_or("no group metadata")?;
        notes.push(format!(
            "send offsets: {}",
            outcome(producer.send_offsets_to_transaction(&offsets, &metadata, timeout))
        ));
        notes.push(format!(
            "commit: {}",
            outcome(producer.commit_transaction(timeout))
        ));
        notes.push(format!(
            "abort: {}",
            outcome(producer.abort_transaction(timeout))
        ));
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert_eq!(sim.1.len(), 5);
    assert!(
        sim.1
            .iter()
            .all(|n| n.contains("NotConfigured (fatal: false")),
        "{:#?}",
        sim.1
    );
}

/// librdkafka's 0030 (`do_nonexist_commit`): a commit naming a topic or a partition that does
/// not exist fails with `UNKNOWN_TOPIC_OR_PART`; the partitions that exist are committed.
#[test]
fn commits_of_unknown_topics_or_partitions_fail_with_unknown_topic_or_partition() {
    let [sim, real] = on_both(&simulation(1, 3), |ctx, notes| async move {
        let consumer = ctx.create_consumer(&consumer_config("g"))?;
        consumer.subscribe(&["t"])?;
        let m = consumer.recv().await?;
        notes.push(format!("got {}", m.offset()));
        let commit = |entries: &[(&str, i32, i64)]| -> KafkaResult<String> {
            let mut l = TopicPartitionList::new();
            for (topic, partition, offset) in entries {
                l.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
            }
            Ok(format!(
                "commit {}: {}",
                list(&l),
                outcome(consumer.commit(&l, CommitMode::Sync))
            ))
        };
        notes.push(commit(&[("nope", 0, 5), ("nope", 1, 6)])?);
        notes.push(commit(&[("t", 7, 5)])?);
        notes.push(commit(&[("t", 0, 2), ("t", 3, 1)])?);
        notes.push(format!(
            "committed {}",
            list(&consumer.committed(Duration::from_secs(5).into())?)
        ));
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert!(
        sim.1[1].ends_with("UnknownTopicOrPartition (Broker: Unknown topic or partition)"),
        "{:#?}",
        sim.1
    );
}

/// librdkafka's 0130 and 0118: `position()` is `Invalid` for an assigned partition until a
/// record of it was handed to the application (not the committed offset); a commit of
/// positions leaves the invalid ones out, and fails with `_NO_OFFSET` when all are.
#[test]
fn positions_are_invalid_until_a_record_is_consumed() {
    let [sim, real] = on_both(&simulation(2, 3), |ctx, notes| async move {
        let consumer = ctx.create_consumer(&consumer_config("g"))?;
        consumer.subscribe(&["t"])?;
        let m = consumer.recv().await?;
        notes.push(format!(
            "got {}/{}@{}",
            m.topic(),
            m.partition(),
            m.offset()
        ));
        let position = consumer.position()?;
        notes.push(format!("position {}", list(&position)));
        notes.push(format!(
            "commit position: {}",
            outcome(consumer.commit(&position, CommitMode::Sync))
        ));
        drop(m);
        drop(consumer);
        // A new member starts from the committed offset: its position is still invalid.
        let consumer = ctx
            .create_consumer_with_handler(&consumer_config("g"), PositionAtAssign(notes.clone()))?;
        consumer.subscribe(&["t"])?;
        let m = consumer.recv().await?;
        notes.push(format!(
            "got {}/{}@{}",
            m.topic(),
            m.partition(),
            m.offset()
        ));
        let mut all_invalid = TopicPartitionList::new();
        all_invalid.add_partition_offset("t", 0, Offset::Invalid)?;
        all_invalid.add_partition_offset("t", 1, Offset::Invalid)?;
        notes.push(format!(
            "commit invalid: {}",
            outcome(consumer.commit(&all_invalid, CommitMode::Sync))
        ));
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert_eq!(sim.1[1], "position [t/0@1,t/1@-]");
}

/// Notes the position and a commit of it in the assign callback.
struct PositionAtAssign(Notes);

impl RebalanceHandler for PositionAtAssign {
    fn post_rebalance(&self, consumer: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            match consumer.position() {
                Ok(p) => {
                    self.0.push(format!("position at assign {}", list(&p)));
                    self.0.push(format!(
                        "commit at assign: {}",
                        outcome(consumer.commit(&p, CommitMode::Sync))
                    ));
                }
                Err(e) => self.0.push(format!("position at assign: {e}")),
            }
        }
    }
}

/// A consumer that never commits, in a group of its own: a broker run does not end as caught
/// up while the consumer under test waits.
fn keep_alive(ctx: &InstanceContext) -> KafkaResult<impl KafkaConsumer> {
    let keep_alive = ctx.create_consumer(&consumer_config("keep-alive"))?;
    keep_alive.subscribe(&["t"])?;
    Ok(keep_alive)
}

/// librdkafka's 0113 (empty assignments) and its eager protocol (`revoke_all_rejoin`: a
/// revoke "if there is an existing assignment (albeit perhaps empty)"): a member handed an
/// empty assignment gets an empty assign callback, and an empty revoke at the next rebalance.
/// Two members of one group on one partition: the one left without it gets it when the other
/// closes. (Which one that is depends on member ids, random on the mock cluster.)
#[test]
fn a_member_with_an_empty_assignment_gets_empty_assign_and_revoke_callbacks() {
    let [sim, real] = on_both(&simulation(1, 1), |ctx, notes| async move {
        let _keep_alive = keep_alive(&ctx)?;
        let (a_notes, b_notes) = (Notes::default(), Notes::default());
        let mut config = consumer_config("g");
        let a =
            ctx.create_consumer_with_handler(config.set("client.id", "a"), Noting::new(&a_notes))?;
        a.subscribe(&["t"])?;
        next(&a, 10, &notes, "a").await;
        a.commit_consumer_state(CommitMode::Sync)?;
        let b =
            ctx.create_consumer_with_handler(config.set("client.id", "b"), Noting::new(&b_notes))?;
        b.subscribe(&["t"])?;
        // Until the rebalance is served: `a` revoked and assigned again, `b` assigned. (Waits
        // on what happened, not for a time: on a loaded machine a rebalance of the mock
        // cluster can take seconds; 60 s is the bound.)
        let assigns = |n: &Notes| n.all().iter().filter(|x| x.starts_with("assign")).count();
        for _ in 0..60 {
            if assigns(&a_notes) >= 2 && assigns(&b_notes) >= 1 {
                break;
            }
            tokio::join!(next(&a, 1, &notes, "a"), next(&b, 1, &notes, "b"));
        }
        let (empty, empty_notes) = if a.assignment()?.count() == 0 {
            drop(b);
            (a, a_notes)
        } else {
            drop(a);
            (b, b_notes)
        };
        // Until the member left alone is assigned the partition (one more assign callback).
        let before = assigns(&empty_notes);
        for _ in 0..60 {
            if assigns(&empty_notes) > before {
                break;
            }
            next(&empty, 1, &notes, "empty").await;
        }
        // From its empty assignment on (on the mock cluster the member left without the
        // partition may be the one that had it before the rebalance).
        let seen = empty_notes.all();
        let from = seen.iter().position(|n| n == "assign []").unwrap_or(0);
        // Each generation in which the member stays empty gives the same pair of callbacks;
        // on a loaded machine the mock cluster can go through one more such generation (a
        // slow join starts another rebalance): one pair stands for them all.
        let mut empty_member: Vec<String> = Vec::new();
        for note in &seen[from..] {
            empty_member.push(note.clone());
            let n = empty_member.len();
            if n >= 4
                && empty_member[n - 4..] == ["assign []", "revoke []", "assign []", "revoke []"]
            {
                empty_member.truncate(n - 2);
            }
        }
        notes.push(format!("empty member: {empty_member:?}"));
        notes.push(format!("assigned {}", empty.assignment()?.count()));
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert_eq!(
        sim.1[1],
        r#"empty member: ["assign []", "revoke []", "assign [t/0@-]"]"#
    );
}

/// librdkafka does not join the group while none of the subscribed topics exists (the
/// consumer reports `UNKNOWN_TOPIC_OR_PART`): no empty assignment, hence no revoke once it
/// subscribes to a topic that does.
#[test]
fn a_consumer_joins_only_once_a_subscribed_topic_exists() {
    let [sim, real] = on_both(&simulation(1, 1), |ctx, notes| async move {
        let _keep_alive = keep_alive(&ctx)?;
        let c = ctx.create_consumer_with_handler(&consumer_config("g"), Noting::new(&notes))?;
        c.subscribe(&["missing"])?;
        next(&c, 5, &notes, "c").await;
        next(&c, 5, &notes, "c").await;
        notes.push("subscribe t");
        c.subscribe(&["t"])?;
        next(&c, 10, &notes, "c").await;
        notes.push("exit");
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
}

/// Commits the positions in the revoke callback.
fn commit_positions(consumer: &dyn ConsumerHandle) -> Option<String> {
    let result = consumer
        .position()
        .and_then(|p| consumer.commit(&p, CommitMode::Sync));
    Some(format!("commit on revoke: {}", outcome(result)))
}

/// librdkafka's 0118 (a commit in the revoke callback of a closing consumer) and 0113
/// (`unsubscribe` revokes on the next poll): closing a consumer serves the revoke callback,
/// and a commit made there counts; `unsubscribe` revokes through the callback too, on the
/// next poll. (rdkafka's close polls the consumer until it is closed, which hands prefetched
/// records to nobody: on librdkafka a position read in that revoke can be past records the
/// application never saw. The consumer here closes with nothing left to fetch.)
#[test]
fn closing_or_unsubscribing_serves_the_revoke_callback() {
    let [sim, real] = on_both(&simulation(1, 4), |ctx, notes| async move {
        let handler = || Noting {
            notes: notes.clone(),
            on_revoke: commit_positions,
        };
        let consumer = ctx.create_consumer_with_handler(&consumer_config("g"), handler())?;
        consumer.subscribe(&["t"])?;
        for _ in 0..2 {
            next(&consumer, 10, &notes, "c").await;
        }
        notes.push("unsubscribe");
        consumer.unsubscribe();
        notes.push(format!("assigned {}", consumer.assignment()?.count()));
        next(&consumer, 3, &notes, "c").await;
        consumer.subscribe(&["t"])?;
        for _ in 0..2 {
            next(&consumer, 10, &notes, "c").await;
        }
        notes.push("close");
        drop(consumer);
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    for (outcome, _) in [&sim, &real] {
        assert_eq!(outcome.cluster().committed_offset("g", "t", 0), Some(4));
    }
}

/// The other side of a close's revoke: a crash closes nothing. The crashed incarnation's
/// revoke callback is never called (its commit there would count), and the next incarnation
/// starts from what was committed before.
#[test]
fn a_crashed_consumer_calls_no_revoke_callback() {
    let mut b = Simulation::builder();
    b.topic("t", 1)
        .broker_session_timeout_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .faults(
            FaultSchedule::new().with(Anchor::on(Operation::Recv).record(0, 1), Fault::CrashBefore),
        );
    for n in 0..3 {
        b.produce(InputRecord::new("t").payload(format!("e{n}")));
    }
    let [sim, real] = on_both(&b.build().unwrap(), |ctx, notes| async move {
        notes.push(format!("incarnation {}", ctx.incarnation().number));
        let mut config = consumer_config("g");
        config.set("session.timeout.ms", "2000");
        let consumer = ctx.create_consumer_with_handler(
            &config,
            Noting {
                notes: notes.clone(),
                on_revoke: commit_positions,
            },
        )?;
        consumer.subscribe(&["t"])?;
        for _ in 0..3 {
            next(&consumer, 10, &notes, "c").await;
        }
        notes.push("close");
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert_eq!(
        sim.1[..5],
        [
            "incarnation 1",
            "assign [t/0@-]",
            "c got t/0@0",
            "incarnation 2",
            "assign [t/0@-]"
        ]
    );
}

/// librdkafka's 0089 (`do_test_with_log_queue`, `do_test_rejoin_after_interval_expire`): when
/// the application does not poll within `max.poll.interval.ms`, the next poll hands it
/// `_MAX_POLL_EXCEEDED` first, then the revoke callback (the partitions are lost), where a
/// commit fails.
#[test]
fn a_max_poll_breach_is_reported_before_the_revoke_callback() {
    let mut b = Simulation::builder();
    b.topic("t", 1)
        .produce(InputRecord::new("t").payload("e0"))
        .produce(InputRecord::new("t").payload("e1"))
        .broker_session_timeout_bounds(Duration::from_secs(1), Duration::from_secs(60));
    let [sim, real] = on_both(&b.build().unwrap(), |ctx, notes| async move {
        let mut config = consumer_config("g");
        config
            .set("max.poll.interval.ms", "3000")
            .set("session.timeout.ms", "2000");
        let consumer = ctx.create_consumer_with_handler(
            &config,
            Noting {
                notes: notes.clone(),
                on_revoke: |c| {
                    Some(format!(
                        "commit on revoke: {}",
                        outcome(c.commit_consumer_state(CommitMode::Sync))
                    ))
                },
            },
        )?;
        consumer.subscribe(&["t"])?;
        next(&consumer, 10, &notes, "c").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        for _ in 0..3 {
            next(&consumer, 5, &notes, "c").await;
        }
        notes.push("exit");
        Ok::<(), BoxError>(())
    });
    // The close then revokes, and the state commit there goes through (the broker backend
    // compares with the offsets the client knows committed, as librdkafka, without asking
    // the broker from inside the close).
    assert_eq!(sim.1, real.1);
    assert_eq!(
        sim.1[8..],
        ["exit", "revoke [t/0@-]", "commit on revoke: ok"]
    );
    assert_eq!(
        sim.1[2..5],
        [
            "c recv error Message consumption error: PollExceeded (Local: Maximum application \
             poll interval (max.poll.interval.ms) exceeded)",
            "revoke [t/0@-]",
            "commit on revoke: Consumer commit error: UnknownMemberId (Broker: Unknown member)",
        ]
    );
}

/// librdkafka commits a stored offset only when it is ahead of the committed one
/// (`rd_kafka_topic_partition_list_set_offsets` for a commit): a state commit after the group's
/// offset moved past the stored one commits nothing (`_NO_OFFSET`) rather than rewinding it.
#[test]
fn a_state_commit_never_moves_the_committed_offset_backwards() {
    let [sim, real] = on_both(&simulation(1, 6), |ctx, notes| async move {
        let consumer = ctx.create_consumer(&consumer_config("g"))?;
        consumer.subscribe(&["t"])?;
        for _ in 0..2 {
            next(&consumer, 10, &notes, "c").await;
        }
        let mut ahead = TopicPartitionList::new();
        ahead.add_partition_offset("t", 0, Offset::Offset(5))?;
        notes.push(format!(
            "commit 5: {}",
            outcome(consumer.commit(&ahead, CommitMode::Sync))
        ));
        notes.push(format!(
            "state commit (stored 2): {}",
            outcome(consumer.commit_consumer_state(CommitMode::Sync))
        ));
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert_eq!(
        sim.1[2..],
        [
            "commit 5: ok",
            "state commit (stored 2): Consumer commit error: NoOffset (Local: No offset stored)"
        ]
    );
    for (outcome, _) in [&sim, &real] {
        assert_eq!(outcome.cluster().committed_offset("g", "t", 0), Some(5));
    }
}

/// `subscription()` lists the subscribed topics with partition -1 (librdkafka's
/// `RD_KAFKA_PARTITION_UA`), and nothing once unsubscribed.
#[test]
fn the_subscription_lists_the_topics_with_no_partition() {
    let [sim, real] = on_both(&simulation(1, 1), |ctx, notes| async move {
        let consumer = ctx.create_consumer(&consumer_config("g"))?;
        notes.push(format!("before: {}", list(&consumer.subscription()?)));
        consumer.subscribe(&["t"])?;
        notes.push(format!(
            "subscribed: {:?}",
            partitions_of(&consumer.subscription()?)
        ));
        next(&consumer, 10, &notes, "c").await;
        consumer.unsubscribe();
        notes.push(format!("unsubscribed: {}", list(&consumer.subscription()?)));
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert_eq!(sim.1[1], r#"subscribed: [("t", -1)]"#);
}

fn partitions_of(l: &TopicPartitionList) -> Vec<(String, i32)> {
    l.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// `fetch_watermarks` gives a partition's first offset and the offset after its last record.
#[test]
fn the_watermarks_of_a_partition_are_its_first_and_next_offsets() {
    let [sim, real] = on_both(&simulation(1, 3), |ctx, notes| async move {
        let consumer = ctx.create_consumer(&consumer_config("g"))?;
        let watermarks = consumer.fetch_watermarks("t", 0, Duration::from_secs(10).into())?;
        notes.push(format!("t/0: {watermarks:?}"));
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert_eq!(sim.1, ["t/0: (0, 3)"]);
}
