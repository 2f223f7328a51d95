//! Configuring a simulation: topics, input records, instances, faults and timing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::Simulation;
use crate::error::Error;
use crate::history::TopicName;
use crate::scenario::FaultSchedule;

/// A record the simulation produces into its input topics (as the upstream service would).
///
/// Its key and payload are shared, not copied, by every run of the simulation, the log it
/// lands in and the cluster snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputRecord {
    pub(crate) topic: TopicName,
    pub(crate) partition: Option<i32>,
    pub(crate) key: Option<Arc<[u8]>>,
    pub(crate) payload: Option<Arc<[u8]>>,
    pub(crate) transaction: Option<bool>,
    pub(crate) event_id: Option<String>,
}

impl InputRecord {
    /// A record for `topic` with no key and no payload.
    pub fn new(topic: impl Into<String>) -> Self {
        InputRecord {
            topic: TopicName::from(topic.into()),
            partition: None,
            key: None,
            payload: None,
            transaction: None,
            event_id: None,
        }
    }

    /// Sets the key; keyed records land on the partition librdkafka's default partitioner
    /// (`consistent_random`: CRC32 of the key) picks.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into().into());
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = Some(payload.into().into());
        self
    }

    /// Pins the record to a partition instead of partitioning by key.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Writes the record as a transactional upstream producer does, in a transaction of its
    /// own that commits (`true`) or aborts (`false`): the transaction's marker follows the
    /// record at the next offset, and an aborted record stays in the log, hidden from
    /// `read_committed` consumers only.
    pub fn in_transaction(mut self, commit: bool) -> Self {
        self.transaction = Some(commit);
        self
    }

    /// Names the event the record carries. An effect for the same event id
    /// ([`EffectSink::perform`](crate::EffectSink::perform)) belongs to this record: faults
    /// anchored on the record's effects fire on it, and the report attributes it to the
    /// record, even when the consumer received other records in between (a batch).
    pub fn event_id(mut self, event_id: impl Into<String>) -> Self {
        self.event_id = Some(event_id.into());
        self
    }
}

/// The settings of a simulation; see [`SimulationBuilder`].
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) seed: u64,
    pub(crate) topics: Vec<(String, i32)>,
    pub(crate) instances: u32,
    pub(crate) start_at: BTreeMap<u32, Duration>,
    pub(crate) faults: FaultSchedule,
    /// The input, shared by every run of the simulation.
    pub(crate) input: Arc<Vec<(Duration, InputRecord)>>,
    pub(crate) latency: (Duration, Duration),
    pub(crate) restart_delay: Duration,
    pub(crate) max_restarts: u32,
    pub(crate) time_limit: Duration,
    pub(crate) settle: Duration,
    pub(crate) session_timeout_bounds: (Duration, Duration),
    pub(crate) progress_query: Option<String>,
    pub(crate) store_effects: Vec<(String, String)>,
}

/// Builds a [`Simulation`]. Setters take `&mut self`; [`build`](Self::build) checks the settings
/// and can be called again.
#[derive(Clone, Debug)]
pub struct SimulationBuilder {
    pub(crate) config: Config,
}

impl Default for SimulationBuilder {
    fn default() -> Self {
        SimulationBuilder {
            config: Config {
                seed: 0,
                topics: Vec::new(),
                instances: 1,
                start_at: BTreeMap::new(),
                faults: FaultSchedule::new(),
                input: Arc::default(),
                latency: (Duration::from_millis(1), Duration::from_millis(5)),
                restart_delay: Duration::from_secs(1),
                max_restarts: 50,
                time_limit: Duration::from_secs(30 * 60),
                settle: Duration::from_secs(10),
                session_timeout_bounds: (Duration::from_secs(6), Duration::from_secs(30 * 60)),
                progress_query: None,
                store_effects: Vec::new(),
            },
        }
    }
}

impl SimulationBuilder {
    /// The seed of every random choice in the run (latencies, fetch order, unkeyed partitions).
    /// Same seed, same history. Default 0.
    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.config.seed = seed;
        self
    }

    /// Declares a topic with `partitions` partitions.
    pub fn topic(&mut self, name: impl Into<String>, partitions: i32) -> &mut Self {
        self.config.topics.push((name.into(), partitions));
        self
    }

    /// How many consumer instances run (default 1).
    pub fn instances(&mut self, instances: u32) -> &mut Self {
        self.config.instances = instances;
        self
    }

    /// Starts instance `instance` (counting from 0) at virtual time `at` instead of at the
    /// start: a member that joins the group later and triggers a rebalance.
    pub fn start_at(&mut self, instance: u32, at: Duration) -> &mut Self {
        self.config.start_at.insert(instance, at);
        self
    }

    /// The faults to inject (default none).
    pub fn faults(&mut self, faults: FaultSchedule) -> &mut Self {
        self.config.faults = faults;
        self
    }

    /// Produces a record before the instances start.
    pub fn produce(&mut self, record: InputRecord) -> &mut Self {
        Arc::make_mut(&mut self.config.input).push((Duration::ZERO, record));
        self
    }

    /// Produces a record at virtual time `at`.
    pub fn produce_at(&mut self, at: Duration, record: InputRecord) -> &mut Self {
        Arc::make_mut(&mut self.config.input).push((at, record));
        self
    }

    /// Bounds of the random network latency of asynchronous calls, in whole milliseconds
    /// (tokio's timer resolution; default 1ms..=5ms). The randomness decides how instances
    /// interleave; a zero latency makes calls return without yielding to other instances.
    pub fn latency(&mut self, min: Duration, max: Duration) -> &mut Self {
        self.config.latency = (min, max);
        self
    }

    /// How long a crashed or failed instance stays down before it restarts (default 1s).
    pub fn restart_delay(&mut self, delay: Duration) -> &mut Self {
        self.config.restart_delay = delay;
        self
    }

    /// How many times an instance is restarted before it is left down (default 50).
    pub fn max_restarts(&mut self, restarts: u32) -> &mut Self {
        self.config.max_restarts = restarts;
        self
    }

    /// Reads the consumer's progress from its durable store instead of the group's committed
    /// offsets: for a consumer that keeps the next offset to consume in its own database, in
    /// the transaction that writes its result, and never commits to Kafka. `query` returns
    /// `(topic, partition, next_offset)` rows; the run is quiet once they reach the end of
    /// each assigned partition, and the lag a run ends with is read from them. A query that
    /// fails, or returns other columns, fails the run with
    /// [`Error::StoreProgress`](crate::Error::StoreProgress).
    ///
    /// ```
    /// let mut sim = effectively_once::Simulation::builder();
    /// sim.topic("orders", 2)
    ///     .progress_from_store("SELECT topic, partition, next_offset FROM kafka_offsets");
    /// ```
    pub fn progress_from_store(&mut self, query: impl Into<String>) -> &mut Self {
        self.config.progress_query = Some(query.into());
        self
    }

    /// Names, in the history, the rows each durable-store transaction writes to the store
    /// effect `name`: after every commit `query` is run again, and the commit's entry lists
    /// the event ids whose count went up or down (`store transaction committed: inbox
    /// +evt-3`). The query has the shape of a
    /// [`StoreEffect`](crate::ledger::StoreEffect)'s: `event_id` rows, or `event_id, count`
    /// rows. One that fails (its table is not created yet) or returns other columns shows
    /// nothing. [`Verifier::store_effect`](crate::Verifier::store_effect) sets it for each
    /// store effect it counts. Repeat for several.
    ///
    /// ```
    /// let mut sim = effectively_once::Simulation::builder();
    /// sim.topic("orders", 1)
    ///     .store_effect("inbox", "SELECT event_id FROM inbox");
    /// ```
    pub fn store_effect(&mut self, name: impl Into<String>, query: impl Into<String>) -> &mut Self {
        self.config.store_effects.push((name.into(), query.into()));
        self
    }

    /// The virtual time after which the run stops even if work remains (default 30 min).
    pub fn time_limit(&mut self, limit: Duration) -> &mut Self {
        self.config.time_limit = limit;
        self
    }

    /// How long nothing must happen, with everything consumed and committed, before the run
    /// counts as quiesced (default 10s).
    pub fn settle(&mut self, settle: Duration) -> &mut Self {
        self.config.settle = settle;
        self
    }

    /// The broker's `group.min.session.timeout.ms` and `group.max.session.timeout.ms` (default
    /// 6s and 30min, Kafka's defaults). A consumer outside them cannot join.
    pub fn broker_session_timeout_bounds(&mut self, min: Duration, max: Duration) -> &mut Self {
        self.config.session_timeout_bounds = (min, max);
        self
    }

    /// Checks the settings and builds the simulation.
    pub fn build(&self) -> Result<Simulation, Error> {
        let c = &self.config;
        let invalid = |msg: String| Err(Error::InvalidSetting(msg));
        if c.instances == 0 {
            return invalid("at least one instance must run".into());
        }
        if let Some(instance) = c.start_at.keys().find(|i| **i >= c.instances) {
            return invalid(format!(
                "start_at names instance {instance}, but only {} instances run",
                c.instances
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, partitions) in &c.topics {
            if name.is_empty() {
                return invalid("topic names must not be empty".into());
            }
            if !seen.insert(name) {
                return invalid(format!("topic {name:?} is declared twice"));
            }
            if *partitions < 1 {
                return invalid(format!(
                    "topic {name:?} must have at least one partition, not {partitions}"
                ));
            }
        }
        if c.latency.0 > c.latency.1 {
            return invalid(format!(
                "minimum latency {:?} exceeds maximum latency {:?}",
                c.latency.0, c.latency.1
            ));
        }
        if c.session_timeout_bounds.0 > c.session_timeout_bounds.1 {
            return invalid("minimum session timeout exceeds the maximum".into());
        }
        if c.time_limit.is_zero() {
            return invalid("the time limit must be positive".into());
        }
        for (_, record) in c.input.iter() {
            match c.topics.iter().find(|(t, _)| *t == record.topic) {
                None => return Err(Error::UnknownTopic(record.topic.to_string())),
                Some((_, partitions)) => {
                    if let Some(p) = record.partition.filter(|p| !(0..*partitions).contains(p)) {
                        return Err(Error::UnknownPartition {
                            topic: record.topic.to_string(),
                            partition: p,
                            partitions: *partitions,
                        });
                    }
                }
            }
        }
        c.faults.validate()?;
        if let Some(rule) = c
            .faults
            .rules()
            .iter()
            .find(|r| r.anchor.input_record().is_some_and(|i| i >= c.input.len()))
        {
            return invalid(format!(
                "fault rule ({}) names input record {}, but only {} are produced",
                rule.anchor,
                rule.anchor.input_record().unwrap_or_default(),
                c.input.len()
            ));
        }
        Ok(Simulation { config: c.clone() })
    }
}
