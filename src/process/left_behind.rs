//! What a run left on the broker once its instances stopped: the output topics' records as a
//! `read_committed` consumer reads them, and the group's committed offsets of the input, read
//! from the broker itself (the snapshot the invariants on outputs judge).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::ProcessError;
use crate::history::{LoggedRecord, TopicPartition};

/// The broker's state after a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeftBehind {
    /// Each output partition's records a `read_committed` consumer reads.
    pub outputs: BTreeMap<TopicPartition, Vec<LoggedRecord>>,
    /// The group's committed offset of each input partition.
    pub committed: BTreeMap<(String, TopicPartition), i64>,
}

/// How long reading may go without moving once it moved, before the rest counts as
/// unreadable: the records of a transaction left open by a killed instance, which
/// `read_committed` does not get past until the broker times the transaction out.
const QUIET: Duration = Duration::from_secs(2);

/// How long the reader may take to move at all (connect, look the offsets up, first fetch)
/// on a loaded machine.
const FIRST_FETCH: Duration = Duration::from_secs(20);

/// Reads `outputs` and `group`'s committed offsets of `input` from the broker at `bootstrap`.
pub(crate) fn read_left_behind(
    bootstrap: &str,
    outputs: &[String],
    group: &str,
    input: &str,
) -> Result<LeftBehind, ProcessError> {
    let broker = |what: &str, e: &dyn std::fmt::Display| {
        ProcessError::Broker(format!("{what} at {bootstrap}: {e}"))
    };
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| broker("could not create the output reader", &e))?;
    let mut left = LeftBehind::default();
    let mut wanted = TopicPartitionList::new();
    let mut ends: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    for topic in outputs {
        for p in partitions(&reader, topic).map_err(|e| broker("could not read the outputs", &e))? {
            let (_, high) = reader
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_err(|e| broker("could not read an output's end offset", &e))?;
            let tp = TopicPartition::new(topic.as_str(), p);
            left.outputs.insert(tp.clone(), Vec::new());
            if high > 0 {
                ends.insert(tp, high);
                wanted
                    .add_partition_offset(topic, p, Offset::Beginning)
                    .map_err(|e| broker("could not read the outputs", &e))?;
            }
        }
    }
    if !ends.is_empty() {
        reader
            .assign(&wanted)
            .map_err(|e| broker("could not read the outputs", &e))?;
        let started = Instant::now();
        let mut moved_at: Option<Instant> = None;
        let mut positions: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        loop {
            let done = ends
                .iter()
                .all(|(tp, end)| positions.get(tp).is_some_and(|p| p >= end));
            let stalled = match moved_at {
                Some(at) => at.elapsed() >= QUIET,
                None => started.elapsed() >= FIRST_FETCH,
            };
            if done || stalled {
                break;
            }
            if let Some(polled) = reader.poll(Duration::from_millis(100)) {
                let m = polled.map_err(|e| broker("could not read the outputs", &e))?;
                let tp = TopicPartition::new(m.topic(), m.partition());
                left.outputs.entry(tp).or_default().push(LoggedRecord {
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    control: false,
                    aborted: false,
                    open: false,
                });
            }
            // Where the reader is: past aborted records and markers too, which it skips.
            let now = reader
                .position()
                .map_err(|e| broker("could not read the outputs", &e))?;
            for e in now.elements() {
                if let Offset::Offset(o) = e.offset() {
                    let tp = TopicPartition::new(e.topic(), e.partition());
                    if positions.insert(tp, o) != Some(o) {
                        moved_at = Some(Instant::now());
                    }
                }
            }
        }
    }
    let mut inputs = TopicPartitionList::new();
    for p in partitions(&reader, input).map_err(|e| broker("could not read the input", &e))? {
        inputs.add_partition(input, p);
    }
    let committed = reader
        .committed_offsets(inputs, Duration::from_secs(10))
        .map_err(|e| broker("could not read the group's committed offsets", &e))?;
    for e in committed.elements() {
        if let Offset::Offset(o) = e.offset() {
            left.committed.insert(
                (
                    group.to_string(),
                    TopicPartition::new(e.topic(), e.partition()),
                ),
                o,
            );
        }
    }
    Ok(left)
}

/// The partitions of `topic`.
pub(super) fn partitions(
    reader: &BaseConsumer,
    topic: &str,
) -> Result<Vec<i32>, rdkafka::error::KafkaError> {
    let metadata = reader.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}
