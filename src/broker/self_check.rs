//! Probes of what a real broker honours, run before the scenarios so that a broker's gaps are
//! reported as such, never as a consumer bug.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Why a probe could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A client call failed.
    #[error("{step}: {source}")]
    Client {
        /// What the probe was doing.
        step: &'static str,
        /// The client's error.
        source: KafkaError,
    },
    /// The committed record never arrived.
    #[error("the probe's committed record did not arrive within {0:?}")]
    Timeout(Duration),
}

/// What a `read_committed` consumer got from a partition holding an aborted record followed by
/// a committed one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadCommittedProbe {
    /// The payloads delivered, in order.
    pub delivered: Vec<String>,
}

impl ReadCommittedProbe {
    /// Whether the broker hid the aborted record, as Kafka does.
    pub fn hides_aborted_records(&self) -> bool {
        !self.delivered.iter().any(|p| p == ABORTED)
    }
}

const ABORTED: &str = "aborted";
const COMMITTED: &str = "committed";

fn step<T>(step: &'static str, r: Result<T, KafkaError>) -> Result<T, ProbeError> {
    r.map_err(|source| ProbeError::Client { step, source })
}

/// Writes an aborted and a committed transaction to partition 0 of `topic` (which must exist)
/// on the broker at `bootstrap`, then reads the partition with `isolation.level=read_committed`.
pub fn read_committed(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<ReadCommittedProbe, ProbeError> {
    let producer: BaseProducer = step(
        "creating the transactional producer",
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set(
                "transactional.id",
                format!("effectively-once-probe-{topic}"),
            )
            .set("log_level", "0")
            .create(),
    )?;
    step("init_transactions", producer.init_transactions(timeout))?;
    for (payload, commit) in [(ABORTED, false), (COMMITTED, true)] {
        step("begin_transaction", producer.begin_transaction())?;
        step(
            "producing",
            producer
                .send(
                    BaseRecord::<(), str>::to(topic)
                        .partition(0)
                        .payload(payload),
                )
                .map_err(|(e, _)| e),
        )?;
        step("flushing", producer.flush(timeout))?;
        if commit {
            step("commit_transaction", producer.commit_transaction(timeout))?;
        } else {
            step("abort_transaction", producer.abort_transaction(timeout))?;
        }
    }
    let consumer: BaseConsumer = step(
        "creating the read_committed consumer",
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("effectively-once-probe-{topic}"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("log_level", "0")
            .create(),
    )?;
    let mut assignment = TopicPartitionList::new();
    step(
        "assigning",
        assignment.add_partition_offset(topic, 0, Offset::Beginning),
    )?;
    step("assigning", consumer.assign(&assignment))?;
    let deadline = Instant::now() + timeout;
    let mut delivered = Vec::new();
    while Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = step("consuming", message)?;
        let payload = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        let done = payload == COMMITTED;
        delivered.push(payload);
        if done {
            return Ok(ReadCommittedProbe { delivered });
        }
    }
    Err(ProbeError::Timeout(timeout))
}

#[cfg(test)]
mod tests {
    use rdkafka::mocking::MockCluster;

    use super::*;

    #[test]
    fn librdkafkas_mock_cluster_hands_aborted_records_to_read_committed_consumers() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("probe", 1, 1).unwrap();
        let started = Instant::now();
        let probe =
            read_committed(&mock.bootstrap_servers(), "probe", Duration::from_secs(20)).unwrap();
        println!("{probe:?} in {:?}", started.elapsed());
        assert!(!probe.hides_aborted_records(), "{probe:?}");
    }
}
