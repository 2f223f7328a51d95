//! Verifying a consumer *program*, in any language, as a black box: [`BlackBox`] runs the
//! command's instances against librdkafka's mock cluster through the kit's wire proxy, with
//! their side effects going to the kit's HTTP effect service, first without faults and then
//! once per crash point of that pilot run and fault kind; each run's history and ledger go
//! through the same invariants as a simulated run's.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::Encoder;
use crate::broker::BrokerProvider;
use crate::history::{ClusterSnapshot, History};
use crate::invariant::{RunRecord, Semantics, Violation};
use crate::ledger::Ledger;
use crate::process::{
    BlackBoxCase, BlackBoxOutcome, ConsumerCommand, EffectFaults, Ending, EnvTemplate, InputEvent,
    ProcessError, Shrunk, WireEvent, WireFaults, attempts_of, history_of, pilot, probes,
    published_of, shrink_events,
};
use crate::scenario::Event;

/// A consumer program to verify as a black box.
///
/// Each instance is started as `command` with, in its environment, `KAFKA_BOOTSTRAP_SERVERS`
/// (its own address on the kit's wire proxy), `KAFKA_TOPIC`, `KAFKA_GROUP_ID`, `EFFECTS_URL`
/// (its own address on the kit's effect service) and `INSTANCE` (1, 2, ...). It consumes the
/// topic and performs each event's side effect with `POST {EFFECTS_URL}/effects/{sink}`, a JSON
/// body carrying the event's `event_id` and, optionally, an `Idempotency-Key` header (a key
/// that already took effect on the sink is not applied again: the answer says
/// `{"outcome":"deduplicated"}`). Faults kill the process (SIGKILL) right before or after an
/// effect or an offset commit, or fail an effect (503: not applied; 504 after applying it);
/// a killed instance is started again, as a process supervisor would.
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
    sinks: Vec<String>,
    encode: Encoder,
    time_limit: Duration,
    at_once: usize,
    workdir: Option<PathBuf>,
    broker: BrokerProvider,
    environment: Vec<(String, String)>,
    shrink: bool,
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
            .finish_non_exhaustive()
    }
}

impl BlackBox {
    /// The program to verify: its words, the program first (`["python3", "consumer.py"]`).
    /// Defaults: 1 instance, 3 events, topic `task-events`, group `notification-service`,
    /// sink `email`, events encoded as [`Event::to_json`], 90 s per run, 8 runs at once, on
    /// librdkafka's mock cluster (a fresh one per run).
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
            sinks: vec!["email".into()],
            encode: Arc::new(Event::to_json),
            time_limit: Duration::from_secs(90),
            at_once: 8,
            workdir: None,
            broker: BrokerProvider::MockCluster,
            environment: Vec::new(),
            shrink: true,
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

    /// The effect sinks every event must take effect on (replaces the default `email`).
    pub fn sinks<I, S>(&mut self, sinks: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sinks = sinks.into_iter().map(Into::into).collect();
        self
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

    /// How many runs go at once (each with its own broker and processes).
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

    /// Whether a failing run is shrunk by removing input events (default: yes; each round
    /// costs a few runs).
    pub fn shrink(&mut self, shrink: bool) -> &mut Self {
        self.shrink = shrink;
        self
    }

    /// Where the runs' effect ledgers are written (default: a fresh directory under the
    /// system's temporary directory, removed afterwards).
    pub fn workdir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.workdir = Some(dir.into());
        self
    }

    fn validate(&self) -> Result<(ConsumerCommand, Vec<EnvTemplate>), BlackBoxError> {
        let invalid = |why: &str| Err(BlackBoxError::InvalidConfig(why.to_string()));
        if self.instances == 0 {
            return invalid("instances must be at least 1");
        }
        if self.events == 0 {
            return invalid("events must be at least 1");
        }
        if self.sinks.is_empty() {
            return invalid("name at least one effect sink");
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

    /// Runs the pilot and one run per crash point and fault kind, and judges each for
    /// `semantics` as it finishes; the first run that breaks it, in the points' order, is the
    /// counterexample (the runs after it are not made), shrunk by removing input events while
    /// the same invariant stays broken (see [`BlackBox::shrink`]).
    pub fn check(&self, semantics: Semantics) -> Result<BlackBoxPassed, BlackBoxError> {
        let (command, environment) = self.validate()?;
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
        let topics = [(
            self.topic.clone(),
            i32::try_from(self.instances).unwrap_or(i32::MAX),
        )];
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
        let judged = judge_process_run(semantics, &case, &pilot, &self.sinks);
        if let Some(violation) = judged.violations.first() {
            let mut counterexample = self.counterexample(
                semantics,
                "none (the pilot run)",
                violation,
                &judged,
                &pilot,
            );
            counterexample.events = case.events.iter().map(|e| e.event_id.clone()).collect();
            counterexample.shrunk_from = case.events.len();
            counterexample.runs = 1;
            return Err(BlackBoxError::Violated(Box::new(counterexample)));
        }
        let fails = |case: &BlackBoxCase, outcome: &BlackBoxOutcome| {
            !judge_process_run(semantics, case, outcome, &self.sinks)
                .violations
                .is_empty()
        };
        let mut probes = probes(&case, &pilot, &broker, self.at_once, &fails)?;
        let runs = probes.len() + 1;
        let failing = match probes.pop() {
            Some(p) if fails(&case, &p.outcome) => p,
            _ => {
                return Ok(BlackBoxPassed {
                    semantics,
                    command: self.command.join(" "),
                    runs,
                    took: started.elapsed(),
                });
            }
        };
        let fault = format!("{:?} at {}", failing.fault, failing.point);
        let broken = judge_process_run(semantics, &case, &failing.outcome, &self.sinks)
            .violations
            .swap_remove(0)
            .invariant;
        let shrunk = if self.shrink {
            // The same invariant broken, not merely any.
            let same = |case: &BlackBoxCase, outcome: &BlackBoxOutcome| {
                judge_process_run(semantics, case, outcome, &self.sinks)
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
        let judged = judge_process_run(semantics, &shrunk.case, &shrunk.probe.outcome, &self.sinks);
        let violation = judged
            .violations
            .iter()
            .find(|v| v.invariant == broken)
            .unwrap_or(&judged.violations[0]);
        let mut counterexample =
            self.counterexample(semantics, &fault, violation, &judged, &shrunk.probe.outcome);
        counterexample.events = shrunk
            .case
            .events
            .iter()
            .map(|e| e.event_id.clone())
            .collect();
        counterexample.shrunk_from = case.events.len();
        counterexample.runs = runs + shrunk.runs;
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
        if pilot.attempts.is_empty() && pilot.ending == Ending::CaughtUp {
            return Err(BlackBoxError::Unusable(format!(
                "the consumer committed its input but never called the effect service \
                 (POST {{EFFECTS_URL}}/effects/{{sink}}); its output:\n{output}"
            )));
        }
        Ok(())
    }

    fn counterexample(
        &self,
        semantics: Semantics,
        fault: &str,
        violation: &Violation,
        judged: &JudgedProcessRun,
        outcome: &BlackBoxOutcome,
    ) -> BlackBoxCounterexample {
        BlackBoxCounterexample {
            semantics,
            command: self.command.join(" "),
            fault: fault.to_string(),
            violation: violation.clone(),
            events: Vec::new(),
            shrunk_from: 0,
            runs: 0,
            timeline: judged.history.to_string(),
            output: outputs(outcome),
        }
    }
}

/// Each incarnation's output, headed by its name.
fn outputs(outcome: &BlackBoxOutcome) -> String {
    let mut text = String::new();
    for life in &outcome.lives {
        text.push_str(&format!("--- {} ---\n{}", life.incarnation, life.output));
        if !life.output.ends_with('\n') && !life.output.is_empty() {
            text.push('\n');
        }
    }
    text
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

/// A black-box check that found nothing.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BlackBoxPassed {
    /// The semantics checked.
    pub semantics: Semantics,
    /// The program, as one line.
    pub command: String,
    /// How many runs were judged (the pilot and one per crash point and fault kind).
    pub runs: usize,
    /// How long the check took.
    pub took: Duration,
}

impl fmt::Display for BlackBoxPassed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "effectively-once black-box check passed: `{}` held {} in {} runs (a pilot and one \
             per crash point and fault kind) in {:.1} s",
            self.command,
            self.semantics,
            self.runs,
            self.took.as_secs_f64()
        )
    }
}

/// What a black-box check found wrong: the run that broke the semantics.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BlackBoxCounterexample {
    /// The semantics checked.
    pub semantics: Semantics,
    /// The program, as one line.
    pub command: String,
    /// The fault the run fired, and where.
    pub fault: String,
    /// The broken invariant.
    pub violation: Violation,
    /// The failing run's input events, after shrinking.
    pub events: Vec<String>,
    /// How many events the input held before shrinking.
    pub shrunk_from: usize,
    /// How many runs the check made (the pilot, the crash points up to this one, shrinking).
    pub runs: usize,
    /// The run's timeline (the history's text).
    pub timeline: String,
    /// Each incarnation's output.
    pub output: String,
}

impl fmt::Display for BlackBoxCounterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "effectively-once black-box check FAILED: `{}` is not {}",
            self.command, self.semantics
        )?;
        writeln!(f, "fault: {}", self.fault)?;
        write!(f, "input: {}", self.events.join(", "))?;
        if self.events.len() < self.shrunk_from {
            write!(f, " (shrunk from {} events)", self.shrunk_from)?;
        }
        writeln!(f, "; found in {} runs", self.runs)?;
        write!(f, "{}", self.violation)?;
        writeln!(f, "\ntimeline:\n{}", self.timeline)?;
        write!(f, "output:\n{}", self.output)
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
    pub history: History,
    /// The broken invariants, liveness last.
    pub violations: Vec<Violation>,
}

/// Judges `outcome`, the run of `case`, for `semantics`, counting the effects on `sinks`.
pub(crate) fn judge_process_run(
    semantics: Semantics,
    case: &BlackBoxCase,
    outcome: &BlackBoxOutcome,
    sinks: &[String],
) -> JudgedProcessRun {
    let published = published_of(case, outcome);
    let history = history_of(case, outcome);
    let ledger = Ledger::new(attempts_of(outcome));
    let cluster = ClusterSnapshot::default();
    let record = RunRecord {
        published: &published,
        history: &history,
        ledger: &ledger,
        sinks,
        cluster: &cluster,
    };
    let mut violations: Vec<Violation> = semantics
        .invariants()
        .iter()
        .filter_map(|i| i.check(&record))
        .collect();
    violations.sort_by_key(|v| v.invariant == "liveness");
    JudgedProcessRun {
        history,
        violations,
    }
}

mod cargo_bin;
#[cfg(test)]
mod tests;
