//! librdkafka's offset store and auto-commit timer: `enable.auto.offset.store` stores each
//! offset as the message is handed out, the auto-commit fires every `auto.commit.interval.ms`
//! from the consumer's creation and commits only stored offsets, and `store_offset(s)` is
//! refused for partitions not assigned or (`store_offsets`) while auto-store is on.

use std::sync::Arc;
use std::time::Duration;

use effectively_once::history::{CommitKind, HistoryEvent, TopicPartition};
use effectively_once::{ConsumerHandle, InputRecord, KafkaConsumer, Outcome, Simulation};
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::support::*;

fn offset_of(list: &TopicPartitionList, topic: &str, partition: i32) -> Option<i64> {
    match list.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

fn auto_commit_config(interval_ms: &str, auto_store: bool) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("group.id", GROUP)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", interval_ms)
        .set(
            "enable.auto.offset.store",
            if auto_store { "true" } else { "false" },
        )
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000");
    c
}

fn auto_commits(outcome: &Outcome) -> Vec<(Duration, Vec<(TopicPartition, i64)>)> {
    outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::OffsetsCommitted {
                kind: CommitKind::Auto,
                offsets,
                ..
            } => Some((e.at, offsets.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn auto_offset_store_stores_each_offset_when_the_message_is_handed_out_and_auto_commit_fires_every_interval_from_creation()
 {
    const CREATED_AT: Duration = Duration::from_millis(250);
    const INTERVAL: Duration = Duration::from_millis(1000);
    let b = builder(1, 4);
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    tokio::time::sleep(CREATED_AT).await;
                    let consumer = ctx.create_consumer(&auto_commit_config("1000", true))?;
                    consumer.subscribe(&[TOPIC])?;
                    loop {
                        let m = consumer.recv().await?;
                        let position = offset_of(&consumer.position()?, TOPIC, 0);
                        // Processing takes 1.5 s: an auto-commit fires meanwhile.
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        let committed = offset_of(&consumer.committed(Timeout::Never)?, TOPIC, 0);
                        notes.push(format!(
                            "@{} position {position:?} committed {committed:?}",
                            m.offset()
                        ));
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert!(outcome.history().quiesced());
    // While each message was still being processed, its own offset + 1 was already committed.
    assert_eq!(
        notes.all(),
        (0..4)
            .map(|o| format!("@{o} position Some({}) committed Some({})", o + 1, o + 1))
            .collect::<Vec<_>>()
    );
    let commits = auto_commits(&outcome);
    assert!(!commits.is_empty());
    for (at, _) in &commits {
        let since_creation = at.checked_sub(CREATED_AT).expect("after creation");
        assert_eq!(
            since_creation.as_nanos() % INTERVAL.as_nanos(),
            0,
            "auto-commit at {at:?} is not a multiple of the interval after creation"
        );
    }
    // Each auto-commit carries the offset after the last message handed out before it.
    let delivered: Vec<(Duration, i64)> = outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::Delivered { position, .. } => Some((e.at, position.offset)),
            _ => None,
        })
        .collect();
    for (at, offsets) in &commits {
        let last = delivered
            .iter()
            .filter(|(d, _)| d <= at)
            .map(|(_, o)| *o)
            .max()
            .expect("a delivery came first");
        assert_eq!(*offsets, vec![(TopicPartition::new(TOPIC, 0), last + 1)]);
    }
    assert_eq!(
        commits.last().unwrap().1,
        vec![(TopicPartition::new(TOPIC, 0), 4)]
    );
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(4));
}

#[test]
fn without_auto_offset_store_auto_commit_commits_only_explicitly_stored_offsets() {
    let b = builder(1, 6);
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let consumer = ctx.create_consumer(&auto_commit_config("1000", false))?;
                    consumer.subscribe(&[TOPIC])?;
                    loop {
                        let m = consumer.recv().await?;
                        let stored = match m.offset() {
                            0 | 5 => consumer.store_offset_from_message(&m),
                            // rd_kafka_offset_store: stores offset + 1.
                            2 => consumer.store_offset(TOPIC, 0, 2),
                            _ => Ok(()),
                        };
                        notes.push(format!("@{} {stored:?}", m.offset()));
                        tokio::time::sleep(Duration::from_millis(1200)).await;
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert!(outcome.history().quiesced());
    assert!(notes.all().iter().all(|n| n.ends_with("Ok(())")));
    let stored: Vec<i64> = outcome
        .history()
        .events()
        .filter_map(|e| match e {
            HistoryEvent::OffsetStored { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect();
    assert_eq!(stored, vec![1, 3, 6]);
    let committed: Vec<i64> = auto_commits(&outcome)
        .into_iter()
        .flat_map(|(_, offsets)| offsets.into_iter().map(|(_, o)| o))
        .collect();
    assert_eq!(
        committed,
        vec![1, 3, 6],
        "only stored offsets are committed"
    );
    assert_eq!(outcome.cluster().committed_offset(GROUP, TOPIC, 0), Some(6));
}

#[test]
fn store_offsets_while_auto_offset_store_is_enabled_is_invalid_argument() {
    let b = builder(1, 2);
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let consumer = ctx.create_consumer(&auto_commit_config("1000", true))?;
                    consumer.subscribe(&[TOPIC])?;
                    let m = consumer.recv().await?;
                    notes.push(format!(
                        "{:?}",
                        consumer.store_offsets(&tpl(&[(TOPIC, 0, m.offset() + 1)]))
                    ));
                    consumer.recv().await?;
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert_eq!(
        notes.all(),
        vec![format!(
            "{:?}",
            Err::<(), _>(KafkaError::StoreOffset(RDKafkaErrorCode::InvalidArgument))
        )]
    );
    assert!(
        !outcome
            .history()
            .events()
            .any(|e| matches!(e, HistoryEvent::OffsetStored { .. }))
    );
}

/// Two instances share a 2-partition topic (one partition each once the group settled); on
/// each message an instance runs `probe` with the partition it does not own.
fn with_one_partition_each(
    config: ClientConfig,
    probe: impl Fn(&effectively_once::Consumer, i32, i64, i32) -> String + 'static,
) -> (Outcome, Vec<String>) {
    let mut b = Simulation::builder();
    b.topic(TOPIC, 2).instances(2);
    // Produced once the group has settled on one partition per member.
    for p in 0..2 {
        for n in 0..2 {
            b.produce_at(
                secs(20),
                InputRecord::new(TOPIC)
                    .partition(p)
                    .payload(format!("p{p}-{n}")),
            );
        }
    }
    let notes = Notes::default();
    let probe = Arc::new(probe);
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let (notes, probe, config) = (notes.clone(), probe.clone(), config.clone());
                async move {
                    let consumer = ctx.create_consumer(&config)?;
                    consumer.subscribe(&[TOPIC])?;
                    loop {
                        let m = consumer.recv().await?;
                        if consumer.assignment()?.count() == 1 {
                            let other = 1 - m.partition();
                            notes.push(probe(&consumer, m.partition(), m.offset(), other));
                        }
                        consumer.commit_message(&m, CommitMode::Sync)?;
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert!(outcome.history().quiesced());
    let notes = notes.all();
    assert_eq!(
        notes.len(),
        4,
        "every message arrived with one partition each"
    );
    (outcome, notes)
}

#[test]
fn storing_an_offset_for_a_partition_not_assigned_is_a_state_error() {
    let mut config = manual_commit(GROUP);
    config.set("enable.auto.offset.store", "false");
    let (outcome, notes) = with_one_partition_each(config, |consumer, _, _, other| {
        format!(
            "{:?} {:?}",
            consumer.store_offset(TOPIC, other, 0),
            consumer.store_offsets(&tpl(&[(TOPIC, other, 1)]))
        )
    });
    let state = format!(
        "{:?}",
        Err::<(), _>(KafkaError::StoreOffset(RDKafkaErrorCode::State))
    );
    for note in notes {
        assert_eq!(note, format!("{state} {state}"));
    }
    assert!(
        !outcome
            .history()
            .events()
            .any(|e| matches!(e, HistoryEvent::OffsetStored { .. }))
    );
}

#[test]
fn store_offsets_stores_the_assigned_partitions_and_succeeds_when_only_some_are_not_assigned() {
    // rd_kafka_offsets_store: "RD_KAFKA_RESP_ERR_NO_ERROR on (partial) success, ... __STATE if
    // none of the offsets could be stored" (rdkafka.h; rdkafka_offset.c returns last_err only
    // when ok_cnt == 0).
    let mut config = manual_commit(GROUP);
    config.set("enable.auto.offset.store", "false");
    let (_outcome, notes) = with_one_partition_each(config, |consumer, mine, offset, other| {
        let stored = consumer.store_offsets(&tpl(&[(TOPIC, other, 1), (TOPIC, mine, offset + 1)]));
        // What was stored for `mine` is what an offset-less commit sends.
        let committed = consumer.commit_consumer_state(CommitMode::Sync);
        let now = offset_of(&consumer.committed(Timeout::Never).unwrap(), TOPIC, mine);
        format!("{stored:?} {committed:?} {now:?} want {}", offset + 1)
    });
    for note in notes {
        let (got, want) = note.split_once(" want ").unwrap();
        assert_eq!(got, format!("Ok(()) Ok(()) Some({want})"));
    }
}

#[test]
fn store_offset_is_allowed_while_auto_offset_store_is_enabled() {
    // rd_kafka_offset_store (unlike rd_kafka_offsets_store) does not check
    // enable.auto.offset.store; it stores offset + 1 for an assigned partition.
    let b = builder(1, 3);
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let consumer = ctx.create_consumer(&manual_commit(GROUP))?;
                    consumer.subscribe(&[TOPIC])?;
                    let m = consumer.recv().await?;
                    notes.push(format!("{:?}", consumer.store_offset(TOPIC, 0, m.offset())));
                    loop {
                        let m = consumer.recv().await?;
                        consumer.commit_message(&m, CommitMode::Sync)?;
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    assert_eq!(notes.all(), vec!["Ok(())".to_string()]);
    assert!(outcome.history().events().any(|e| matches!(
        e,
        HistoryEvent::OffsetStored { partition, offset: 1 } if *partition == TopicPartition::new(TOPIC, 0)
    )));
}
