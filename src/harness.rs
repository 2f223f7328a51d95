//! Running consumer instances against the simulated cluster.
//!
//! A [`Simulation`] runs `n` instances of the user's consumer, each started by a factory from an
//! [`InstanceContext`], on one current-thread tokio runtime with a paused clock. Instances crash
//! where the fault schedule says, restart after a delay as a new incarnation, and the run goes on
//! until it quiesces (everything consumed and committed, nothing happening), every instance
//! stopped for good, or the virtual-time limit is reached. The result is an [`Outcome`]: the
//! history and a snapshot of the cluster.

use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Display;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaResult;
use rusqlite::Connection;
use tokio::time::Instant;

use crate::broker::self_check::SelfCheck;
use crate::broker::{BrokerError, BrokerProvider, BrokerSession, InputWrite, RunningBroker};
use crate::client::RebalanceHandler;
use crate::effect::EffectSink;
use crate::error::Error;
use crate::fault::{FaultPlan, FaultRule, FaultSchedule, Operation};
use crate::history::{History, HistoryEvent, Incarnation, InstanceId};
use crate::record::TopicPartition;
use crate::sim::log::RecordKind;
use crate::sim::{
    CrashSignal, InstanceState, InstanceStatus, Shared, SimConsumer, SimProducer, SimSettings,
    World,
};
use crate::store::{self, DurableStore};

/// A record the simulation produces into its input topics (as the upstream service would).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputRecord {
    topic: String,
    partition: Option<i32>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    transaction: Option<bool>,
}

impl InputRecord {
    /// A record for `topic` with no key and no payload.
    pub fn new(topic: impl Into<String>) -> Self {
        InputRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            payload: None,
            transaction: None,
        }
    }

    /// Sets the key; keyed records land on the partition librdkafka's default partitioner
    /// (`consistent_random`: CRC32 of the key) picks.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = Some(payload.into());
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
}

/// How a consumer's future ended: `()` or a `Result` whose error is displayed in the history.
pub trait InstanceExit {
    /// The error to report, if the consumer returned one.
    fn exit_error(self) -> Option<String>;
}

impl InstanceExit for () {
    fn exit_error(self) -> Option<String> {
        None
    }
}

impl<T, E: Display> InstanceExit for Result<T, E> {
    fn exit_error(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// What an instance's factory gets: the means to create its clients, effect sinks and
/// durable store. Everything created from it belongs to this incarnation and dies with it.
#[derive(Clone)]
pub struct InstanceContext {
    shared: Arc<Shared>,
    incarnation: Incarnation,
    store_uri: Rc<str>,
    broker: Option<Arc<BrokerSession>>,
}

impl std::fmt::Debug for InstanceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceContext")
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

impl InstanceContext {
    /// The instance slot (stable across restarts).
    pub fn instance(&self) -> InstanceId {
        self.incarnation.instance
    }

    /// This life of the instance.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// Creates a consumer from the same `ClientConfig` production uses. Settings that change
    /// delivery semantics are honoured; unmodelled ones are refused with a clear error. On a
    /// real broker ([`Simulation::run_on`]) it is librdkafka's consumer, pointed at the broker
    /// (`bootstrap.servers` is replaced, `session.timeout.ms` capped at 2 s).
    pub fn create_consumer(&self, config: &ClientConfig) -> KafkaResult<SimConsumer> {
        self.consumer(config, None)
    }

    fn consumer(
        &self,
        config: &ClientConfig,
        handler: Option<Arc<dyn RebalanceHandler>>,
    ) -> KafkaResult<SimConsumer> {
        match &self.broker {
            Some(session) => SimConsumer::on_broker(
                self.shared.clone(),
                self.incarnation,
                session.clone(),
                config,
                handler,
            ),
            None => SimConsumer::create(self.shared.clone(), self.incarnation, config, handler),
        }
    }

    /// Creates a consumer whose rebalance and commit callbacks go to `handler`.
    pub fn create_consumer_with_handler<H: RebalanceHandler>(
        &self,
        config: &ClientConfig,
        handler: H,
    ) -> KafkaResult<SimConsumer> {
        self.consumer(config, Some(Arc::new(handler)))
    }

    /// Creates a producer.
    pub fn create_producer(&self, config: &ClientConfig) -> KafkaResult<SimProducer> {
        match &self.broker {
            Some(session) => {
                SimProducer::on_broker(self.shared.clone(), self.incarnation, session, config)
            }
            None => SimProducer::create(self.shared.clone(), self.incarnation, config),
        }
    }

    /// An effect sink named `name` (`"email"`, `"payment"`).
    pub fn effect_sink(&self, name: &str) -> EffectSink {
        EffectSink::new(self.shared.clone(), self.incarnation, name)
    }

    /// A new connection to the scenario's durable database, which outlives crashes.
    pub fn durable_store(&self) -> rusqlite::Result<DurableStore> {
        let conn = store::open_scenario_db(&self.store_uri)?;
        Ok(DurableStore::intercepted(
            conn,
            self.shared.clone(),
            self.incarnation,
        ))
    }
}

/// One record in a [`ClusterSnapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRecord {
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its payload.
    pub payload: Option<Vec<u8>>,
    /// True for control records (transaction markers), which consumers never see.
    pub control: bool,
    /// True for records of an aborted transaction, which `read_committed` consumers never see.
    pub aborted: bool,
    /// True for records of a transaction that was still open when the run stopped.
    pub open: bool,
}

/// The cluster's state when the run stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSnapshot {
    logs: BTreeMap<TopicPartition, Vec<LoggedRecord>>,
    committed: BTreeMap<(String, TopicPartition), i64>,
}

impl ClusterSnapshot {
    /// The records of a partition (empty if it does not exist).
    pub fn records(&self, topic: &str, partition: i32) -> &[LoggedRecord] {
        self.logs
            .get(&TopicPartition::new(topic, partition))
            .map_or(&[], Vec::as_slice)
    }

    /// The end offset (high watermark) of a partition.
    pub fn end_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.logs
            .get(&TopicPartition::new(topic, partition))
            .map(|r| r.len() as i64)
    }

    /// The records of `topic` a `read_committed` consumer reads, with their partitions: data
    /// records outside transactions or of committed ones (no markers, nothing aborted, nothing
    /// of a transaction still open).
    pub fn committed_records<'a>(
        &'a self,
        topic: &'a str,
    ) -> impl Iterator<Item = (i32, &'a LoggedRecord)> + 'a {
        self.logs
            .iter()
            .filter(move |(tp, _)| tp.topic == topic)
            .flat_map(|(tp, records)| records.iter().map(move |r| (tp.partition, r)))
            .filter(|(_, r)| !r.control && !r.aborted && !r.open)
    }

    /// A group's committed offset for a partition.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.committed
            .get(&(group.to_string(), TopicPartition::new(topic, partition)))
            .copied()
    }

    pub(crate) fn from_parts(
        logs: BTreeMap<TopicPartition, Vec<LoggedRecord>>,
        committed: BTreeMap<(String, TopicPartition), i64>,
    ) -> Self {
        ClusterSnapshot { logs, committed }
    }

    /// Takes the transactional flags (aborted, marker) of the input partitions from the
    /// record the run kept of what it wrote: a broker's `read_committed` readers are not
    /// trusted to tell aborted records apart (see the self-check). Partitions whose content
    /// differs from what was written keep what the broker said.
    pub(crate) fn with_input_flags(mut self, written: &ClusterSnapshot) -> Self {
        for (tp, records) in &written.logs {
            let Some(read) = self.logs.get_mut(tp) else {
                continue;
            };
            let same = read.len() == records.len()
                && read
                    .iter()
                    .zip(records)
                    .all(|(r, w)| r.key == w.key && r.payload == w.payload);
            if !records.is_empty() && same {
                read.clone_from(records);
            }
        }
        self
    }

    fn of(world: &World) -> Self {
        let mut logs = BTreeMap::new();
        for (name, topic) in &world.topics {
            for (p, partition) in topic.partitions.iter().enumerate() {
                let records = partition
                    .records
                    .iter()
                    .enumerate()
                    .map(|(offset, r)| LoggedRecord {
                        offset: offset as i64,
                        key: r.key.clone(),
                        payload: r.payload.clone(),
                        control: r.kind == RecordKind::Control,
                        aborted: partition.aborted_at(offset as i64),
                        open: partition.open_at(offset as i64),
                    })
                    .collect();
                logs.insert(TopicPartition::new(name.clone(), p as i32), records);
            }
        }
        let committed = world
            .groups
            .iter()
            .flat_map(|(g, group)| {
                group
                    .committed
                    .iter()
                    .map(move |(tp, o)| ((g.clone(), tp.clone()), *o))
            })
            .collect();
        ClusterSnapshot { logs, committed }
    }
}

/// What a run produced.
pub struct Outcome {
    history: History,
    cluster: ClusterSnapshot,
    self_check: Option<SelfCheck>,
    unfired: Vec<FaultRule>,
    operations: BTreeMap<Operation, u64>,
    store: Connection,
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outcome")
            .field("history", &self.history)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Outcome {
    /// Everything that happened.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The cluster when the run stopped.
    pub fn cluster(&self) -> &ClusterSnapshot {
        &self.cluster
    }

    /// On a real broker: what it honours ([`BrokerProvider::self_check`]).
    pub fn broker_self_check(&self) -> Option<&SelfCheck> {
        self.self_check.as_ref()
    }

    /// The fault rules whose anchor was never reached: they did not fire, so the run did not
    /// test what they describe. Check this is empty when a test relies on its faults.
    pub fn unfired_faults(&self) -> &[FaultRule] {
        &self.unfired
    }

    /// How many times the instances reached each interception point (each [`Operation`]),
    /// faults or not: which operations the consumer performs.
    pub fn operations(&self) -> &BTreeMap<Operation, u64> {
        &self.operations
    }

    /// Reads the scenario's durable database as the run left it.
    pub fn read_store<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        f(&self.store)
    }
}

/// The settings of a simulation; see [`SimulationBuilder`].
#[derive(Clone, Debug)]
struct Config {
    seed: u64,
    topics: Vec<(String, i32)>,
    instances: u32,
    start_at: BTreeMap<u32, Duration>,
    faults: FaultSchedule,
    input: Vec<(Duration, InputRecord)>,
    latency: (Duration, Duration),
    restart_delay: Duration,
    max_restarts: u32,
    time_limit: Duration,
    settle: Duration,
    session_timeout_bounds: (Duration, Duration),
}

/// Builds a [`Simulation`]. Setters take `&mut self`; [`build`](Self::build) checks the settings
/// and can be called again.
#[derive(Clone, Debug)]
pub struct SimulationBuilder {
    config: Config,
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
                input: Vec::new(),
                latency: (Duration::from_millis(1), Duration::from_millis(5)),
                restart_delay: Duration::from_secs(1),
                max_restarts: 50,
                time_limit: Duration::from_secs(30 * 60),
                settle: Duration::from_secs(10),
                session_timeout_bounds: (Duration::from_secs(6), Duration::from_secs(30 * 60)),
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
        self.config.input.push((Duration::ZERO, record));
        self
    }

    /// Produces a record at virtual time `at`.
    pub fn produce_at(&mut self, at: Duration, record: InputRecord) -> &mut Self {
        self.config.input.push((at, record));
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
        for (_, record) in &c.input {
            match c.topics.iter().find(|(t, _)| *t == record.topic) {
                None => return Err(Error::UnknownTopic(record.topic.clone())),
                Some((_, partitions)) => {
                    if let Some(p) = record.partition.filter(|p| !(0..*partitions).contains(p)) {
                        return Err(Error::UnknownPartition {
                            topic: record.topic.clone(),
                            partition: p,
                            partitions: *partitions,
                        });
                    }
                }
            }
        }
        c.faults.validate()?;
        Ok(Simulation { config: c.clone() })
    }
}

/// A configured simulation; [`run`](Self::run) it with a consumer factory, as often as needed:
/// each run starts from scratch and the same settings give the same history.
#[derive(Clone, Debug)]
pub struct Simulation {
    config: Config,
}

static SCENARIO_DB: AtomicU64 = AtomicU64::new(0);

impl Simulation {
    /// Starts building a simulation.
    pub fn builder() -> SimulationBuilder {
        SimulationBuilder::default()
    }

    /// Runs the instances to the end and returns what happened.
    ///
    /// `factory` starts one instance: it gets an [`InstanceContext`] and returns the consumer's
    /// future (typically its poll loop). It is called again for each restart.
    pub fn run<F, Fut>(&self, factory: F) -> Result<Outcome, Error>
    where
        F: Fn(InstanceContext) -> Fut + 'static,
        Fut: Future + 'static,
        Fut::Output: InstanceExit,
    {
        self.run_with(None, factory)
    }

    /// Runs the same instances, input and faults on a real broker instead of the simulator,
    /// in real time: a fresh broker from `provider` with the simulation's topics, the input
    /// written before the instances start, the consumers on librdkafka. Crashes destroy the
    /// instance's librdkafka handles without closing them (no LeaveGroup, no final commit).
    /// The run ends when every running instance waits in `recv` and every group has
    /// committed up to the end of the partitions it subscribed to (read with the admin API),
    /// with nothing happening for a second; at the time limit (the simulation's, at most 60 s),
    /// the lag says which partitions were behind and by how much.
    ///
    /// A [`Fault::BrokerRestart`](crate::Fault::BrokerRestart) takes the broker down when its
    /// anchor is reached and brings it back after the outage (see [`crate::broker`]); a
    /// restart that could not be carried out is an error, not a pass.
    ///
    /// Not possible on a real broker (a [`BrokerError::Unsupported`] error): input produced
    /// after the start, [`Fault::Freeze`](crate::Fault::Freeze) (librdkafka
    /// keeps heartbeating from its own threads), faults on
    /// [`Operation::AutoCommit`] (librdkafka commits on its own), broker restarts on an
    /// external cluster or longer than 500 ms.
    pub fn run_on<F, Fut>(&self, provider: &BrokerProvider, factory: F) -> Result<Outcome, Error>
    where
        F: Fn(InstanceContext) -> Fut + 'static,
        Fut: Future + 'static,
        Fut::Output: InstanceExit,
    {
        self.check_broker_support(provider)?;
        let mut capped = self.clone();
        capped.config.time_limit = capped.config.time_limit.min(BROKER_TIME_LIMIT);
        capped.run_with(Some(provider), factory)
    }

    fn check_broker_support(&self, provider: &BrokerProvider) -> Result<(), BrokerError> {
        let unsupported = |why: String| Err(BrokerError::Unsupported(why));
        if let Some((at, _)) = self.config.input.iter().find(|(at, _)| !at.is_zero()) {
            return unsupported(format!(
                "input produced at {at:?}: all input is written before the start"
            ));
        }
        for rule in self.config.faults.rules() {
            if matches!(rule.fault, crate::fault::Fault::Freeze(_)) {
                return unsupported(format!(
                    "{} on {}: librdkafka keeps heartbeating while the application is frozen",
                    rule.fault,
                    rule.anchor.operation()
                ));
            }
            if rule.anchor.operation() == Operation::AutoCommit {
                return unsupported(format!(
                    "{} on auto-commit: librdkafka commits on its own threads, out of the kit's reach",
                    rule.fault
                ));
            }
            if let crate::fault::Fault::BrokerRestart(down) = rule.fault {
                if matches!(provider, BrokerProvider::External { .. }) {
                    return unsupported(format!(
                        "{} on {}: the kit restarts only the brokers it started (the mock \
                         cluster, a container), not a cluster it was given",
                        rule.fault,
                        rule.anchor.operation()
                    ));
                }
                if down > MAX_BROKER_OUTAGE {
                    return unsupported(format!(
                        "{} on {}: on a real broker an outage may last at most {} (with \
                         the {} session the kit gives consumers there, a longer one and \
                         librdkafka's reconnect can cost the sessions, where the simulator's \
                         outage of the same length would not)",
                        rule.fault,
                        rule.anchor.operation(),
                        crate::fault::human_duration(MAX_BROKER_OUTAGE),
                        crate::fault::human_duration(crate::broker::MAX_SESSION_TIMEOUT),
                    ));
                }
            }
        }
        Ok(())
    }

    fn run_with<F, Fut>(
        &self,
        provider: Option<&BrokerProvider>,
        factory: F,
    ) -> Result<Outcome, Error>
    where
        F: Fn(InstanceContext) -> Fut + 'static,
        Fut: Future + 'static,
        Fut::Output: InstanceExit,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::NestedRuntime);
        }
        // A real broker runs in real time; the simulator on a paused, virtual clock.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(provider.is_none())
            .build()
            .map_err(Error::Runtime)?;
        let self_check = provider.map(BrokerProvider::self_check).transpose()?;
        let broker = provider.map(|p| p.start(&self.config.topics)).transpose()?;
        let session = broker
            .as_ref()
            .map(|b| Arc::new(BrokerSession::new(b.bootstrap().to_string())));
        let uri: Rc<str> = format!(
            "file:/effectively-once-{}-{}?vfs=memdb",
            std::process::id(),
            SCENARIO_DB.fetch_add(1, Ordering::Relaxed)
        )
        .into();
        let store = store::open_scenario_db(&uri)?;
        let local = tokio::task::LocalSet::new();
        let config = self.config.clone();
        let broker_session = session.clone();
        let switch = broker.as_ref().and_then(RunningBroker::switch);
        let restarts = switch.clone();
        let shared = local.block_on(&runtime, async move {
            let mut world = World::new(
                config.seed,
                SimSettings {
                    latency: config.latency,
                    session_timeout_bounds: config.session_timeout_bounds,
                },
                &config.topics,
                FaultPlan::new(&config.faults),
            );
            world.broker_switch = switch;
            let shared = Arc::new(Shared::new(world));
            let driver = Driver {
                shared: shared.clone(),
                config,
                factory: Rc::new(factory),
                store_uri: uri,
                broker: broker_session,
            };
            let result = driver.run().await;
            (shared, result)
        });
        let (shared, result) = shared;
        // Lingering tasks of the run are dropped with the local set; their handles see the
        // world finished and do nothing.
        drop(local);
        drop(runtime);
        // What is left of the real clients dies as a killed process would.
        let natives = shared.lock().take_natives();
        for native in natives {
            while !native.kill() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        result?;
        // A restart that did not happen must not pass for one that did.
        if let Some(failures) = restarts.map(|s| s.failures()).filter(|f| !f.is_empty()) {
            return Err(BrokerError::Docker(format!(
                "restarting the broker: {}",
                failures.join("; ")
            ))
            .into());
        }
        let cluster = match &session {
            Some(session) => session
                .snapshot(&self.config.topics)?
                .with_input_flags(&ClusterSnapshot::of(&shared.lock())),
            None => ClusterSnapshot::of(&shared.lock()),
        };
        drop(broker);
        let world = shared.lock();
        Ok(Outcome {
            history: world.history.clone(),
            cluster,
            self_check,
            unfired: world.faults.unfired(),
            operations: world.operations.clone(),
            store,
        })
    }
}

/// Why a run may stop.
enum Ending {
    TimeLimit,
    AllStopped,
    Quiet,
}

/// The longest a real-broker run lasts (its session timeouts are capped at 2 s, so a group
/// that has not caught up by then is wedged).
const BROKER_TIME_LIMIT: Duration = Duration::from_secs(60);
/// The longest broker restart a real-broker run takes on: measured on the mock cluster with
/// a 2 s session (and librdkafka's default reconnect backoff), a 500 ms outage kept every
/// session and a 1.5 s one lost them; runs also cap the backoff (`MAX_RECONNECT_BACKOFF`).
pub(crate) const MAX_BROKER_OUTAGE: Duration = Duration::from_millis(500);

/// How long nothing may happen before a real-broker run counts as quiesced.
const BROKER_SETTLE: Duration = Duration::from_secs(1);
/// How often a real-broker run looks at the group's lag.
const BROKER_CHECK_INTERVAL: Duration = Duration::from_millis(100);

struct Driver<F> {
    shared: Arc<Shared>,
    config: Config,
    factory: Rc<F>,
    store_uri: Rc<str>,
    broker: Option<Arc<BrokerSession>>,
}

impl<F, Fut> Driver<F>
where
    F: Fn(InstanceContext) -> Fut + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    async fn run(self) -> Result<(), Error> {
        let origin = self.shared.lock().origin;
        let mut input: Vec<(Duration, usize, InputRecord)> = self
            .config
            .input
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, (at, r))| (at, i, r))
            .collect();
        input.sort_by_key(|(at, i, _)| (*at, *i));
        let mut input: VecDeque<(Duration, InputRecord)> =
            input.into_iter().map(|(at, _, r)| (at, r)).collect();
        {
            let mut world = self.shared.lock();
            for id in 0..self.config.instances {
                world.instances.insert(
                    InstanceId(id),
                    InstanceState {
                        incarnation: 0,
                        status: InstanceStatus::NotStarted,
                        died_at: Some(
                            origin + self.config.start_at.get(&id).copied().unwrap_or_default(),
                        ),
                        frozen_until: None,
                        current_record: None,
                        root: None,
                        restarts: 0,
                    },
                );
            }
        }
        // On a real broker the input is written before anything starts (the world keeps its
        // own copy, for the timeline and where each record lands).
        if let Some(session) = &self.broker {
            let mut records = Vec::new();
            {
                let mut world = self.shared.lock();
                while let Some((_, r)) = input.pop_front() {
                    let position = world.append_input(
                        &r.topic,
                        r.partition,
                        r.key.clone(),
                        r.payload.clone(),
                        r.transaction,
                    )?;
                    records.push(InputWrite {
                        topic: r.topic,
                        partition: position.partition,
                        key: r.key,
                        payload: r.payload,
                        transaction: r.transaction,
                    });
                }
            }
            session.produce_input(&records).await?;
        }
        loop {
            let now = Instant::now();
            let mut to_start = Vec::new();
            let mut wake_at = vec![origin + self.config.time_limit];
            if self.broker.is_some() {
                wake_at.push(now + BROKER_CHECK_INTERVAL);
            }
            let ending = {
                let mut world = self.shared.lock();
                world.fire_timers();
                while input.front().is_some_and(|(at, _)| origin + *at <= now) {
                    let (_, r) = input.pop_front().expect("checked");
                    world.append_input(&r.topic, r.partition, r.key, r.payload, r.transaction)?;
                }
                if let Some((at, _)) = input.front() {
                    wake_at.push(origin + *at);
                }
                self.schedule_restarts(&mut world, now, &mut to_start, &mut wake_at);
                let ending = if now >= origin + self.config.time_limit {
                    Some(Ending::TimeLimit)
                } else if input.is_empty()
                    && world
                        .instances
                        .values()
                        .all(|i| i.status == InstanceStatus::Stopped)
                {
                    Some(Ending::AllStopped)
                } else if input.is_empty()
                    && to_start.is_empty()
                    // Nothing settles while the broker is down (on a real broker the lag
                    // cannot even be read then).
                    && world.broker_down().is_none()
                    && world.instances.values().all(|i| {
                        matches!(i.status, InstanceStatus::Running | InstanceStatus::Stopped)
                    })
                    && self.idle(&world)
                {
                    let quiet_until = world.last_activity + self.settle();
                    if now >= quiet_until {
                        Some(Ending::Quiet)
                    } else {
                        wake_at.push(quiet_until);
                        None
                    }
                } else {
                    None
                };
                if let Some(next) = world.next_timer() {
                    wake_at.push(next);
                }
                ending
            };
            let end = match ending {
                None => None,
                Some(Ending::TimeLimit) => {
                    Some(HistoryEvent::TimeLimitReached { lag: self.lag()? })
                }
                Some(Ending::AllStopped) => {
                    Some(HistoryEvent::AllInstancesStopped { lag: self.lag()? })
                }
                Some(Ending::Quiet) if self.broker.is_none() => Some(HistoryEvent::Quiesced),
                // The broker decides: every group committed to the end of what it subscribed to.
                Some(Ending::Quiet) => {
                    let lag = self.lag()?;
                    let world = self.shared.lock();
                    lag.iter()
                        .all(|l| {
                            let committed = l.committed.unwrap_or(0);
                            // Only transaction markers left (a consumer commits the offset
                            // after its last record, not after the marker that follows).
                            committed >= l.end
                                || world.partition(&l.partition).is_some_and(|p| {
                                    p.end_offset() == l.end
                                        && p.settled_from(
                                            committed,
                                            crate::sim::config::IsolationLevel::ReadCommitted,
                                        )
                                })
                        })
                        .then_some(HistoryEvent::Quiesced)
                }
            };
            let ended = match end {
                Some(event) => {
                    let mut world = self.shared.lock();
                    world.record(None, event);
                    world.finished = true;
                    true
                }
                None => false,
            };
            self.shared.publish();
            if ended {
                return Ok(());
            }
            if !to_start.is_empty() {
                for id in to_start {
                    self.start(id);
                }
                continue;
            }
            let deadline = wake_at
                .into_iter()
                .min()
                .expect("time limit is always there");
            tokio::select! {
                biased;
                _ = self.shared.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Whether every running instance waits for records with nothing left to do (on a real
    /// broker: waits in `recv`; the lag decides the rest).
    fn idle(&self, world: &World) -> bool {
        match &self.broker {
            None => world.idle(),
            Some(session) => world
                .instances
                .iter()
                .filter(|(_, i)| i.status == InstanceStatus::Running)
                .all(|(id, i)| {
                    session.parked(Incarnation {
                        instance: *id,
                        number: i.incarnation,
                    })
                }),
        }
    }

    fn settle(&self) -> Duration {
        match &self.broker {
            None => self.config.settle,
            Some(_) => self.config.settle.min(BROKER_SETTLE),
        }
    }

    /// Each group's committed offsets against the end offsets.
    fn lag(&self) -> Result<Vec<crate::history::Lag>, Error> {
        match &self.broker {
            None => Ok(self.shared.lock().lag()),
            Some(session) => Ok(session.lag()?),
        }
    }

    /// Decides which dead instances restart now, which later, which never.
    fn schedule_restarts(
        &self,
        world: &mut World,
        now: Instant,
        to_start: &mut Vec<InstanceId>,
        wake_at: &mut Vec<Instant>,
    ) {
        let mut exhausted = Vec::new();
        for (id, state) in &world.instances {
            let waiting = matches!(
                state.status,
                InstanceStatus::NotStarted
                    | InstanceStatus::Crashed
                    | InstanceStatus::Panicked
                    | InstanceStatus::Failed
            );
            if !waiting {
                continue;
            }
            if state.status != InstanceStatus::NotStarted
                && state.restarts >= self.config.max_restarts
            {
                exhausted.push((*id, state.incarnation, state.restarts));
                continue;
            }
            let delay = if state.status == InstanceStatus::NotStarted {
                Duration::ZERO
            } else {
                self.config.restart_delay
            };
            let due = state.died_at.expect("dead instances have a time of death") + delay;
            if due <= now {
                to_start.push(*id);
            } else {
                wake_at.push(due);
            }
        }
        for (id, number, restarts) in exhausted {
            world.instances.get_mut(&id).expect("listed").status = InstanceStatus::Stopped;
            world.record(
                Some(Incarnation {
                    instance: id,
                    number,
                }),
                HistoryEvent::RestartsExhausted { restarts },
            );
        }
    }

    /// Starts a new incarnation of an instance.
    fn start(&self, id: InstanceId) {
        let incarnation = {
            let mut world = self.shared.lock();
            let state = world.instances.get_mut(&id).expect("instance exists");
            if state.status != InstanceStatus::NotStarted {
                state.restarts += 1;
            }
            state.incarnation += 1;
            state.status = InstanceStatus::Running;
            state.died_at = None;
            state.current_record = None;
            let incarnation = Incarnation {
                instance: id,
                number: state.incarnation,
            };
            world.record(Some(incarnation), HistoryEvent::InstanceStarted);
            incarnation
        };
        self.shared.publish();
        let context = InstanceContext {
            shared: self.shared.clone(),
            incarnation,
            store_uri: self.store_uri.clone(),
            broker: self.broker.clone(),
        };
        let factory = self.factory.clone();
        let shared = self.shared.clone();
        let handle = tokio::task::spawn_local(async move {
            let started = catch_unwind(AssertUnwindSafe(|| factory(context)));
            let result = match started {
                Ok(future) => {
                    CatchUnwind {
                        inner: Some(Box::pin(future)),
                    }
                    .await
                }
                Err(payload) => Err(payload),
            };
            instance_ended(&shared, incarnation, result);
        });
        let mut world = self.shared.lock();
        if let Some(state) = world.instances.get_mut(&id) {
            if state.incarnation == incarnation.number && state.status == InstanceStatus::Running {
                state.root = Some(handle.abort_handle());
            }
        }
    }
}

/// Records how an instance's future ended (a crash was recorded when it fired).
fn instance_ended<T: InstanceExit>(
    shared: &Shared,
    incarnation: Incarnation,
    result: Result<T, Box<dyn Any + Send>>,
) {
    let mut world = shared.lock();
    if !world.alive(incarnation) {
        return; // crashed: already recorded
    }
    let (status, event) = match result {
        Ok(output) => match output.exit_error() {
            None => (
                InstanceStatus::Stopped,
                HistoryEvent::InstanceExited { error: None },
            ),
            Some(error) => (
                InstanceStatus::Failed,
                HistoryEvent::InstanceExited { error: Some(error) },
            ),
        },
        Err(payload) if payload.is::<CrashSignal>() => return,
        Err(payload) => (
            InstanceStatus::Panicked,
            HistoryEvent::InstancePanicked {
                message: panic_message(&payload),
            },
        ),
    };
    world.record(Some(incarnation), event);
    let state = world
        .instances
        .get_mut(&incarnation.instance)
        .expect("alive");
    state.status = status;
    state.died_at = Some(Instant::now());
    state.root = None;
    // The process is gone: whatever clients its other tasks still hold die with it.
    world.drop_clients(incarnation);
    drop(world);
    shared.publish();
}

pub(crate) fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic with a non-string payload)".to_string()
    }
}

/// Polls a future, turning a panic into an error; drops the future as soon as it is done so
/// that its clients close while the instance still counts as running.
struct CatchUnwind<F> {
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(future) = this.inner.as_mut() else {
            return Poll::Pending;
        };
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(value)) => Ok(value),
            Err(payload) => Err(payload),
        };
        let dropped = catch_unwind(AssertUnwindSafe(|| drop(this.inner.take())));
        Poll::Ready(match (output, dropped) {
            (Ok(_), Err(payload)) => Err(payload),
            (output, _) => output,
        })
    }
}
