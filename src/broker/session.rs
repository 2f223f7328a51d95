//! One run's use of a real broker: the clients' settings, the input it writes, what the
//! consumers subscribed to, how far their groups are behind, and what the topics hold at the
//! end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::BrokerError;
use crate::history::TopicPartition;
use crate::history::{ClusterSnapshot, LoggedRecord, RecordPosition};
use crate::history::{Incarnation, Lag};
use crate::run::backend::InputWrite;

/// How long one admin-style call (metadata, offsets, a produce) may take.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `session.timeout.ms` a consumer gets on a real broker.
pub(crate) const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest `session.timeout.ms` a consumer gets in a run with broker restarts: an outage
/// of up to 500 ms (`MAX_BROKER_OUTAGE`) and librdkafka's way back must fit in the session
/// with room for a loaded machine. The member's first heartbeat after a restart comes after:
/// up to one heartbeat interval since its last one (500 ms), the outage, a reconnect backoff
/// (up to 240 ms with jitter), a coordinator lookup that can wait behind a long-poll fetch on
/// the same connection ([`MAX_FETCH_WAIT`], seen three times in a row), and up to another
/// heartbeat interval. Measured on the mock cluster beside a build and five busy loops (load
/// 7 on 2 cores): with a 2 s session and the default fetch wait, one run in two lost its
/// member, whose first heartbeat came 2.27 s after the last one (1.5 s of it three lookups,
/// each answered after a 500 ms fetch); with the fetch wait capped the gap was 0.5 to 1.5 s,
/// which leaves 4.5 s of this session's 6 s for thread scheduling under load.
pub(crate) const RESTART_SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// The longest `heartbeat.interval.ms` a consumer gets on a real broker: a quarter of
/// [`MAX_SESSION_TIMEOUT`], whatever the run's session cap.
const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// The longest `reconnect.backoff.max.ms` a client gets on a real broker.
pub(crate) const MAX_RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// The longest `fetch.wait.max.ms` a client gets on a real broker (librdkafka's default is
/// 500 ms). A broker answers a connection's requests in order, so a request sent behind a
/// fetch that waits for data waits as long: after a restart, the consumer's lookup of its
/// group coordinator (`FindCoordinator`) went out right behind such a fetch and was answered
/// 500 ms later, three times in a row (captured on the mock cluster under load), before the
/// member could heartbeat again.
pub(crate) const MAX_FETCH_WAIT: Duration = Duration::from_millis(100);

/// A broker the run uses, and what the run learned about its use.
pub(crate) struct BrokerSession {
    bootstrap: String,
    /// The longest `session.timeout.ms` the run's consumers get.
    max_session_timeout: Duration,
    groups: Mutex<BTreeMap<String, BTreeSet<String>>>,
    polling: Arc<Mutex<BTreeMap<Incarnation, u32>>>,
    /// Incarnations that subscribed and have not been handed an assignment since: a join the
    /// run cannot see is under way.
    joining: Mutex<BTreeSet<Incarnation>>,
}

/// Counts a `recv` in progress for as long as it lives.
pub(crate) struct Polling {
    counts: Arc<Mutex<BTreeMap<Incarnation, u32>>>,
    incarnation: Incarnation,
}

impl Drop for Polling {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.incarnation) {
            *n -= 1;
        }
    }
}

fn client(step: &'static str) -> impl Fn(KafkaError) -> BrokerError {
    move |source| BrokerError::Client { step, source }
}

impl BrokerSession {
    /// A session on the broker at `bootstrap` whose consumers' sessions last at most
    /// `max_session_timeout` ([`MAX_SESSION_TIMEOUT`], or [`RESTART_SESSION_TIMEOUT`] in a run
    /// with broker restarts).
    pub(crate) fn new(bootstrap: String, max_session_timeout: Duration) -> Self {
        BrokerSession {
            bootstrap,
            max_session_timeout,
            groups: Mutex::new(BTreeMap::new()),
            polling: Arc::new(Mutex::new(BTreeMap::new())),
            joining: Mutex::new(BTreeSet::new()),
        }
    }

    /// The user's client settings, pointed at this broker, with the session timeout capped
    /// at the session's cap so that a crash costs seconds of real time (the simulator
    /// honours the setting in virtual time), the heartbeat interval at
    /// [`MAX_HEARTBEAT_INTERVAL`], and the reconnect backoff and fetch wait at
    /// [`MAX_RECONNECT_BACKOFF`] and [`MAX_FETCH_WAIT`] so that a broker restart does not cost
    /// that short session.
    pub(crate) fn client_config(&self, user: &ClientConfig) -> ClientConfig {
        let mut config = user.clone();
        config.set("bootstrap.servers", &self.bootstrap);
        let millis = |key: &str, default: u64| {
            user.get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        let cap = self.max_session_timeout.as_millis() as u64;
        if millis("session.timeout.ms", 45_000) > cap {
            config.set("session.timeout.ms", cap.to_string());
        }
        let heartbeat = MAX_HEARTBEAT_INTERVAL.as_millis() as u64;
        if millis("heartbeat.interval.ms", 3_000) > heartbeat {
            config.set("heartbeat.interval.ms", heartbeat.to_string());
        }
        // After a broker restart librdkafka reconnects with an exponential backoff (up to 10 s
        // by default); with the short session above, a long backoff alone would cost the
        // session. Measured on the mock cluster: a 500 ms outage lost a 2 s session under
        // load with the default backoff.
        let backoff = MAX_RECONNECT_BACKOFF.as_millis() as u64;
        if millis("reconnect.backoff.max.ms", 10_000) > backoff {
            config.set("reconnect.backoff.max.ms", backoff.to_string());
            if millis("reconnect.backoff.ms", 100) > backoff {
                config.set("reconnect.backoff.ms", backoff.to_string());
            }
        }
        let fetch_wait = MAX_FETCH_WAIT.as_millis() as u64;
        if millis("fetch.wait.max.ms", 500) > fetch_wait {
            config.set("fetch.wait.max.ms", fetch_wait.to_string());
        }
        config
    }

    /// Notes a subscription, for the lag the run waits on; the incarnation is joining until
    /// its consumer is handed an assignment.
    pub(crate) fn subscribed(&self, incarnation: Incarnation, group: &str, topics: &[&str]) {
        self.joining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(incarnation);
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        groups
            .entry(group.to_string())
            .or_default()
            .extend(topics.iter().map(|t| t.to_string()));
    }

    /// Marks a `recv` in progress until the guard drops.
    pub(crate) fn polling(&self, incarnation: Incarnation) -> Polling {
        *self
            .polling
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(incarnation)
            .or_default() += 1;
        Polling {
            counts: self.polling.clone(),
            incarnation,
        }
    }

    /// The incarnation's consumer was handed an assignment (perhaps empty).
    pub(crate) fn joined(&self, incarnation: Incarnation) {
        self.joining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&incarnation);
    }

    /// Whether the incarnation waits in `recv`, not joining a group.
    pub(crate) fn parked(&self, incarnation: Incarnation) -> bool {
        let joining = self
            .joining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&incarnation);
        !joining
            && self
                .polling
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&incarnation)
                .is_some_and(|n| *n > 0)
    }

    fn admin_consumer(&self, group: &str, isolation: &str) -> Result<BaseConsumer, BrokerError> {
        ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()
            .map_err(client("creating a reader"))
    }

    /// Writes the run's input in order to the partitions the run chose, one record per
    /// produce request (some brokers report wrong end offsets for multi-record batches; a
    /// transactional record in a transaction of its own), checks that the offsets come out
    /// dense from 0 (a transaction's marker takes the offset after its record) and that each
    /// partition ends where its last record (or marker) does, and says where each landed.
    pub(crate) async fn produce_input(
        &self,
        records: &[InputWrite],
    ) -> Result<Vec<RecordPosition>, BrokerError> {
        let producer = |transactional: bool| -> Result<FutureProducer, BrokerError> {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &self.bootstrap)
                .set("acks", "all")
                .set("linger.ms", "0");
            if transactional {
                config.set("transactional.id", "effectively-once-upstream");
            }
            config
                .create()
                .map_err(client("creating the input producer"))
        };
        let plain = producer(false)?;
        let mut transactional: Option<FutureProducer> = None;
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut positions = Vec::new();
        for input in records {
            let mut record =
                FutureRecord::<[u8], [u8]>::to(&input.topic).partition(input.partition);
            if let Some(key) = &input.key {
                record = record.key(key);
            }
            if let Some(payload) = &input.payload {
                record = record.payload(payload);
            }
            let used = match input.transaction {
                None => &plain,
                Some(_) => {
                    if transactional.is_none() {
                        let p = producer(true)?;
                        p.init_transactions(CALL_TIMEOUT)
                            .map_err(client("init_transactions for the input"))?;
                        transactional = Some(p);
                    }
                    let p = transactional.as_ref().expect("created above");
                    p.begin_transaction()
                        .map_err(client("begin_transaction for the input"))?;
                    p
                }
            };
            let delivered = used
                .send(record, CALL_TIMEOUT)
                .await
                .map_err(|(e, _)| client("producing the input")(e))?;
            match input.transaction {
                Some(true) => used
                    .commit_transaction(CALL_TIMEOUT)
                    .map_err(client("committing the input's transaction"))?,
                Some(false) => used
                    .abort_transaction(CALL_TIMEOUT)
                    .map_err(client("aborting the input's transaction"))?,
                None => {}
            }
            let partition = TopicPartition::new(input.topic.clone(), delivered.partition);
            let expected = next
                .entry((input.topic.to_string(), delivered.partition))
                .or_default();
            if delivered.offset != *expected {
                return Err(BrokerError::UnexpectedOffset {
                    partition,
                    expected: *expected,
                    end: delivered.offset,
                    transactional: records.iter().any(|r| r.transaction.is_some()),
                });
            }
            *expected += if input.transaction.is_some() { 2 } else { 1 };
            positions.push(partition.at(delivered.offset));
        }
        for ((topic, partition), expected) in next {
            let (_, end) = plain
                .client()
                .fetch_watermarks(&topic, partition, CALL_TIMEOUT)
                .map_err(client("reading the input's end offset"))?;
            if end != expected {
                return Err(BrokerError::UnexpectedOffset {
                    partition: TopicPartition::new(topic, partition),
                    expected,
                    end,
                    transactional: records.iter().any(|r| r.transaction.is_some()),
                });
            }
        }
        Ok(positions)
    }

    /// Each subscribed group's committed offset against the end of every partition of the
    /// topics it subscribed to.
    pub(crate) fn lag(&self) -> Result<Vec<Lag>, BrokerError> {
        let groups = self
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut lag = Vec::new();
        for (group, topics) in groups {
            let reader = self.admin_consumer(&group, "read_uncommitted")?;
            let mut list = TopicPartitionList::new();
            let mut ends = Vec::new();
            for topic in &topics {
                for partition in self.partitions(&reader, topic)? {
                    let (_, end) = reader
                        .fetch_watermarks(topic, partition, CALL_TIMEOUT)
                        .map_err(client("reading end offsets"))?;
                    list.add_partition(topic, partition);
                    ends.push((TopicPartition::new(topic.clone(), partition), end));
                }
            }
            let committed = reader
                .committed_offsets(list, CALL_TIMEOUT)
                .map_err(client("reading committed offsets"))?;
            for (tp, end) in ends {
                let committed = committed
                    .find_partition(&tp.topic, tp.partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                lag.push(Lag {
                    group: group.clone(),
                    partition: tp,
                    committed,
                    end,
                });
            }
        }
        Ok(lag)
    }

    fn partitions(&self, reader: &BaseConsumer, topic: &str) -> Result<Vec<i32>, BrokerError> {
        let metadata = reader
            .fetch_metadata(Some(topic), CALL_TIMEOUT)
            .map_err(client("reading topic metadata"))?;
        let mut partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// What `topics` hold and what every subscribed group committed. Records a
    /// `read_committed` reader does not get are marked aborted; offsets no reader gets are
    /// control records (transaction markers).
    pub(crate) fn snapshot(
        &self,
        topics: &[(String, i32)],
    ) -> Result<ClusterSnapshot, BrokerError> {
        let mut logs = BTreeMap::new();
        for (topic, partitions) in topics {
            for partition in 0..*partitions {
                let tp = TopicPartition::new(topic.clone(), partition);
                let (all, end) = self.read_partition(&tp, "read_uncommitted")?;
                let committed: BTreeSet<i64> = self
                    .read_partition(&tp, "read_committed")?
                    .0
                    .into_iter()
                    .map(|r| r.offset)
                    .collect();
                let mut by_offset: BTreeMap<i64, LoggedRecord> =
                    all.into_iter().map(|r| (r.offset, r)).collect();
                let records = (0..end)
                    .map(|offset| match by_offset.remove(&offset) {
                        Some(mut r) => {
                            r.aborted = !committed.contains(&offset);
                            r
                        }
                        None => LoggedRecord {
                            offset,
                            key: None,
                            payload: None,
                            control: true,
                            aborted: false,
                            open: false,
                        },
                    })
                    .collect();
                logs.insert(tp, records);
            }
        }
        let mut committed = BTreeMap::new();
        for lag in self.lag()? {
            if let Some(offset) = lag.committed {
                committed.insert((lag.group, lag.partition), offset);
            }
        }
        Ok(ClusterSnapshot::from_parts(logs, committed))
    }

    /// Every record of a partition a reader with `isolation` gets, up to the end offset
    /// (the last stable offset for `read_committed`), and that end offset.
    fn read_partition(
        &self,
        tp: &TopicPartition,
        isolation: &str,
    ) -> Result<(Vec<LoggedRecord>, i64), BrokerError> {
        let reader = self.admin_consumer("effectively-once-snapshot", isolation)?;
        let (_, end) = reader
            .fetch_watermarks(&tp.topic, tp.partition, CALL_TIMEOUT)
            .map_err(client("reading end offsets"))?;
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&tp.topic, tp.partition, Offset::Beginning)
            .map_err(client("reading a partition"))?;
        reader
            .assign(&list)
            .map_err(client("reading a partition"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut records = Vec::new();
        loop {
            let position = reader.position().ok().and_then(|p| {
                match p.find_partition(&tp.topic, tp.partition)?.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }
            });
            let read_to = records.last().map_or(0, |r: &LoggedRecord| r.offset + 1);
            if position.is_some_and(|p| p >= end) || read_to >= end {
                return Ok((records, end));
            }
            if Instant::now() > deadline {
                return Err(BrokerError::ReadTimeout {
                    partition: tp.clone(),
                    end,
                    read: records.len(),
                });
            }
            match reader.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => records.push(LoggedRecord {
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                    control: false,
                    aborted: false,
                    open: false,
                }),
                Some(Err(e)) => return Err(client("reading a partition")(e)),
                None => {}
            }
        }
    }
}
