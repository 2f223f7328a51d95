//! Verifying a consumer *program*, in any language, as a black box: [`BlackBox`] runs the
//! command's instances against a broker (librdkafka's mock cluster by default) through the
//! kit's wire proxy, with their side effects going to the kit's HTTP effect service, first
//! without faults, then once per crash point of that pilot run and fault kind, with two
//! faults drawn from a seed, and once per retried effect failing several times in a row; each
//! run's history and ledger go through the same invariants as a simulated run's, and the
//! first failing run is shrunk and reported as a simulated check's counterexample is.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SEED_ENV;
use super::config::{Encoder, env_u64};
use crate::broker::BrokerProvider;
use crate::broker::self_check::Capability;
use crate::history::{ClusterSnapshot, History, PublishedEvent};
use crate::invariant::{RunRecord, Semantics, Violation};
use crate::ledger::{Ledger, Observed, OutputTopic};
use crate::process::{
    BlackBoxCase, BlackBoxOutcome, ConsumerCommand, EffectFaults, Ending, EnvTemplate, InputEvent,
    Probe, ProcessError, Shrunk, WireEvent, WireFaults, attempts_of, crash_points, enumeration,
    history_of, outages, pilot, probes, published_of, shrink_events,
};
use crate::scenario::Event;
use random_plans::random_plans;

/// A consumer program to verify as a black box.
///
/// Each instance is started as `command` with, in its environment, `KAFKA_BOOTSTRAP_SERVERS`
/// (its own address on the kit's wire proxy), `KAFKA_TOPIC`, `KAFKA_GROUP_ID`, `EFFECTS_URL`
/// (its own address on the kit's effect service) and `INSTANCE` (1, 2, ...). It consumes the
/// topic and performs each event's side effect with `POST {EFFECTS_URL}/effects/{sink}`, a JSON
/// body carrying the event's `event_id` and, optionally, an `Idempotency-Key` header (a key
/// that already took effect on the sink is not applied again: the answer says
/// `{"outcome":"deduplicated"}`). Faults kill the process (SIGKILL) right before or after an
/// effect, an offset commit or a transaction's offsets or end; fail an effect (503: not
/// applied; 504 after applying it); refuse an offset commit (`REBALANCE_IN_PROGRESS`), or
/// apply a commit and drop the connection before its answer. A crash kills the instance
/// with every process it started (a launcher such as `npm start` or a shell script does not
/// keep the consumer alive), and the instance is started again, as a process supervisor
/// would. On Linux an instance also dies when the kit does, even killed outright.
/// [`BlackBox::env`] passes the kit's addresses under the program's own variable names;
/// [`BlackBox::cargo_bin`] builds a Rust workspace binary.
///
/// ```no_run
/// use effectively_once::check::BlackBox;
/// use effectively_once::Semantics;
///
/// let passed = BlackBox::command(["python3", "consumer.py"])
///     .events(3)
///     .check(Semantics::EffectivelyOnce)
///     .unwrap_or_else(|e| panic!("{e}"));
/// println!("{passed}");
/// ```
#[derive(Clone)]
pub struct BlackBox {
    command: Vec<String>,
    instances: u32,
    events: usize,
    topic: String,
    group: String,
    /// `None`: `email`, or nothing when output topics are named.
    sinks: Option<Vec<String>>,
    outputs: Vec<OutputTopic>,
    encode: Encoder,
    time_limit: Duration,
    at_once: usize,
    workdir: Option<PathBuf>,
    broker: BrokerProvider,
    environment: Vec<(String, String)>,
    shrink: bool,
    picture: bool,
    random_runs: usize,
    /// `None`: `EFFECTIVELY_ONCE_SEED`, or 0.
    seed: Option<u64>,
}

impl fmt::Debug for BlackBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlackBox")
            .field("command", &self.command)
            .field("instances", &self.instances)
            .field("events", &self.events)
            .field("topic", &self.topic)
            .field("group", &self.group)
            .field("sinks", &self.sinks)
            .field("time_limit", &self.time_limit)
            .field("at_once", &self.at_once)
            .field("broker", &self.broker)
            .field("environment", &self.environment)
            .field("shrink", &self.shrink)
            .field("picture", &self.picture)
            .field("random_runs", &self.random_runs)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl BlackBox {
    /// The program to verify: its words, the program first (`["python3", "consumer.py"]`).
    /// Defaults: 1 instance, 3 events, topic `task-events`, group `notification-service`,
    /// sink `email`, events encoded as [`Event::to_json`], 90 s per run, 16 runs at once
    /// (they mostly wait on group rebalances and session timeouts, not on the cores), on
    /// librdkafka's mock cluster (a fresh one per run), 8 random two-fault runs from seed 0
    /// (or `EFFECTIVELY_ONCE_SEED`).
    pub fn command<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        BlackBox {
            command: words.into_iter().map(Into::into).collect(),
            instances: 1,
            events: 3,
            topic: "task-events".into(),
            group: "notification-service".into(),
            sinks: None,
            outputs: Vec::new(),
            encode: Arc::new(Event::to_json),
            time_limit: Duration::from_secs(90),
            at_once: 16,
            workdir: None,
            broker: BrokerProvider::MockCluster,
            environment: Vec::new(),
            shrink: true,
            picture: true,
            random_runs: 8,
            seed: None,
        }
    }

    /// How many instances run at once.
    pub fn instances(&mut self, n: u32) -> &mut Self {
        self.instances = n;
        self
    }

    /// How many events the input holds (`evt-0`, `evt-1`, ...).
    pub fn events(&mut self, n: usize) -> &mut Self {
        self.events = n;
        self
    }

    /// The topic the input is written to (`KAFKA_TOPIC`).
    pub fn topic(&mut self, topic: impl Into<String>) -> &mut Self {
        self.topic = topic.into();
        self
    }

    /// The consumer group the instances are told to use (`KAFKA_GROUP_ID`).
    pub fn group(&mut self, group: impl Into<String>) -> &mut Self {
        self.group = group.into();
        self
    }

    /// The effect sinks every event must take effect on (replaces the default: `email`, or
    /// none when output topics are named).
    pub fn sinks<I, S>(&mut self, sinks: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sinks = Some(sinks.into_iter().map(Into::into).collect());
        self
    }

    /// A topic the program writes its effects to: each input event must have exactly one
    /// record there, as a `read_committed` consumer reads the topic after the run (see
    /// [`OutputTopic`]). The kit creates the topic on each run's broker. A program that
    /// writes the topic in transactions is verified only on a broker that hides aborted
    /// records from `read_committed` consumers (`apache/kafka`; not the mock cluster).
    ///
    /// ```no_run
    /// use effectively_once::check::BlackBox;
    /// use effectively_once::ledger::OutputTopic;
    ///
    /// let mut pipeline = BlackBox::command(["python3", "summarize.py"]);
    /// // Its summaries are JSON objects that carry their input's `event_id`.
    /// pipeline.output_topic(OutputTopic::json_event_id("task-summaries", 1));
    /// ```
    pub fn output_topic(&mut self, output: OutputTopic) -> &mut Self {
        self.outputs.push(output);
        self
    }

    /// Where effects are counted.
    fn effects(&self) -> Effects {
        let sinks = match &self.sinks {
            Some(sinks) => sinks.clone(),
            None if self.outputs.is_empty() => vec!["email".into()],
            None => Vec::new(),
        };
        Effects {
            sinks,
            outputs: self.outputs.clone(),
        }
    }

    /// How an event becomes a record's payload (the key is the event's key).
    pub fn encode(
        &mut self,
        encode: impl Fn(&Event) -> Vec<u8> + Send + Sync + 'static,
    ) -> &mut Self {
        self.encode = Arc::new(encode);
        self
    }

    /// The longest one run may take before it counts as stuck.
    pub fn time_limit(&mut self, limit: Duration) -> &mut Self {
        self.time_limit = limit;
        self
    }

    /// How many runs go at once (each with its own broker and processes; default 16). A
    /// fresh broker container per run costs memory: a container provider wants fewer.
    pub fn at_once(&mut self, n: usize) -> &mut Self {
        self.at_once = n;
        self
    }

    /// The broker each run gets a fresh one of (default: librdkafka's mock cluster; a
    /// container or an external cluster as for simulated checks on a real broker).
    pub fn broker(&mut self, broker: BrokerProvider) -> &mut Self {
        self.broker = broker;
        self
    }

    /// Sets `name` in every instance's environment to `template`, with `{bootstrap}`,
    /// `{effects_url}`, `{instance}`, `{topic}` and `{group}` filled in: a program that reads
    /// its own names (`KAFKA_BROKERS`, an email API's URL) runs unchanged. Set after the
    /// standard variables, so it can also replace one of them.
    ///
    /// ```no_run
    /// use effectively_once::check::BlackBox;
    ///
    /// let mut service = BlackBox::command(["target/release/notification-consumer"]);
    /// service
    ///     .env("KAFKA_BROKERS", "{bootstrap}")
    ///     .env("EMAIL_API_URL", "{effects_url}/effects/email");
    /// ```
    pub fn env(&mut self, name: impl Into<String>, template: impl Into<String>) -> &mut Self {
        self.environment.push((name.into(), template.into()));
        self
    }

    /// How many random runs with two faults follow the enumeration's one-fault runs (default
    /// 8; 0 for none). Their plans are drawn from [`BlackBox::seed`]: a fault the pilot could
    /// meet, then, half of the time, a fault where the first one's recovery passes next (the
    /// retry of a failed effect, the next commit), otherwise anywhere.
    pub fn random_runs(&mut self, n: usize) -> &mut Self {
        self.random_runs = n;
        self
    }

    /// The seed the random runs' plans are drawn from (default: `EFFECTIVELY_ONCE_SEED`, or
    /// 0). The same seed and program draw the same plans; the runs themselves are real
    /// processes, whose timings differ.
    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.seed = Some(seed);
        self
    }

    /// Whether a failing run is shrunk by removing input events (default: yes; each round
    /// costs a few runs).
    pub fn shrink(&mut self, shrink: bool) -> &mut Self {
        self.shrink = shrink;
        self
    }

    /// Whether a counterexample's picture is drawn: a self-contained HTML page of the failing
    /// run's timeline under `<target dir>/effectively-once/`, as for a simulated check
    /// (default: yes).
    pub fn picture(&mut self, draw: bool) -> &mut Self {
        self.picture = draw;
        self
    }

    /// Where the runs' effect ledgers are written (default: a fresh directory under the
    /// system's temporary directory, removed afterwards).
    pub fn workdir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.workdir = Some(dir.into());
        self
    }

    /// The seed the random plans are drawn from.
    fn drawn_from(&self) -> Result<u64, BlackBoxError> {
        match self.seed {
            Some(seed) => Ok(seed),
            None => Ok(env_u64(SEED_ENV)
                .map_err(BlackBoxError::InvalidConfig)?
                .unwrap_or(0)),
        }
    }

    fn validate(&self) -> Result<(ConsumerCommand, Vec<EnvTemplate>), BlackBoxError> {
        let invalid = |why: &str| Err(BlackBoxError::InvalidConfig(why.to_string()));
        if self.instances == 0 {
            return invalid("instances must be at least 1");
        }
        if self.events == 0 {
            return invalid("events must be at least 1");
        }
        if self.effects().sinks.is_empty() && self.outputs.is_empty() {
            return invalid("name at least one effect sink or output topic");
        }
        if self.topic.is_empty() || self.group.is_empty() {
            return invalid("the topic and the group need names");
        }
        if self.time_limit.is_zero() || self.at_once == 0 {
            return invalid("the time limit and runs at once must be above zero");
        }
        let invalid = |e: ProcessError| BlackBoxError::InvalidConfig(e.to_string());
        let environment = self
            .environment
            .iter()
            .map(|(name, template)| EnvTemplate::new(name, template))
            .collect::<Result<_, _>>()
            .map_err(invalid)?;
        Ok((
            ConsumerCommand::new(&self.command).map_err(invalid)?,
            environment,
        ))
    }

    /// Runs the pilot, one run per crash point and fault kind and the random two-fault runs
    /// ([`BlackBox::random_runs`]); once those passed, one run per effect the program retried
    /// in the same process, with the effect failing 5 times in a row (an outage longer than a
    /// bounded retry). Each run is judged for `semantics` as it finishes; the first run that
    /// breaks it, in that order, is the counterexample (the runs after it are not made),
    /// shrunk by removing input events while the same invariant stays broken (see
    /// [`BlackBox::shrink`]).
    pub fn check(&self, semantics: Semantics) -> Result<BlackBoxPassed, BlackBoxError> {
        let (command, environment) = self.validate()?;
        let seed = self.drawn_from()?;
        let started = Instant::now();
        let workdir = Workdir::new(self.workdir.clone())?;
        let events = (0..self.events)
            .map(|n| {
                let event = Event {
                    event_id: format!("evt-{n}"),
                    key: format!("k{n}"),
                    payload: serde_json::json!({ "value": n }),
                };
                InputEvent {
                    payload: (self.encode)(&event),
                    event_id: event.event_id,
                    key: event.key,
                }
            })
            .collect();
        let case = BlackBoxCase {
            outputs: self.outputs.iter().map(|o| o.topic().to_string()).collect(),
            command,
            environment,
            instances: self.instances,
            topic: self.topic.clone(),
            group: self.group.clone(),
            events,
            effect_faults: EffectFaults::new(),
            wire_faults: WireFaults::new(),
            time_limit: self.time_limit,
            settle: Duration::from_millis(500),
            restart_after: Duration::from_millis(100),
            ledger: workdir.path.join("ledger.db"),
        };
        // One partition per instance, so that every instance has work.
        let mut topics = vec![(
            self.topic.clone(),
            i32::try_from(self.instances).unwrap_or(i32::MAX),
        )];
        topics.extend(
            self.outputs
                .iter()
                .map(|o| (o.topic().to_string(), o.partitions())),
        );
        let provider = self.broker.clone();
        let broker = move || {
            let running = provider
                .start(&topics)
                .map_err(|e| ProcessError::Broker(e.to_string()))?;
            let bootstrap = running.bootstrap().to_string();
            Ok((running, bootstrap))
        };
        let pilot = pilot(&case, &broker)?;
        self.usable(&pilot)?;
        let judged = judge_process_run(semantics, &case, &pilot, &self.effects());
        if let Some(violation) = judged.violations.first() {
            let failing = FailingRun {
                semantics,
                command: self.command.join(" "),
                case: &case,
                outcome: &pilot,
                judged: &judged,
                invariant: &violation.invariant,
                fault: None,
                seed: None,
                shrunk_from: case.events.len(),
                runs: 1,
            };
            return Err(BlackBoxError::Violated(Box::new(
                failing.report(self.picture),
            )));
        }
        let fails = |case: &BlackBoxCase, outcome: &BlackBoxOutcome| {
            !judge_process_run(semantics, case, outcome, &self.effects())
                .violations
                .is_empty()
        };
        // One fault per run, then the random two-fault runs; once they all passed, the
        // outages of the effects the program retried.
        let mut plans = enumeration(&pilot);
        let random = random_plans(&crash_points(&pilot), &plans, self.random_runs, seed);
        let enumerated = plans.len();
        let random_runs = random.len();
        plans.extend(random);
        // The invariant a run broke first, if any: judged once for the last run of a stage.
        let broken_by = |p: &Probe| {
            judge_process_run(semantics, &case, &p.outcome, &self.effects())
                .violations
                .into_iter()
                .next()
                .map(|v| v.invariant)
        };
        let mut made = probes(&case, "probe", &plans, &broker, self.at_once, &fails)?;
        let mut runs = made.len() + 1;
        let mut drawn = (made.len() > enumerated).then_some(seed);
        let mut broken = made.last().and_then(broken_by);
        let mut outage_runs = 0;
        if broken.is_none() {
            let outages = outages(&made);
            outage_runs = outages.len();
            made = probes(&case, "outage", &outages, &broker, self.at_once, &fails)?;
            runs += made.len();
            drawn = None;
            broken = made.last().and_then(broken_by);
        }
        let (Some(broken), Some(failing)) = (broken, made.pop()) else {
            return Ok(BlackBoxPassed {
                semantics,
                command: self.command.join(" "),
                runs,
                outage_runs,
                random_runs,
                seed,
                took: started.elapsed(),
            });
        };
        let shrunk = if self.shrink {
            // The same invariant broken, not merely any.
            let same = |case: &BlackBoxCase, outcome: &BlackBoxOutcome| {
                judge_process_run(semantics, case, outcome, &self.effects())
                    .violations
                    .iter()
                    .any(|v| v.invariant == broken)
            };
            shrink_events(&case, failing, &broker, self.at_once, &same)?
        } else {
            Shrunk {
                case: case.clone(),
                probe: failing,
                runs: 0,
            }
        };
        let judged = judge_process_run(
            semantics,
            &shrunk.case,
            &shrunk.probe.outcome,
            &self.effects(),
        );
        let failing = FailingRun {
            semantics,
            command: self.command.join(" "),
            case: &shrunk.case,
            outcome: &shrunk.probe.outcome,
            judged: &judged,
            invariant: &broken,
            fault: Some(&shrunk.probe.plan),
            seed: drawn,
            shrunk_from: case.events.len(),
            runs: runs + shrunk.runs,
        };
        let counterexample = failing.report(self.picture);
        Err(BlackBoxError::Violated(Box::new(counterexample)))
    }

    /// Refuses a pilot run that says the program cannot be verified as configured.
    fn usable(&self, pilot: &BlackBoxOutcome) -> Result<(), BlackBoxError> {
        let output = outputs(pilot);
        let connected = pilot
            .wire
            .iter()
            .any(|e| matches!(e, WireEvent::Request { .. }));
        if !connected {
            return Err(BlackBoxError::Unusable(format!(
                "the consumer never sent a request to KAFKA_BOOTSTRAP_SERVERS (ended: {:?}); \
                 its output:\n{output}",
                pilot.ending
            )));
        }
        if !pilot.problems.is_empty() {
            return Err(BlackBoxError::Process(format!(
                "the kit's parts failed during the pilot run: {}",
                pilot.problems.join("; ")
            )));
        }
        if !pilot.malformed.is_empty() {
            let calls: Vec<String> = pilot.malformed.iter().map(|m| m.why.clone()).collect();
            return Err(BlackBoxError::Unusable(format!(
                "the effect service refused the consumer's calls: {}",
                calls.join("; ")
            )));
        }
        // Offsets sent to transactions are the group's progress only on a broker that stores
        // them: librdkafka's mock cluster does not, so a restarted instance would start over
        // and the verdicts would blame the program for the broker's stub.
        let transactional = pilot
            .wire
            .iter()
            .any(|e| matches!(e, WireEvent::TxnOffsets { .. }));
        if transactional {
            let check = self.broker.self_check().map_err(|e| {
                BlackBoxError::Process(format!("the broker's self-check failed: {e}"))
            })?;
            if let Some(why) = check.shortfall(Capability::StoresTransactionalOffsets) {
                return Err(BlackBoxError::Unusable(format!(
                    "the consumer commits its offsets through transactions \
                     (send_offsets_to_transaction), which this broker cannot verify: {why}; \
                     run it on a broker container (BlackBox::broker)"
                )));
            }
        }
        let wrote_outputs = pilot.left_behind.outputs.values().any(|r| !r.is_empty());
        if pilot.attempts.is_empty() && !wrote_outputs && pilot.ending == Ending::CaughtUp {
            let outputs = if self.outputs.is_empty() {
                String::new()
            } else {
                " nor wrote to its output topics".to_string()
            };
            return Err(BlackBoxError::Unusable(format!(
                "the consumer committed its input but never called the effect service \
                 (POST {{EFFECTS_URL}}/effects/{{sink}}){outputs}; its output:\n{output}"
            )));
        }
        // Outputs written in transactions are counted as `read_committed` reads them: on a
        // broker that hands aborted records to such readers, an aborted attempt would count.
        let transactional_outputs = pilot.wire.iter().any(|e| {
            matches!(e, WireEvent::Produced { topic, transactional_id: Some(_), .. }
                if self.outputs.iter().any(|o| o.topic() == topic))
        });
        if transactional_outputs {
            let check = self.broker.self_check().map_err(|e| {
                BlackBoxError::Process(format!("the broker's self-check failed: {e}"))
            })?;
            if let Some(why) = check.shortfall(Capability::HidesAbortedRecords) {
                return Err(BlackBoxError::Unusable(format!(
                    "the consumer writes its output topics in transactions, which this broker \
                     cannot verify: {why}; run it on an apache/kafka container (BlackBox::broker)"
                )));
            }
        }
        Ok(())
    }
}

/// The runs' directory: the one given, or a temporary one removed when dropped.
struct Workdir {
    path: PathBuf,
    remove: bool,
}

impl Workdir {
    fn new(given: Option<PathBuf>) -> Result<Self, BlackBoxError> {
        let (path, remove) = match given {
            Some(p) => (p, false),
            None => {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let dir = std::env::temp_dir().join(format!(
                    "effectively-once-black-box-{}-{n}",
                    std::process::id()
                ));
                (dir, true)
            }
        };
        std::fs::create_dir_all(&path).map_err(|e| {
            BlackBoxError::Process(format!("could not create the work directory {path:?}: {e}"))
        })?;
        Ok(Workdir { path, remove })
    }
}

impl Drop for Workdir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Why a black-box check did not pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlackBoxError {
    /// A run broke the semantics.
    #[error("{0}")]
    Violated(Box<BlackBoxCounterexample>),
    /// The settings make no sense.
    #[error("effectively-once: invalid black-box setting: {0}")]
    InvalidConfig(String),
    /// The program cannot be verified as it runs (it never connects, never calls the effect
    /// service, calls it wrongly).
    #[error("effectively-once: the consumer program cannot be verified: {0}")]
    Unusable(String),
    /// Running the program or the kit's parts failed (the command does not start, a port
    /// cannot be opened, the broker cannot be used).
    #[error("effectively-once: {0}")]
    Process(String),
}

impl From<ProcessError> for BlackBoxError {
    fn from(e: ProcessError) -> Self {
        BlackBoxError::Process(e.to_string())
    }
}

/// A black-box run, told and judged.
#[derive(Debug)]
pub(crate) struct JudgedProcessRun {
    /// Where the input landed.
    pub published: Vec<PublishedEvent>,
    pub history: History,
    /// The broken invariants, liveness last.
    pub violations: Vec<Violation>,
}

/// Where a program's effects are counted: calls to the effect service's sinks, and records
/// of output topics.
#[derive(Clone, Debug, Default)]
pub(crate) struct Effects {
    pub sinks: Vec<String>,
    pub outputs: Vec<OutputTopic>,
}

/// Judges `outcome`, the run of `case`, for `semantics`, counting `effects`.
pub(crate) fn judge_process_run(
    semantics: Semantics,
    case: &BlackBoxCase,
    outcome: &BlackBoxOutcome,
    effects: &Effects,
) -> JudgedProcessRun {
    let published = published_of(case, outcome);
    let history = history_of(case, outcome);
    let mut ledger = Ledger::new(attempts_of(outcome));
    let left = &outcome.left_behind;
    let cluster = ClusterSnapshot::from_parts(left.outputs.clone(), left.committed.clone());
    let mut sinks = effects.sinks.clone();
    for output in &effects.outputs {
        let counts = output.count(cluster.committed_records(output.topic()));
        ledger.observe(output.topic(), Observed::Topic, Ok(counts));
        sinks.push(output.topic().to_string());
    }
    let record = RunRecord {
        published: &published,
        history: &history,
        ledger: &ledger,
        sinks: &sinks,
        cluster: &cluster,
    };
    let mut violations: Vec<Violation> = semantics
        .invariants()
        .iter()
        .filter_map(|i| i.check(&record))
        .collect();
    violations.sort_by_key(|v| v.invariant == "liveness");
    JudgedProcessRun {
        published,
        history,
        violations,
    }
}

mod cargo_bin;
mod random_plans;
mod report;

pub use report::{BlackBoxCounterexample, BlackBoxPassed};
use report::{FailingRun, outputs};
#[cfg(test)]
mod tests;
