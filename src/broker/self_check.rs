//! Probes of what a real broker honours, run before the scenarios so that a broker's gaps are
//! reported as such, never as a consumer bug.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, DefaultConsumerContext, Rebalance,
};
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
    /// A group consumer got no partitions.
    #[error("a consumer of group {group:?} got no partitions within {waited:?}")]
    NotJoined {
        /// The group.
        group: String,
        /// How long the probe waited.
        waited: Duration,
    },
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

/// Queues `payload` for partition 0 of `topic`.
fn send(producer: &BaseProducer, topic: &str, payload: &str) -> Result<(), ProbeError> {
    step(
        "producing",
        producer
            .send(
                BaseRecord::<(), str>::to(topic)
                    .partition(0)
                    .payload(payload),
            )
            .map_err(|(e, _)| e),
    )
}

/// Writes an aborted and a committed transaction to partition 0 of `topic` (which must exist)
/// on the broker at `bootstrap`, then reads the partition with `isolation.level=read_committed`.
pub fn read_committed(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<ReadCommittedProbe, ProbeError> {
    let producer = transactional_producer(
        bootstrap,
        &format!("effectively-once-probe-{topic}"),
        timeout,
    )?;
    for (payload, commit) in [(ABORTED, false), (COMMITTED, true)] {
        step("begin_transaction", producer.begin_transaction())?;
        send(&producer, topic, payload)?;
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

/// A guarantee of Kafka's that some invariants rely on, and that a broker may lack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `read_committed` consumers never receive records of aborted transactions.
    HidesAbortedRecords,
    /// Offsets sent with `send_offsets_to_transaction` become the group's committed offsets
    /// when the transaction commits.
    StoresTransactionalOffsets,
    /// A producer's `init_transactions` fences an older producer with the same
    /// `transactional.id`: the older one can no longer commit.
    FencesZombies,
    /// The end offset (ListOffsets latest) of a partition written in multi-record batches is
    /// the offset after its last record.
    ReportsEndOffsets,
    /// A commit from a member that is no longer in the group's current generation is
    /// rejected.
    RejectsStaleGenerations,
    /// A commit made in the revoke callback while the group rebalances (its member still in
    /// the generation that is ending) is accepted, as Kafka's coordinator accepts it in
    /// `PreparingRebalance`. librdkafka's mock cluster refuses it (`REBALANCE_IN_PROGRESS`).
    AcceptsCommitsDuringRebalance,
    /// A static member (`group.instance.id`, KIP-345) whose process dies and restarts
    /// within its session takes its place back without a rebalance: the other members revoke
    /// nothing. librdkafka's mock cluster does not implement static membership.
    KeepsStaticMembers,
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Capability::HidesAbortedRecords => "read_committed hides aborted records",
            Capability::StoresTransactionalOffsets => "transactional offsets are stored",
            Capability::FencesZombies => "init_transactions fences the older producer",
            Capability::ReportsEndOffsets => "end offsets are right after multi-record batches",
            Capability::RejectsStaleGenerations => "commits of a stale generation are rejected",
            Capability::AcceptsCommitsDuringRebalance => {
                "a commit in the revoke callback is accepted while the group rebalances"
            }
            Capability::KeepsStaticMembers => {
                "a static member restarting within its session keeps its place"
            }
        })
    }
}

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The guarantee probed.
    pub capability: Capability,
    /// `Some(true)`: honoured; `Some(false)`: not; `None`: the probe itself failed.
    pub honoured: Option<bool>,
    /// What the probe saw.
    pub detail: String,
}

/// Every probe's finding on one broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelfCheck {
    /// The findings, one per [`Capability`].
    pub findings: Vec<Finding>,
}

impl SelfCheck {
    /// Why `capability` cannot be relied on, `None` when the broker honours it.
    pub fn shortfall(&self, capability: Capability) -> Option<String> {
        let finding = self.findings.iter().find(|f| f.capability == capability)?;
        match finding.honoured {
            Some(true) => None,
            Some(false) => Some(format!("not honoured: {capability} ({})", finding.detail)),
            None => Some(format!(
                "could not be probed: {capability} ({})",
                finding.detail
            )),
        }
    }
}

impl std::fmt::Display for SelfCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for finding in &self.findings {
            let verdict = match finding.honoured {
                Some(true) => "yes",
                Some(false) => "NO ",
                None => "?  ",
            };
            writeln!(f, "  {verdict} {}: {}", finding.capability, finding.detail)?;
        }
        Ok(())
    }
}

/// The topics the probes use, with their partition counts; they must exist.
pub const PROBE_TOPICS: [(&str, i32); 7] = [
    ("effectively-once-probe-read-committed", 1),
    ("effectively-once-probe-offsets", 1),
    ("effectively-once-probe-fencing", 1),
    ("effectively-once-probe-end-offsets", 1),
    // Two: the second member gets a partition whether or not the first is still a member.
    ("effectively-once-probe-generations", 2),
    // Two: the rebalance moves one partition to the second member.
    ("effectively-once-probe-revoke-commit", 2),
    // Two: one for the static member that restarts, one for the member that watches.
    ("effectively-once-probe-static-members", 2),
];

/// Runs every probe against the broker at `bootstrap` (whose [`PROBE_TOPICS`] exist).
pub fn run(bootstrap: &str, timeout: Duration) -> SelfCheck {
    let finding = |capability, result: Result<(bool, String), ProbeError>| match result {
        Ok((honoured, detail)) => Finding {
            capability,
            honoured: Some(honoured),
            detail,
        },
        Err(e) => Finding {
            capability,
            honoured: None,
            detail: e.to_string(),
        },
    };
    let read = read_committed(bootstrap, PROBE_TOPICS[0].0, timeout).map(|probe| {
        (
            probe.hides_aborted_records(),
            format!(
                "a read_committed consumer received {:?} after an aborted and a committed transaction",
                probe.delivered
            ),
        )
    });
    SelfCheck {
        findings: vec![
            finding(Capability::HidesAbortedRecords, read),
            finding(
                Capability::StoresTransactionalOffsets,
                transactional_offsets(bootstrap, PROBE_TOPICS[1].0, timeout),
            ),
            finding(
                Capability::FencesZombies,
                fencing(bootstrap, PROBE_TOPICS[2].0, timeout),
            ),
            finding(
                Capability::ReportsEndOffsets,
                end_offsets(bootstrap, PROBE_TOPICS[3].0, timeout),
            ),
            finding(
                Capability::RejectsStaleGenerations,
                stale_generation(bootstrap, PROBE_TOPICS[4].0, timeout),
            ),
            finding(
                Capability::AcceptsCommitsDuringRebalance,
                commit_during_rebalance(bootstrap, PROBE_TOPICS[5].0, timeout),
            ),
            finding(
                Capability::KeepsStaticMembers,
                static_members(bootstrap, PROBE_TOPICS[6].0, timeout),
            ),
        ],
    }
}

fn transactional_producer(
    bootstrap: &str,
    id: &str,
    timeout: Duration,
) -> Result<BaseProducer, ProbeError> {
    let producer: BaseProducer = step(
        "creating a transactional producer",
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("transactional.id", id)
            .set("log_level", "0")
            .create(),
    )?;
    step("init_transactions", producer.init_transactions(timeout))?;
    Ok(producer)
}

fn plain_consumer(bootstrap: &str, group: &str) -> Result<BaseConsumer, ProbeError> {
    step(
        "creating a consumer",
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("log_level", "0")
            .create(),
    )
}

/// Commits offset 7 of partition 0 through a transaction, then reads the group's offset.
fn transactional_offsets(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<(bool, String), ProbeError> {
    let group = format!("{topic}-group");
    let consumer = plain_consumer(bootstrap, &group)?;
    let metadata = consumer.group_metadata().ok_or(ProbeError::Client {
        step: "reading the consumer's group metadata",
        source: KafkaError::Canceled,
    })?;
    let producer = transactional_producer(bootstrap, &format!("{topic}-producer"), timeout)?;
    step("begin_transaction", producer.begin_transaction())?;
    let mut offsets = TopicPartitionList::new();
    step(
        "listing offsets",
        offsets.add_partition_offset(topic, 0, Offset::Offset(7)),
    )?;
    step(
        "send_offsets_to_transaction",
        producer.send_offsets_to_transaction(&offsets, &metadata, timeout),
    )?;
    step("commit_transaction", producer.commit_transaction(timeout))?;
    let committed = step(
        "reading the committed offset",
        consumer.committed_offsets(offsets, timeout),
    )?;
    let offset = committed
        .find_partition(topic, 0)
        .map(|e| e.offset())
        .unwrap_or(Offset::Invalid);
    Ok((
        offset == Offset::Offset(7),
        format!(
            "offset 7 sent with a committed transaction; the group's committed offset is {offset:?}"
        ),
    ))
}

/// A producer writes in a transaction, a second one with the same `transactional.id`
/// initialises, then the first tries to commit.
fn fencing(bootstrap: &str, topic: &str, timeout: Duration) -> Result<(bool, String), ProbeError> {
    let id = format!("{topic}-producer");
    let zombie = transactional_producer(bootstrap, &id, timeout)?;
    step("begin_transaction", zombie.begin_transaction())?;
    send(&zombie, topic, "zombie")?;
    step("flushing", zombie.flush(timeout))?;
    let _successor = transactional_producer(bootstrap, &id, timeout)?;
    match zombie.commit_transaction(timeout.min(Duration::from_secs(3))) {
        Ok(()) => Ok((
            false,
            "the older producer committed after a newer one with its transactional.id initialised"
                .into(),
        )),
        Err(e) => {
            use rdkafka::types::RDKafkaErrorCode::*;
            let fenced = matches!(
                e.rdkafka_error_code(),
                Some(Fenced | ProducerFenced | InvalidProducerEpoch)
            );
            if fenced {
                Ok((true, format!("the older producer's commit failed: {e}")))
            } else {
                Err(ProbeError::Client {
                    step: "committing as the older producer (expected: fenced)",
                    source: e,
                })
            }
        }
    }
}

/// A group consumer until it has partitions (`poll` serves the rebalance).
/// A probe's group member. It goes the way a killed process does: a consumer's close can wait
/// forever on a broker that misbehaves (seen on Tansu: the revocation inside the close never
/// returned).
struct Member<C: ConsumerContext + 'static = DefaultConsumerContext>(Option<BaseConsumer<C>>);

impl<C: ConsumerContext> std::ops::Deref for Member<C> {
    type Target = BaseConsumer<C>;

    fn deref(&self) -> &BaseConsumer<C> {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<C: ConsumerContext> Drop for Member<C> {
    fn drop(&mut self) {
        if let Some(consumer) = self.0.take() {
            super::native::abandon(consumer);
        }
    }
}

fn joined(
    bootstrap: &str,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Member, ProbeError> {
    let consumer: BaseConsumer = step(
        "creating a group consumer",
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "2000")
            .set("heartbeat.interval.ms", "500")
            .set("max.poll.interval.ms", "3000")
            .set("log_level", "0")
            .create(),
    )?;
    let consumer = Member(Some(consumer));
    step("subscribing", consumer.subscribe(&[topic]))?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(100));
        if consumer.assignment().is_ok_and(|a| a.count() > 0) {
            return Ok(consumer);
        }
    }
    Err(ProbeError::NotJoined {
        group: group.to_string(),
        waited: timeout,
    })
}

/// Member A joins; A stops polling and member B joins, so the group moves on without A (A
/// misses the rebalance); then A commits with the generation it had.
fn stale_generation(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<(bool, String), ProbeError> {
    let group = format!("{topic}-group");
    let stale = joined(bootstrap, &group, topic, timeout)?;
    let _current = joined(bootstrap, &group, topic, timeout)?;
    let mut offsets = TopicPartitionList::new();
    step(
        "listing offsets",
        offsets.add_partition_offset(topic, 0, Offset::Offset(1)),
    )?;
    match stale.commit(&offsets, rdkafka::consumer::CommitMode::Sync) {
        Ok(()) => Ok((
            false,
            "a member that missed the rebalance committed with its old generation".into(),
        )),
        Err(e) => {
            use rdkafka::types::RDKafkaErrorCode::*;
            let rejected = matches!(
                e.rdkafka_error_code(),
                Some(IllegalGeneration | UnknownMemberId | RebalanceInProgress)
            );
            if rejected {
                Ok((
                    true,
                    format!("a member that missed the rebalance could not commit: {e}"),
                ))
            } else {
                // A local error says nothing about what the broker would have done.
                Err(ProbeError::Client {
                    step: "committing as the member that missed the rebalance",
                    source: e,
                })
            }
        }
    }
}

/// Commits offset 1 of partition 0 from the first revoke callback it gets.
struct RevokeCommitter {
    topic: String,
    result: std::sync::Mutex<Option<Result<(), KafkaError>>>,
}

impl rdkafka::client::ClientContext for RevokeCommitter {}

impl ConsumerContext for RevokeCommitter {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut result = self
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if revoked.count() == 0 || result.is_some() {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        *result = Some(
            offsets
                .add_partition_offset(&self.topic, 0, Offset::Offset(1))
                .and_then(|()| consumer.commit(&offsets, CommitMode::Sync)),
        );
    }
}

/// Member A holds both partitions; member B joins; A's revoke callback commits, while the
/// group rebalances.
fn commit_during_rebalance(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<(bool, String), ProbeError> {
    let group = format!("{topic}-group");
    let committer: BaseConsumer<RevokeCommitter> = step(
        "creating a group consumer",
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "2000")
            .set("heartbeat.interval.ms", "500")
            .set("log_level", "0")
            .create_with_context(RevokeCommitter {
                topic: topic.to_string(),
                result: std::sync::Mutex::new(None),
            }),
    )?;
    let committer = Member(Some(committer));
    step("subscribing", committer.subscribe(&[topic]))?;
    let deadline = Instant::now() + timeout;
    while !committer.assignment().is_ok_and(|a| a.count() > 0) {
        if Instant::now() >= deadline {
            return Err(ProbeError::NotJoined {
                group,
                waited: timeout,
            });
        }
        let _ = committer.poll(Duration::from_millis(100));
    }
    let joiner = Member(Some(plain_consumer(bootstrap, &group)?));
    step("subscribing", joiner.subscribe(&[topic]))?;
    while Instant::now() < deadline {
        let _ = committer.poll(Duration::from_millis(50));
        let _ = joiner.poll(Duration::from_millis(50));
        let result = committer
            .context()
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match result {
            None => continue,
            Some(Ok(())) => {
                return Ok((
                    true,
                    "the commit in the revoke callback went through".into(),
                ));
            }
            Some(Err(e))
                if e.rdkafka_error_code()
                    == Some(rdkafka::types::RDKafkaErrorCode::RebalanceInProgress) =>
            {
                return Ok((
                    false,
                    format!("the commit in the revoke callback was refused: {e}"),
                ));
            }
            Some(Err(source)) => {
                return Err(ProbeError::Client {
                    step: "committing in the revoke callback",
                    source,
                });
            }
        }
    }
    Err(ProbeError::Timeout(timeout))
}

/// Counts the non-empty revocations a member goes through.
#[derive(Default)]
struct RevokeCounter(std::sync::atomic::AtomicUsize);

impl rdkafka::client::ClientContext for RevokeCounter {}

impl ConsumerContext for RevokeCounter {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Revoke(l) if l.count() > 0) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn static_member(
    bootstrap: &str,
    group: &str,
    topic: &str,
    instance: &str,
) -> Result<Member<RevokeCounter>, ProbeError> {
    let consumer: BaseConsumer<RevokeCounter> = step(
        "creating a static group member",
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("group.instance.id", instance)
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "2000")
            .set("heartbeat.interval.ms", "500")
            .set("log_level", "0")
            .create_with_context(RevokeCounter::default()),
    )?;
    let consumer = Member(Some(consumer));
    step("subscribing", consumer.subscribe(&[topic]))?;
    Ok(consumer)
}

fn owned<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> usize {
    consumer.assignment().map_or(0, |a| a.count())
}

/// Static members A and B share two partitions; A's process dies (no LeaveGroup) and a new A
/// with the same `group.instance.id` starts at once. A broker that keeps static members hands
/// the new A the old one's partition while B revokes nothing.
fn static_members(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<(bool, String), ProbeError> {
    let group = format!("{topic}-group");
    let deadline = Instant::now() + timeout;
    let not_joined = || ProbeError::NotJoined {
        group: group.clone(),
        waited: timeout,
    };
    let first = static_member(bootstrap, &group, topic, "a")?;
    let watcher = static_member(bootstrap, &group, topic, "b")?;
    while owned(&first) != 1 || owned(&watcher) != 1 {
        if Instant::now() >= deadline {
            return Err(not_joined());
        }
        let _ = first.poll(Duration::from_millis(50));
        let _ = watcher.poll(Duration::from_millis(50));
    }
    drop(first);
    let revokes_before = watcher
        .context()
        .0
        .load(std::sync::atomic::Ordering::SeqCst);
    let restarted = static_member(bootstrap, &group, topic, "a")?;
    while owned(&restarted) != 1 {
        if Instant::now() >= deadline {
            return Err(not_joined());
        }
        let _ = restarted.poll(Duration::from_millis(50));
        let _ = watcher.poll(Duration::from_millis(50));
    }
    // Long enough for a rebalance the restart started to reach the watcher.
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        let _ = restarted.poll(Duration::from_millis(50));
        let _ = watcher.poll(Duration::from_millis(50));
    }
    let revokes = watcher
        .context()
        .0
        .load(std::sync::atomic::Ordering::SeqCst)
        - revokes_before;
    Ok((
        revokes == 0,
        format!(
            "a static member restarted within its session; the other member revoked \
             partitions {revokes} times (Kafka: 0)"
        ),
    ))
}

/// Writes three records in one batch, then asks for the end offset.
fn end_offsets(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<(bool, String), ProbeError> {
    let producer: BaseProducer = step(
        "creating a producer",
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "100")
            .set("log_level", "0")
            .create(),
    )?;
    for payload in ["a", "b", "c"] {
        send(&producer, topic, payload)?;
    }
    step("flushing", producer.flush(timeout))?;
    let (_, end) = step(
        "reading the end offset",
        producer.client().fetch_watermarks(topic, 0, timeout),
    )?;
    Ok((
        end == 3,
        format!("three records in one batch; the end offset is {end} (Kafka: 3)"),
    ))
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

    #[test]
    fn the_mock_clusters_self_check() {
        let started = Instant::now();
        let found = crate::broker::BrokerProvider::MockCluster
            .self_check()
            .unwrap();
        println!("{found}in {:?}", started.elapsed());
        assert!(
            found.shortfall(Capability::HidesAbortedRecords).is_some(),
            "{found}"
        );
        let revoke_commit = found
            .shortfall(Capability::AcceptsCommitsDuringRebalance)
            .expect("the mock refuses commits while the group rebalances");
        assert!(revoke_commit.contains("refused"), "{found}");
        assert!(
            found.shortfall(Capability::KeepsStaticMembers).is_some(),
            "the mock cluster has no KIP-345: {found}"
        );
    }
}
