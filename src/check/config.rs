//! The settings of a check.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::report::Replay;
use super::shard::Shard;
use super::{CASE_TIMEOUT_ENV, CheckError, PICTURE_ENV, SEED_ENV, SHARD_ENV, THREADS_ENV};
use crate::broker::BrokerProvider;
use crate::invariant::{Invariant, Liveness, Semantics};
use crate::ledger::{OutputTopic, StoreEffect};
use crate::run::SimulationBuilder;
use crate::scenario::Event;
use crate::scenario::{FaultKind, ScenarioSpace};

pub(crate) type Encoder = Arc<dyn Fn(&Event) -> Vec<u8> + Send + Sync>;
type Tweak = Arc<dyn Fn(&mut SimulationBuilder) + Send + Sync>;

/// The settings of a check. Setters take `&mut self` and return `&mut Self`; pass the
/// verifier by value or reference to the `assert_*!` macros or to [`check`](crate::check()).
///
/// ```
/// use effectively_once::{FaultKind, Verifier};
///
/// let mut verifier = Verifier::default();
/// verifier
///     .cases(64)
///     .events(1..=6)
///     .instances(1..=2)
///     .faults(&[FaultKind::Crash, FaultKind::AmbiguousCommit])
///     .topic("task-events")
///     .effect_sink("email");
/// ```
#[derive(Clone)]
pub struct Verifier {
    pub(crate) cases: u32,
    pub(crate) seed: u64,
    pub(crate) shard: Shard,
    pub(crate) threads: usize,
    pub(crate) space: ScenarioSpace,
    pub(crate) topic: String,
    pub(crate) encode: Encoder,
    pub(crate) sinks: Vec<String>,
    pub(crate) store_effects: Vec<StoreEffect>,
    pub(crate) progress_query: Option<String>,
    pub(crate) outputs: Vec<OutputTopic>,
    pub(crate) extra: Vec<Arc<dyn Invariant>>,
    pub(crate) liveness: Liveness,
    pub(crate) case_timeout: Duration,
    pub(crate) persist: bool,
    pub(crate) source_file: Option<&'static str>,
    pub(crate) max_shrink_iters: u32,
    pub(crate) tweak: Option<Tweak>,
    pub(crate) broker: Option<BrokerProvider>,
    pub(crate) broker_cases: usize,
    pub(crate) picture: bool,
    pub(crate) config_error: Option<String>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("cases", &self.cases)
            .field("seed", &self.seed)
            .field("shard", &self.shard)
            .field("threads", &self.threads)
            .field("space", &self.space)
            .field("topic", &self.topic)
            .field("sinks", &self.sinks)
            .field("store_effects", &self.store_effects)
            .field("progress_query", &self.progress_query)
            .field("outputs", &self.outputs)
            .field("extra", &self.extra)
            .field("liveness", &self.liveness)
            .field("case_timeout", &self.case_timeout)
            .field("persist", &self.persist)
            .field("broker", &self.broker)
            .field("picture", &self.picture)
            .finish_non_exhaustive()
    }
}

pub(super) fn env_u64(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Ok(value) => value.trim().parse::<u64>().map(Some).map_err(|_| {
            format!("invalid value {value:?} for `{name}`: expected an unsigned integer")
        }),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("`{name}` is not valid UTF-8")),
    }
}

fn env_switch(name: &str) -> Result<Option<bool>, String> {
    match std::env::var(name) {
        Ok(value) => match value.trim() {
            "1" | "true" => Ok(Some(true)),
            "0" | "false" => Ok(Some(false)),
            _ => Err(format!(
                "invalid value {value:?} for `{name}`: expected 0 or 1"
            )),
        },
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("`{name}` is not valid UTF-8")),
    }
}

fn env_shard() -> Result<Option<Shard>, String> {
    match std::env::var(SHARD_ENV) {
        Ok(value) => value
            .parse()
            .map(Some)
            .map_err(|e| format!("`{SHARD_ENV}`: {e}")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("`{SHARD_ENV}` is not valid UTF-8")),
    }
}

impl Default for Verifier {
    /// proptest's case count (256, or `PROPTEST_CASES`), seed 0 (or `EFFECTIVELY_ONCE_SEED`),
    /// the default [`ScenarioSpace`] ([`FaultKind::DEFAULT`]), topic `events`, JSON payloads
    /// ([`Event::to_json`]), effects counted on every sink the consumer calls, liveness within
    /// 10 minutes of virtual time, 20 s of wall time per case (or
    /// `EFFECTIVELY_ONCE_CASE_TIMEOUT`), failures saved under `proptest-regressions/`, a
    /// counterexample's picture written under `target/effectively-once/` (unless
    /// `EFFECTIVELY_ONCE_PICTURE=0`).
    fn default() -> Self {
        let mut config_error = None;
        let seed = env_u64(SEED_ENV).unwrap_or_else(|e| {
            config_error = Some(e);
            None
        });
        let timeout = env_u64(CASE_TIMEOUT_ENV).unwrap_or_else(|e| {
            config_error.get_or_insert(e);
            None
        });
        let picture = env_switch(PICTURE_ENV).unwrap_or_else(|e| {
            config_error.get_or_insert(e);
            None
        });
        let shard = env_shard().unwrap_or_else(|e| {
            config_error.get_or_insert(e);
            None
        });
        let threads = env_u64(THREADS_ENV).unwrap_or_else(|e| {
            config_error.get_or_insert(e);
            None
        });
        let broker = BrokerProvider::from_env().unwrap_or_else(|e| {
            config_error.get_or_insert(e.to_string());
            None
        });
        Verifier {
            cases: proptest::test_runner::Config::default().cases,
            seed: seed.unwrap_or(0),
            shard: shard.unwrap_or_default(),
            threads: match threads {
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => std::thread::available_parallelism().map_or(1, usize::from),
            },
            space: ScenarioSpace::default(),
            topic: "events".into(),
            encode: Arc::new(Event::to_json),
            sinks: Vec::new(),
            store_effects: Vec::new(),
            progress_query: None,
            outputs: Vec::new(),
            extra: Vec::new(),
            liveness: Liveness::default(),
            case_timeout: Duration::from_secs(timeout.unwrap_or(20)),
            persist: true,
            source_file: None,
            max_shrink_iters: 4096,
            tweak: None,
            broker,
            broker_cases: 3,
            picture: picture.unwrap_or(true),
            config_error,
        }
    }
}

impl Verifier {
    /// How many passing cases make a pass (default: proptest's, honouring `PROPTEST_CASES`).
    pub fn cases(&mut self, cases: u32) -> &mut Self {
        self.cases = cases;
        self
    }

    /// The seed the cases are generated from (default 0, or `EFFECTIVELY_ONCE_SEED`). The same
    /// seed gives the same cases, the same verdict and the same report, byte for byte.
    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.seed = seed;
        self
    }

    /// Which slice of the cases this check runs (default all of them, or
    /// `EFFECTIVELY_ONCE_SHARD=<index>/<count>`). A split check draws its cases from an indexed
    /// stream (case `j` generated from the seed and `j` alone) and shard `i` of `n` runs its
    /// cases `i - 1`, `i - 1 + n`, ...: shards are disjoint, each is reproducible on any machine
    /// from the seed and the shard (its report names both; proptest's regression file is not
    /// used), and `n` shards of [`cases`](Self::cases) each cover `n` times the cases in the
    /// same wall time. Split a test across a CI matrix with the environment variable (see the
    /// README).
    ///
    /// ```
    /// use effectively_once::Verifier;
    /// use effectively_once::check::Shard;
    ///
    /// let mut verifier = Verifier::default();
    /// verifier.shard(Shard::new(2, 8).expect("shard 2 of 8 exists"));
    /// ```
    pub fn shard(&mut self, shard: Shard) -> &mut Self {
        self.shard = shard;
        self
    }

    /// How many threads judge cases at once (default: the machine's
    /// [`available_parallelism`](std::thread::available_parallelism), or
    /// `EFFECTIVELY_ONCE_THREADS`). The verdict and the report do not depend on it: cases are
    /// judged ahead of the search on worker threads and met in the order of a run on one thread.
    /// A consumer factory that shares state between cases sees them run concurrently; set 1 for
    /// such a consumer.
    pub fn threads(&mut self, threads: usize) -> &mut Self {
        self.threads = threads;
        self
    }

    /// The whole scenario space at once (see [`ScenarioSpace`]).
    pub fn space(&mut self, space: ScenarioSpace) -> &mut Self {
        self.space = space;
        self
    }

    /// How many events a case publishes (default 1..=8).
    pub fn events(&mut self, count: std::ops::RangeInclusive<usize>) -> &mut Self {
        self.space.events(count);
        self
    }

    /// How many consumer instances run (default 1..=3).
    pub fn instances(&mut self, count: std::ops::RangeInclusive<u32>) -> &mut Self {
        self.space.instances(count);
        self
    }

    /// How many partitions the input topic has (default 1..=3).
    pub fn partitions(&mut self, count: std::ops::RangeInclusive<i32>) -> &mut Self {
        self.space.partitions(count);
        self
    }

    /// Which kinds of faults cases contain (default [`FaultKind::DEFAULT`]).
    pub fn faults(&mut self, kinds: &[FaultKind]) -> &mut Self {
        self.space.faults(kinds);
        self
    }

    /// How many injected faults a case has at most (default 3).
    pub fn max_faults(&mut self, max: usize) -> &mut Self {
        self.space.fault_count(0..=max);
        self
    }

    /// The input topic the consumer subscribes to (default `events`).
    pub fn topic(&mut self, topic: impl Into<String>) -> &mut Self {
        self.topic = topic.into();
        self
    }

    /// How an event becomes a record payload (default [`Event::to_json`]). The record key is
    /// always the event's key.
    pub fn encode(
        &mut self,
        encode: impl Fn(&Event) -> Vec<u8> + Send + Sync + 'static,
    ) -> &mut Self {
        self.encode = Arc::new(encode);
        self
    }

    /// Counts effects on this sink (repeat for several). By default every sink the consumer
    /// called counts, and a consumer that called none lost every event.
    pub fn effect_sink(&mut self, sink: impl Into<String>) -> &mut Self {
        self.sinks.push(sink.into());
        self
    }

    /// Counts an effect that lives in the consumer's durable store, observed by `query` on the
    /// store each case leaves behind (see [`StoreEffect`] for the query's shape). Repeat for
    /// several. The query is tried on a fault-free run before the search: one that fails there
    /// is a configuration error.
    ///
    /// ```
    /// # use effectively_once::Verifier;
    /// let mut verifier = Verifier::default();
    /// verifier.store_effect("inbox", "SELECT event_id FROM inbox");
    /// ```
    pub fn store_effect(&mut self, name: impl Into<String>, query: impl Into<String>) -> &mut Self {
        self.store_effects.push(StoreEffect::new(name, query));
        self
    }

    /// Reads the consumer's progress from its durable store instead of Kafka's committed
    /// offsets: for a consumer that keeps the next offset to consume in its own database,
    /// written in the same transaction as its result, and `assign`s its partitions from there
    /// (it never commits to Kafka). `query` returns `(topic, partition, next_offset)` rows;
    /// liveness and quiescence then count progress from them. Without this, such a consumer
    /// never catches up in the kit's eyes and fails liveness. A query that fails, or returns
    /// other columns, is a configuration error, found on a fault-free run before the search.
    ///
    /// ```
    /// # use effectively_once::Verifier;
    /// let mut verifier = Verifier::default();
    /// verifier
    ///     .store_effect("results", "SELECT event_id FROM results")
    ///     .progress_from_store("SELECT topic, partition, next_offset FROM kafka_offsets");
    /// ```
    pub fn progress_from_store(&mut self, query: impl Into<String>) -> &mut Self {
        self.progress_query = Some(query.into());
        self
    }

    /// Counts the consumer's outputs on an output topic (repeat for several): after each
    /// case the kit reads the topic as a `read_committed` consumer would and expects one
    /// committed record per input event (see [`OutputTopic`]). The simulation creates the
    /// topic. [`assert_exactly_once!`](crate::assert_exactly_once) needs at least one; the
    /// other assertions count it like any effect (an outbox relay's published events, say).
    ///
    /// ```
    /// use effectively_once::Verifier;
    /// use effectively_once::ledger::OutputTopic;
    ///
    /// let mut verifier = Verifier::default();
    /// verifier.output_topic(OutputTopic::new("summaries", 2, |record| {
    ///     // The output's key is the input's event id.
    ///     String::from_utf8(record.key.clone()?).ok()
    /// }));
    /// ```
    pub fn output_topic(&mut self, output: OutputTopic) -> &mut Self {
        self.outputs.push(output);
        self
    }

    /// Checks this invariant too (for example [`PerKeyOrder`](crate::invariant::PerKeyOrder)).
    pub fn invariant(&mut self, invariant: impl Invariant + 'static) -> &mut Self {
        self.extra.push(Arc::new(invariant));
        self
    }

    /// How long after the last fault the group may take to reach the end of its input, in
    /// virtual time (default 10 minutes). Each case's simulation stops at twice this bound
    /// after its pauses and late joins.
    pub fn liveness_bound(&mut self, bound: Duration) -> &mut Self {
        self.liveness = Liveness { bound };
        self
    }

    /// Wall-clock time a case's virtual clock may stand still before the consumer counts as
    /// hung (default 20 s, or `EFFECTIVELY_ONCE_CASE_TIMEOUT` seconds). Only code that blocks
    /// the thread without awaiting (a busy loop, `std::thread::sleep`) stops the clock; a
    /// consumer that is merely busy while virtual time moves on (a timer waking it often
    /// through a long pause) is waited for.
    pub fn case_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.case_timeout = timeout;
        self
    }

    /// Whether failing cases are saved under `proptest-regressions/` next to the test's source
    /// file and replayed first next time (default true; needs the source file, which the
    /// macros pass).
    pub fn persist_failures(&mut self, persist: bool) -> &mut Self {
        self.persist = persist;
        self
    }

    /// The test's source file (`file!()`), for saving failures. The macros set it.
    pub fn source_file(&mut self, file: &'static str) -> &mut Self {
        self.source_file = Some(file);
        self
    }

    /// Whether a counterexample comes with a picture (default true, or
    /// `EFFECTIVELY_ONCE_PICTURE=0` for false): a self-contained HTML page with an SVG
    /// timeline of each minimal case (a lane per instance plus the cluster; deliveries,
    /// effects with duplicates highlighted, commits, crashes and restarts, rebalances, faults;
    /// each mark's timeline line and event on hover), written to
    /// `<target dir>/effectively-once/<program>.<test>.<invariant>.html` and named in the
    /// report (`picture: target/effectively-once/…`). The target directory is
    /// `CARGO_TARGET_DIR`, else the one the test executable was built in, else `./target`. A
    /// page that cannot be written is noted in the report, never a panic.
    pub fn picture(&mut self, draw: bool) -> &mut Self {
        self.picture = draw;
        self
    }

    /// How many shrinking steps to try at most (default 4096).
    pub fn max_shrink_iters(&mut self, iters: u32) -> &mut Self {
        self.max_shrink_iters = iters;
        self
    }

    /// Adjusts every case's simulation (restart delay, latency, broker session bounds...).
    pub fn simulation(
        &mut self,
        tweak: impl Fn(&mut SimulationBuilder) + Send + Sync + 'static,
    ) -> &mut Self {
        self.tweak = Some(Arc::new(tweak));
        self
    }

    /// A real broker to confirm verdicts on (default: none, or the one
    /// `EFFECTIVELY_ONCE_BROKER` names, see [`BrokerProvider::from_env`]).
    ///
    /// The search and the shrinking still run on the simulator, where a case takes
    /// milliseconds; then the minimal counterexample, or on a pass
    /// [`broker_cases`](Self::broker_cases) sampled scenarios with faults, run on the broker
    /// (see [`Simulation::run_on`](crate::Simulation::run_on)) and the verdicts are compared.
    /// Agreement is reported with the verdict; a disagreement the broker's self-check does
    /// not explain is [`CheckError::BrokerDisagrees`]. [`run_scenario`](crate::check::run_scenario) runs on the broker
    /// alone.
    pub fn broker(&mut self, provider: Option<BrokerProvider>) -> &mut Self {
        self.broker = provider;
        self
    }

    /// How many sampled scenarios a pass is confirmed with on the broker (default 3).
    pub fn broker_cases(&mut self, cases: usize) -> &mut Self {
        self.broker_cases = cases;
        self
    }

    /// The invariants a check of `semantics` applies.
    pub(crate) fn invariants(&self, semantics: Semantics) -> Vec<Arc<dyn Invariant>> {
        let mut all: Vec<Arc<dyn Invariant>> =
            semantics.invariants().into_iter().map(Arc::from).collect();
        all[0] = Arc::new(self.liveness);
        all.extend(self.extra.iter().cloned());
        all
    }

    /// How the report tells to replay this check's verdict.
    pub(crate) fn replay(&self) -> Replay {
        Replay {
            seed: self.seed,
            shard: self.shard,
            topic: self.topic.clone(),
            saved_in: self
                .source_file
                .filter(|_| self.persist && self.shard.is_whole())
                .map(|file| format!("proptest's regression file for {file}")),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), CheckError> {
        if let Some(e) = &self.config_error {
            return Err(CheckError::InvalidConfig(e.clone()));
        }
        if self.threads == 0 {
            return Err(CheckError::InvalidConfig(
                "threads must be at least 1".into(),
            ));
        }
        if self.cases == 0 {
            return Err(CheckError::InvalidConfig("cases must be at least 1".into()));
        }
        if self.topic.is_empty() {
            return Err(CheckError::InvalidConfig("the topic name is empty".into()));
        }
        if let Some(e) = self.store_effects.iter().find(|e| e.name().is_empty()) {
            return Err(CheckError::InvalidConfig(format!(
                "the store effect with query {:?} has an empty name",
                e.query()
            )));
        }
        for output in &self.outputs {
            if output.topic().is_empty() {
                return Err(CheckError::InvalidConfig(
                    "an output topic's name is empty".into(),
                ));
            }
            if output.topic() == self.topic {
                return Err(CheckError::InvalidConfig(format!(
                    "output topic `{}` is the input topic",
                    output.topic()
                )));
            }
            if output.partitions() < 1 {
                return Err(CheckError::InvalidConfig(format!(
                    "output topic `{}` has {} partitions; it needs at least 1",
                    output.topic(),
                    output.partitions()
                )));
            }
        }
        if self.case_timeout.is_zero() {
            return Err(CheckError::InvalidConfig(
                "the case timeout must be positive".into(),
            ));
        }
        self.space.validate().map_err(CheckError::InvalidConfig)
    }
}
