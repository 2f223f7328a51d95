//! Manual assignment (`assign`, `unassign`, `incremental_assign`, `incremental_unassign`,
//! `assignment_lost`), measured on librdkafka against its mock cluster and run through the
//! same consumer code on the simulator: both must see the same thing.

use std::future::Future;
use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::{
    ConsumerHandle, InputRecord, InstanceContext, InstanceExit, KafkaConsumer, Outcome,
    RebalanceHandler, Simulation,
};
use rdkafka::consumer::{CommitMode, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

use crate::notes::Notes;

/// `t/0@3,t/1@-` style (`-` for `Offset::Invalid`).
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
        Err(e) => e.to_string(),
    }
}

fn offsets(entries: &[(i32, Offset)]) -> TopicPartitionList {
    let mut l = TopicPartitionList::new();
    for (partition, offset) in entries {
        l.add_partition_offset("t", *partition, *offset).unwrap();
    }
    l
}

fn config(group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    config
}

/// Topic `t` of `partitions` partitions, `per_partition` records in each.
fn simulation(partitions: i32, per_partition: usize) -> Simulation {
    let mut b = Simulation::builder();
    b.topic("t", partitions);
    for p in 0..partitions {
        for n in 0..per_partition {
            b.produce(
                InputRecord::new("t")
                    .partition(p)
                    .payload(format!("p{p}-{n}")),
            );
        }
    }
    b.time_limit(Duration::from_secs(120)).build().unwrap()
}

/// Runs `factory` on the simulator and on the mock cluster; the notes of each.
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

/// A consumer subscribed in a group of its own that never commits: a broker run does not
/// end as caught up while the consumer under test waits.
fn keep_alive(ctx: &InstanceContext) -> KafkaResult<impl KafkaConsumer> {
    let keep_alive = ctx.create_consumer(&config("keep-alive"))?;
    keep_alive.subscribe(&["t"])?;
    Ok(keep_alive)
}

/// The next record within `secs` seconds, as `t/0@3`.
async fn next<C: KafkaConsumer>(consumer: &C, secs: u64) -> Option<String> {
    match tokio::time::timeout(Duration::from_secs(secs), consumer.recv()).await {
        Ok(Ok(m)) => Some(format!("{}/{}@{}", m.topic(), m.partition(), m.offset())),
        Ok(Err(e)) => Some(format!("recv error {e}")),
        Err(_) => None,
    }
}

/// Up to `n` records (fewer if none comes within `secs`), sorted.
async fn drain<C: KafkaConsumer>(consumer: &C, n: usize, secs: u64) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        match next(consumer, secs).await {
            Some(m) => got.push(m),
            None => break,
        }
    }
    got.sort();
    got
}

/// Notes every rebalance callback, and what `on_assign` says inside the assign callback.
struct Noting {
    notes: Notes,
    on_assign: fn(&dyn ConsumerHandle) -> Option<String>,
    on_revoke: fn(&dyn ConsumerHandle) -> Option<String>,
}

impl Noting {
    fn new(notes: &Notes) -> Self {
        Noting {
            notes: notes.clone(),
            on_assign: |_| None,
            on_revoke: |_| None,
        }
    }
}

impl RebalanceHandler for Noting {
    fn pre_rebalance(&self, consumer: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
        let note = match rebalance {
            Rebalance::Assign(l) => {
                self.notes.push(format!("assign callback {}", list(l)));
                (self.on_assign)(consumer)
            }
            Rebalance::Revoke(l) => {
                self.notes.push(format!("revoke callback {}", list(l)));
                (self.on_revoke)(consumer)
            }
            Rebalance::Error(e) => Some(format!("rebalance error {e}")),
        };
        if let Some(note) = note {
            self.notes.push(note);
        }
    }
}

/// `assign` starts each partition where its offset says: an absolute offset, the committed
/// offset for `Invalid` (else `auto.offset.reset`, as for `Stored`), the log's start for
/// `Beginning`, its end for `End`. Only those partitions are delivered; no group is joined,
/// so no rebalance callback runs.
#[test]
fn assign_starts_each_partition_where_its_offset_says() {
    let [sim, real] = on_both(&simulation(5, 4), |ctx, notes| async move {
        let _keep_alive = keep_alive(&ctx)?;
        // Partition 1's committed offset: 2 (a manually assigned consumer in an empty group).
        let first = ctx.create_consumer(&config("g"))?;
        notes.push(format!(
            "commit t/1@2 in an empty group: {}",
            outcome(first.commit(&offsets(&[(1, Offset::Offset(2))]), CommitMode::Sync))
        ));
        drop(first);
        let c = ctx.create_consumer_with_handler(&config("g"), Noting::new(&notes))?;
        c.assign(&offsets(&[
            (0, Offset::Offset(3)),
            (1, Offset::Invalid),
            (2, Offset::Beginning),
            (3, Offset::End),
            (4, Offset::Stored),
        ]))?;
        notes.push(format!("assignment {}", list(&c.assignment()?)));
        let got = drain(&c, 11, 5).await;
        notes.push(format!("got {got:?}"));
        notes.push(format!("nothing more: {:?}", next(&c, 2).await));
        notes.push(format!("assignment after {}", list(&c.assignment()?)));
        notes.push(format!("position {}", list(&c.position()?)));
        notes.push(format!(
            "committed {}",
            list(&c.committed(Duration::from_secs(5).into())?)
        ));
        notes.push(format!("lost {}", c.assignment_lost()));
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert_eq!(sim.1[0], "commit t/1@2 in an empty group: ok");
    assert_eq!(
        sim.1[2],
        r#"got ["t/0@3", "t/1@2", "t/1@3", "t/2@0", "t/2@1", "t/2@2", "t/2@3", "t/4@0", "t/4@1", "t/4@2", "t/4@3"]"#
    );
    assert!(
        !sim.1.iter().any(|n| n.contains("callback")),
        "{:#?}",
        sim.1
    );
}

/// A manually assigned consumer commits with no member and generation -1: the coordinator
/// accepts that while the group has no active member, refuses it while subscribed members
/// are in the group, and accepts it again once they left. `committed()` reads the group's
/// offsets all along.
#[test]
fn a_manual_commit_is_refused_while_the_group_has_active_members() {
    let [sim, real] = on_both(&simulation(1, 6), |ctx, notes| async move {
        let _keep_alive = keep_alive(&ctx)?;
        let manual = ctx.create_consumer(&config("g"))?;
        manual.assign(&offsets(&[(0, Offset::Beginning)]))?;
        notes.push(format!("manual got {:?}", next(&manual, 10).await));
        let commit =
            |o: i64| outcome(manual.commit(&offsets(&[(0, Offset::Offset(o))]), CommitMode::Sync));
        notes.push(format!("commit 1, group empty: {}", commit(1)));
        let member = ctx.create_consumer_with_handler(&config("g"), Noting::new(&notes))?;
        member.subscribe(&["t"])?;
        notes.push(format!("member got {:?}", next(&member, 10).await));
        notes.push(format!("member assignment {}", list(&member.assignment()?)));
        notes.push(format!("commit 2, group has a member: {}", commit(2)));
        notes.push(format!(
            "manual committed {}",
            list(&manual.committed(Duration::from_secs(5).into())?)
        ));
        notes.push(format!(
            "member commit: {}",
            outcome(member.commit(&offsets(&[(0, Offset::Offset(4))]), CommitMode::Sync))
        ));
        drop(member);
        notes.push(format!("commit 3, member left: {}", commit(3)));
        notes.push(format!(
            "manual committed {}",
            list(&manual.committed(Duration::from_secs(5).into())?)
        ));
        notes.push(format!("manual assignment {}", list(&manual.assignment()?)));
        Ok::<(), BoxError>(())
    });
    // Up to the last member's leave both agree: accepted in an empty group, refused
    // (`UNKNOWN_MEMBER_ID`) while the group has a member.
    assert_eq!(sim.1[..9], real.1[..9]);
    assert_eq!(
        sim.1[5],
        "commit 2, group has a member: Consumer commit error: UnknownMemberId (Broker: Unknown member)"
    );
    // Once the member left, Kafka's coordinator accepts a generation -1 commit again (the
    // group is Empty: "only using Kafka to store offsets"); the simulator follows Kafka. The
    // mock cluster refuses every commit without a member once the group exists: a gap of the
    // mock, pinned here so that a change in librdkafka shows.
    assert_eq!(sim.1[9], "commit 3, member left: ok");
    assert_eq!(
        real.1[9],
        "commit 3, member left: Consumer commit error: UnknownMemberId (Broker: Unknown member)"
    );
    assert_eq!(sim.1[11..], real.1[11..]);
    assert_eq!(sim.0.cluster().committed_offset("g", "t", 0), Some(3));
    assert_eq!(real.0.cluster().committed_offset("g", "t", 0), Some(4));
}

/// `unassign` stops delivery; outside a group `incremental_assign` adds partitions (from
/// their offsets) and `incremental_unassign` removes them; adding a partition already
/// assigned, or removing one that is not, is an error.
#[test]
fn unassign_and_incremental_changes_outside_a_group() {
    let [sim, real] = on_both(&simulation(3, 3), |ctx, notes| async move {
        let _keep_alive = keep_alive(&ctx)?;
        let c = ctx.create_consumer(&config("g"))?;
        c.assign(&offsets(&[(0, Offset::Offset(1))]))?;
        notes.push(format!("got {:?}", drain(&c, 2, 10).await));
        notes.push(format!(
            "add t/1@Beginning: {}",
            outcome(c.incremental_assign(&offsets(&[(1, Offset::Beginning)])))
        ));
        notes.push(format!(
            "add t/0@0 again: {}",
            outcome(c.incremental_assign(&offsets(&[(0, Offset::Offset(0))])))
        ));
        notes.push(format!("assignment {}", list(&c.assignment()?)));
        notes.push(format!("got {:?}", drain(&c, 3, 10).await));
        notes.push(format!(
            "remove t/2: {}",
            outcome(c.incremental_unassign(&offsets(&[(2, Offset::Invalid)])))
        ));
        notes.push(format!(
            "remove t/0: {}",
            outcome(c.incremental_unassign(&offsets(&[(0, Offset::Invalid)])))
        ));
        notes.push(format!("assignment {}", list(&c.assignment()?)));
        notes.push(format!(
            "add t/2@Offset(1), t/0@Offset(0): {}",
            outcome(
                c.incremental_assign(&offsets(&[(2, Offset::Offset(1)), (0, Offset::Offset(0))]))
            )
        ));
        notes.push(format!("got {:?}", drain(&c, 5, 10).await));
        notes.push(format!("unassign: {}", outcome(c.unassign())));
        notes.push(format!("assignment {}", list(&c.assignment()?)));
        notes.push(format!("after unassign {:?}", next(&c, 3).await));
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert_eq!(sim.1[2], "add t/0@0 again: Subscription error: _CONFLICT");
    assert_eq!(sim.1[5], "remove t/2: Subscription error: _INVALID_ARG");
    assert_eq!(sim.1[12], "after unassign None");
}

/// On a member of an eager-protocol group: `incremental_assign` in the assign callback and
/// outside it; `assign` while subscribed (outside any callback).
#[test]
fn manual_changes_on_a_subscribed_member() {
    let [sim, real] = on_both(&simulation(2, 3), |ctx, notes| async move {
        let _keep_alive = keep_alive(&ctx)?;
        let handler = Noting {
            notes: notes.clone(),
            on_assign: |c| {
                Some(format!(
                    "incremental_assign in the callback: {}",
                    outcome(c.incremental_assign(&offsets(&[(1, Offset::Offset(0))])))
                ))
            },
            on_revoke: |_| None,
        };
        let c = ctx.create_consumer_with_handler(&config("g"), handler)?;
        c.subscribe(&["t"])?;
        // Either partition's first record (the fetch order is not pinned).
        notes.push(format!("got one: {}", next(&c, 10).await.is_some()));
        notes.push(format!("group assignment {}", list(&c.assignment()?)));
        notes.push(format!(
            "incremental_unassign outside: {}",
            outcome(c.incremental_unassign(&offsets(&[(0, Offset::Invalid)])))
        ));
        notes.push(format!(
            "assign t/1@1 while subscribed: {}",
            outcome(c.assign(&offsets(&[(1, Offset::Offset(1))])))
        ));
        notes.push(format!("assignment {}", list(&c.assignment()?)));
        notes.push(format!("got {:?}", drain(&c, 2, 5).await));
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    assert_eq!(
        sim.1[1],
        "incremental_assign in the callback: Subscription error: _STATE"
    );
    assert_eq!(sim.1[3], "group assignment [t/0@Stored,t/1@Stored]");
    // `assign` while subscribed is accepted and replaces the assignment; the revoke at the
    // close still lists the group's partitions.
    assert_eq!(
        sim.1[5..],
        [
            "assign t/1@1 while subscribed: ok",
            "assignment [t/1@1]",
            r#"got ["t/1@1", "t/1@2"]"#,
            "revoke callback [t/0@-,t/1@-]",
        ]
    );
}

/// `assignment_lost` is true inside the revoke callback of a lost assignment (a
/// `max.poll.interval.ms` breach) and false again after it.
#[test]
fn the_assignment_is_lost_only_inside_the_revoke_of_a_lost_assignment() {
    let mut b = Simulation::builder();
    b.topic("t", 1)
        .produce(InputRecord::new("t").payload("e0"))
        .produce(InputRecord::new("t").payload("e1"))
        .broker_session_timeout_bounds(Duration::from_secs(1), Duration::from_secs(60));
    let [sim, real] = on_both(&b.build().unwrap(), |ctx, notes| async move {
        let mut config = config("g");
        config
            .set("max.poll.interval.ms", "3000")
            .set("session.timeout.ms", "2000");
        let handler = Noting {
            notes: notes.clone(),
            on_assign: |c| Some(format!("lost in assign: {}", c.assignment_lost())),
            on_revoke: |c| Some(format!("lost in revoke: {}", c.assignment_lost())),
        };
        let c = ctx.create_consumer_with_handler(&config, handler)?;
        c.subscribe(&["t"])?;
        notes.push(format!("got {:?}", next(&c, 10).await));
        tokio::time::sleep(Duration::from_secs(5)).await;
        for _ in 0..3 {
            notes.push(format!("got {:?}", next(&c, 5).await));
            notes.push(format!("lost {}", c.assignment_lost()));
        }
        Ok::<(), BoxError>(())
    });
    assert_eq!(sim.1, real.1);
    // Lost from the breach on (the poll reports it), through the revoke callback; the
    // revoke's unassign resets it.
    assert_eq!(
        sim.1[4..7],
        [
            "lost true",
            "revoke callback [t/0@-]",
            "lost in revoke: true"
        ]
    );
    assert_eq!(sim.1[sim.1.len() - 1], "lost in revoke: false");
}
