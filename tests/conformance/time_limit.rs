//! The end of a run: a run that never finishes stops at the virtual-time limit and reports the
//! lag, and a partition without records does not keep a fully consumed run from quiescing.

use std::time::Instant as WallInstant;

use effectively_once::history::{HistoryEvent, Lag, TopicPartition};
use effectively_once::{ConsumerHandle, InputRecord, KafkaConsumer, Simulation};
use rdkafka::consumer::CommitMode;
use rdkafka::message::Message;

use crate::support::*;

#[test]
fn a_run_that_never_commits_stops_at_the_virtual_time_limit_with_the_lag() {
    let mut b = builder(2, 3);
    b.time_limit(secs(60));
    let wall = WallInstant::now();
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
            consumer.subscribe(&[TOPIC])?;
            let mut n = 0;
            loop {
                let m = consumer.recv().await?;
                // Commits the first record of partition 0 only.
                if n == 0 && m.partition() == 0 {
                    consumer.commit_message(&m, CommitMode::Sync)?;
                    n += 1;
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), BoxError>(())
        })
        .unwrap();
    let took = wall.elapsed();
    show(&outcome);
    assert!(took < WALL_BOUND, "took {took:?}");
    let last = outcome.history().entries().last().unwrap();
    assert_eq!(last.at, secs(60));
    assert_eq!(last.incarnation, None);
    assert_eq!(
        last.event,
        HistoryEvent::TimeLimitReached {
            lag: vec![
                Lag {
                    group: GROUP.into(),
                    partition: TopicPartition::new(TOPIC, 0),
                    committed: Some(1),
                    end: 3
                },
                Lag {
                    group: GROUP.into(),
                    partition: TopicPartition::new(TOPIC, 1),
                    committed: None,
                    end: 3
                },
            ]
        }
    );
    assert!(!outcome.history().quiesced());
    assert!(outcome.history().to_string().contains("time limit reached"));
}

#[test]
fn an_empty_partition_does_not_keep_a_fully_consumed_run_from_quiescing() {
    // Nothing can be consumed from, or committed for, a partition that never received a
    // record: with everything else consumed and committed the run has nothing left to do.
    let mut b = Simulation::builder();
    b.topic(TOPIC, 2).time_limit(secs(120));
    b.produce(InputRecord::new(TOPIC).partition(0).payload("x"));
    let outcome = b
        .build()
        .unwrap()
        .run(|ctx| async move {
            let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
            commit_after_each(&consumer, &ctx.effect_sink("e")).await
        })
        .unwrap();
    show(&outcome);
    assert_eq!(outcome.history().effect_counts("e").len(), 1);
    assert!(
        outcome.history().quiesced(),
        "ended with {:?}",
        outcome.history().end()
    );
}
