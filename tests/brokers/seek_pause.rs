//! seek, pause, resume and committed_offsets measured on librdkafka's mock cluster: each case
//! of `tests/conformance/seek_pause_cases.rs` sees there what the conformance tests assert of
//! the simulator.

use effectively_once::broker::BrokerProvider;

#[path = "../conformance/seek_pause_cases.rs"]
pub(crate) mod cases;

use cases::{run, simulation};

fn mock() -> Option<&'static BrokerProvider> {
    Some(&BrokerProvider::MockCluster)
}

#[test]
fn a_seek_back_delivers_the_records_after_it_again_not_the_prefetched_ones() {
    assert_eq!(run(&simulation(1, 6), mock(), cases::rewind), cases::REWIND);
}

#[test]
fn a_seek_ahead_skips_the_records_in_between() {
    assert_eq!(run(&simulation(1, 6), mock(), cases::skip), cases::SKIP);
}

#[test]
fn seeks_to_logical_offsets_resolve_against_the_log() {
    assert_eq!(
        run(&simulation(1, 6), mock(), cases::logical),
        cases::LOGICAL
    );
}

#[test]
fn a_seek_beyond_the_end_applies_auto_offset_reset() {
    for reset in ["earliest", "latest", "error"] {
        assert_eq!(
            run(&simulation(1, 6), mock(), cases::beyond_end(reset)),
            cases::beyond_end_expected(reset),
            "auto.offset.reset={reset}"
        );
    }
}

#[test]
fn a_seek_of_a_partition_not_assigned_fails() {
    let seen = run(&simulation(1, 6), mock(), cases::not_assigned);
    // The seek before any assignment fails either way, with an error that depends on timing:
    // `Unknown partition` while the client does not know the topic's partitions yet,
    // `Erroneous state` once a metadata answer told it (seen once on a loaded machine; the
    // later seeks of `u/0` show both in one run). The simulator answers the first.
    let mut expected: Vec<String> = cases::NOT_ASSIGNED.iter().map(|s| s.to_string()).collect();
    if seen.first().map(String::as_str)
        == Some("seek t/0 to Offset(1): Seek error: Local: Erroneous state")
    {
        expected[0] = seen[0].clone();
    }
    assert_eq!(seen, expected);
}

#[test]
fn a_seek_leaves_the_stored_offset_where_it_was() {
    assert_eq!(
        run(&simulation(1, 6), mock(), cases::stored_offset),
        cases::STORED_OFFSET
    );
}

#[test]
fn a_paused_partition_hands_out_nothing_until_resumed() {
    assert_eq!(
        run(&simulation(2, 4), mock(), cases::pause_resume),
        cases::PAUSE_RESUME
    );
}

#[test]
fn a_paused_partition_stays_paused_across_an_eager_rebalance() {
    assert_eq!(
        run(&simulation(1, 4), mock(), cases::pause_across_rebalance),
        cases::PAUSE_ACROSS_REBALANCE
    );
}

#[test]
fn committed_offsets_answers_for_partitions_not_assigned() {
    assert_eq!(
        run(&simulation(2, 4), mock(), cases::committed_unassigned),
        cases::COMMITTED_UNASSIGNED
    );
}

/// librdkafka itself (a `BaseConsumer`, no kit in between) on its mock cluster: a seek leaves
/// the stored offset (`enable.auto.offset.store`) where it was, so a state commit right after
/// a seek back commits the offset stored before it; each record handed out afterwards stores
/// its own offset + 1, backwards too. The kit's broker backend keeps the stored offsets the
/// same way, and the simulator does (`a_seek_leaves_the_stored_offset_where_it_was`).
#[test]
fn librdkafka_keeps_the_stored_offset_across_a_seek_and_stores_each_record_handed_out() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::producer::{BaseRecord, Producer};
    use rdkafka::{ClientConfig, Message, Offset};
    use std::time::Duration;
    let broker = BrokerProvider::MockCluster
        .start(&[("t".to_string(), 1)])
        .unwrap();
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .unwrap();
    for n in 0..6 {
        let payload = format!("e{n}");
        producer
            .send(BaseRecord::<(), _>::to("t").partition(0).payload(&payload))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    // Consumes 4 records, seeks back to 1, consumes `after` more, commits the stored offsets.
    let measure = |group: &str, after: usize| -> String {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap())
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&["t"]).unwrap();
        let mut got = Vec::new();
        let mut take = |n: usize| {
            while got.len() < n {
                if let Some(m) = consumer.poll(Duration::from_secs(10)) {
                    got.push(m.unwrap().offset());
                }
            }
        };
        take(4);
        consumer
            .seek("t", 0, Offset::Offset(1), Duration::from_secs(10))
            .unwrap();
        take(4 + after);
        let commit = consumer.commit_consumer_state(CommitMode::Sync);
        let committed = consumer.committed(Duration::from_secs(10)).unwrap();
        format!(
            "got {got:?}, state commit {:?}, committed {:?}",
            commit.map_err(|e| e.to_string()),
            committed.elements()[0].offset()
        )
    };
    assert_eq!(
        measure("right-after", 0),
        "got [0, 1, 2, 3], state commit Ok(()), committed Offset(4)"
    );
    assert_eq!(
        measure("one-more", 1),
        "got [0, 1, 2, 3, 1], state commit Ok(()), committed Offset(2)"
    );
}
