//! The search: proptest generates and shrinks scenarios on a worker thread while the calling
//! thread watches the wall clock, so a consumer that blocks the thread is a verdict, not a hang.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Once};

use proptest::test_runner::{
    Config, FileFailurePersistence, RngSeed, TestCaseError, TestError, TestRunner,
};

use super::report::{Counterexample, Passed};
use super::{CheckError, Verifier};
use crate::broker::self_check::Capability;
use crate::error::Error;
use crate::fault::{Fault, Operation};
use crate::harness::{InstanceContext, InstanceExit, Outcome, Simulation};
use crate::history::HistoryEvent;
use crate::invariant::{RunRecord, Semantics, Violation};
use crate::ledger::{Ledger, Observed, StoreEffectError};
use crate::scenario::{Event, PublishedEvent, Scenario, StreamEvent};

/// The sink name used when the consumer called no effect sink and none was declared: every
/// event then counts as lost.
pub(crate) const NO_SINK: &str = "(no effect sink was called)";

/// One scenario's run and its verdict.
#[derive(Debug)]
pub struct CaseRun {
    /// The scenario.
    pub scenario: Scenario,
    /// Where each event landed.
    pub published: Vec<PublishedEvent>,
    /// What happened.
    pub outcome: Outcome,
    /// The effect attempts.
    pub ledger: Ledger,
    /// The sinks whose effects counted.
    pub sinks: Vec<String>,
    /// The broken invariants, in the order they were checked (empty: the case passed).
    pub violations: Vec<Violation>,
    /// On a real broker: what the invariants found that the broker's shortfalls could explain
    /// (see [`NotCheckable`]); never counted as a consumer bug.
    pub not_checkable: Vec<NotCheckable>,
}

/// A violation on a real broker that lacks a guarantee the invariant relies on: "not
/// checkable on this broker", neither a pass nor a consumer bug.
#[derive(Clone, Debug)]
pub struct NotCheckable {
    /// What the invariant found.
    pub violation: Violation,
    /// The broker's shortfalls, from its self-check.
    pub reason: String,
}

impl std::fmt::Display for NotCheckable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} not checkable on this broker: {}",
            self.violation.invariant, self.reason
        )?;
        write!(f, "  (it found: {}", self.violation.summary)?;
        for detail in &self.violation.details {
            write!(f, "; {detail}")?;
        }
        f.write_str(")")
    }
}

/// The guarantees an invariant's verdict relies on, beyond groups and commits.
fn relies_on(invariant: &str, outcome: &Outcome) -> &'static [Capability] {
    const TRANSACTIONS: &[Capability] = &[
        Capability::HidesAbortedRecords,
        Capability::StoresTransactionalOffsets,
        Capability::FencesZombies,
    ];
    match invariant {
        // The outputs are read as read_committed, with the transactions' offsets and fencing.
        "exactly-once" | "offsets match outputs" => TRANSACTIONS,
        // A read_committed consumer handed an aborted record is the broker's doing; a
        // read_uncommitted one's is the consumer's on any broker.
        "no aborted read"
            if outcome.history().events().any(|e| {
                matches!(
                    e,
                    HistoryEvent::Delivered {
                        read_committed: true,
                        ..
                    }
                )
            }) =>
        {
            &[Capability::HidesAbortedRecords]
        }
        // A consumer that commits its offsets with its transactions catches up only if the
        // broker stores them.
        "liveness"
            if outcome
                .operations()
                .contains_key(&Operation::SendOffsetsToTransaction) =>
        {
            &[Capability::StoresTransactionalOffsets]
        }
        _ => &[],
    }
}

/// Splits the violations into those that stand and those the broker's shortfalls leave
/// undecided.
fn split_not_checkable(
    violations: Vec<Violation>,
    outcome: &Outcome,
) -> (Vec<Violation>, Vec<NotCheckable>) {
    let Some(found) = outcome.broker_self_check() else {
        return (violations, Vec::new());
    };
    let mut stand = Vec::new();
    let mut undecided = Vec::new();
    for violation in violations {
        let shortfalls: Vec<String> = relies_on(&violation.invariant, outcome)
            .iter()
            .filter_map(|c| found.shortfall(*c))
            .collect();
        if shortfalls.is_empty() {
            stand.push(violation);
        } else {
            undecided.push(NotCheckable {
                violation,
                reason: shortfalls.join("; "),
            });
        }
    }
    (stand, undecided)
}

/// Runs one scenario with `verifier`'s settings and judges it against `semantics`.
///
/// Use it to pin a scenario in a test, or to replay a counterexample's
/// [`scenario`](Counterexample::scenario).
pub fn run_scenario<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    scenario: &Scenario,
    factory: F,
) -> Result<CaseRun, Error>
where
    F: Fn(InstanceContext) -> Fut + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let mut builder = Simulation::builder();
    scenario.configure(&mut builder, &verifier.topic, &*verifier.encode);
    for output in &verifier.outputs {
        builder.topic(output.topic(), output.partitions());
    }
    // Room for every pause and late join, then twice the liveness bound: a group that has
    // not caught up by then has already broken liveness.
    let latest_join = scenario
        .late_joins
        .iter()
        .map(|j| j.at)
        .max()
        .unwrap_or_default();
    builder.time_limit(scenario.pause_total() + latest_join + 2 * verifier.liveness.bound);
    if let Some(tweak) = &verifier.tweak {
        tweak(&mut builder);
    }
    let simulation = builder.build()?;
    let outcome = match &verifier.broker {
        Some(provider) => simulation.run_on(provider, factory)?,
        None => simulation.run(factory)?,
    };
    let published = scenario.published(&verifier.topic);
    let mut ledger = Ledger::from_history(outcome.history());
    for effect in &verifier.store_effects {
        let observed = outcome
            .read_store(|conn| Ok(effect.observe(conn)))
            .map_err(StoreEffectError::from)
            .and_then(|observed| observed);
        ledger.observe(
            effect.name(),
            Observed::Store,
            observed.map_err(|e| e.to_string()),
        );
    }
    for output in &verifier.outputs {
        let counts = output.observe(outcome.cluster());
        ledger.observe(output.topic(), Observed::Topic, Ok(counts));
    }
    let sinks = if !verifier.sinks.is_empty() {
        let mut sinks = verifier.sinks.clone();
        sinks.extend(verifier.store_effects.iter().map(|e| e.name().to_string()));
        sinks.extend(verifier.outputs.iter().map(|o| o.topic().to_string()));
        sinks
    } else if ledger.sinks().is_empty() {
        vec![NO_SINK.to_string()]
    } else {
        ledger.sinks()
    };
    let record = RunRecord {
        published: &published,
        history: outcome.history(),
        ledger: &ledger,
        sinks: &sinks,
        cluster: outcome.cluster(),
    };
    let violations = verifier
        .invariants(semantics)
        .iter()
        .filter_map(|i| i.check(&record))
        .collect();
    let (violations, not_checkable) = split_not_checkable(violations, &outcome);
    Ok(CaseRun {
        scenario: scenario.clone(),
        published,
        outcome,
        ledger,
        sinks,
        violations,
        not_checkable,
    })
}

enum Message {
    Case(Scenario),
    Done(Result<Passed, CheckError>),
}

thread_local! {
    static SILENT: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the consumer's panics (each one recorded in the history) off stderr on this thread,
/// leaving other threads' panics alone.
fn silence_panics_on_this_thread() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !SILENT.with(Cell::get) {
                previous(info);
            }
        }));
    });
    SILENT.with(|s| s.set(true));
}

/// Runs the search on a worker thread and watches it.
pub(crate) fn run<F, Fut>(
    semantics: Semantics,
    verifier: Verifier,
    factory: Arc<F>,
) -> Result<Passed, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let (tx, rx) = mpsc::channel();
    let worker_verifier = verifier.clone();
    let worker = std::thread::Builder::new()
        .name("effectively-once-check".into())
        .spawn(move || {
            silence_panics_on_this_thread();
            let result = search(semantics, &worker_verifier, &factory, &tx);
            let _ = tx.send(Message::Done(result));
        })
        .map_err(|e| CheckError::Aborted(format!("could not start the worker thread: {e}")))?;
    let mut current: Option<Scenario> = None;
    loop {
        match rx.recv_timeout(verifier.case_timeout) {
            Ok(Message::Case(scenario)) => current = Some(scenario),
            Ok(Message::Done(result)) => {
                let _ = worker.join();
                return result;
            }
            Err(RecvTimeoutError::Timeout) => {
                // The worker is blocked inside the consumer; it is left behind.
                return Err(CheckError::Violated(Box::new(Counterexample::hung(
                    semantics, &verifier, current,
                ))));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let why = match worker.join() {
                    Err(payload) => crate::harness::panic_message(&payload),
                    Ok(()) => "the worker thread ended without a result".into(),
                };
                return Err(CheckError::Aborted(format!(
                    "the check's worker thread panicked: {why}"
                )));
            }
        }
    }
}

/// Runs a small fault-free scenario (three events, one instance, one partition), checks that
/// every store effect's query reads its final store, and returns the operations the consumer
/// performed.
fn pilot<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    factory: &Arc<F>,
) -> Result<Vec<Operation>, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let scenario = Scenario {
        seed: 0,
        partitions: 1,
        instances: 1,
        late_joins: Vec::new(),
        events: (0..3)
            .map(|n| StreamEvent {
                event: Event {
                    event_id: format!("evt-{n}"),
                    key: format!("k{n}"),
                    payload: serde_json::json!({ "value": n }),
                },
                produced_twice: false,
                poison: false,
                aborted_first: false,
            })
            .collect(),
        faults: Vec::new(),
    };
    let factory = factory.clone();
    let run = run_scenario(semantics, verifier, &scenario, move |ctx| factory(ctx))?;
    for effect in &verifier.store_effects {
        if let Some(Err(why)) = run.ledger.observed(effect.name()) {
            return Err(CheckError::InvalidConfig(format!(
                "store effect `{}`: {why} (query {:?}, on a fault-free run of three events)",
                effect.name(),
                effect.query()
            )));
        }
    }
    Ok(run.outcome.operations().keys().copied().collect())
}

/// What the search learns on the way.
#[derive(Default)]
struct Progress {
    cases: Cell<u32>,
    faults_fired: Cell<u64>,
    crashes: Cell<u64>,
    first_failure: RefCell<Option<Scenario>>,
    shrink_steps: Cell<u32>,
    error: RefCell<Option<Error>>,
}

fn search<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    factory: &Arc<F>,
    tx: &mpsc::Sender<Message>,
) -> Result<Passed, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let persist = verifier.persist && verifier.source_file.is_some();
    let config = Config {
        cases: verifier.cases,
        failure_persistence: if persist {
            Some(Box::new(FileFailurePersistence::default()))
        } else {
            None
        },
        source_file: verifier.source_file,
        rng_seed: RngSeed::Fixed(verifier.seed),
        max_shrink_iters: verifier.max_shrink_iters,
        max_shrink_time: 0,
        fork: false,
        timeout: 0,
        verbose: 0,
        ..Config::default()
    };
    let mut space = verifier.space.clone();
    let operations = pilot(semantics, verifier, factory)?;
    if space.restricted_operations().is_none() {
        space.operations(&operations);
    }
    let strategy = space.strategy();
    let mut runner = TestRunner::new(config);
    let progress = Progress::default();
    let result = runner.run(&strategy, |scenario| {
        let _ = tx.send(Message::Case(scenario.clone()));
        let factory = factory.clone();
        let run = match run_scenario(semantics, verifier, &scenario, move |ctx| factory(ctx)) {
            Ok(run) => run,
            Err(e) => {
                progress.error.borrow_mut().get_or_insert(e);
                return Err(TestCaseError::fail("the simulation failed"));
            }
        };
        let failing = progress.first_failure.borrow().is_some();
        if failing {
            progress.shrink_steps.set(progress.shrink_steps.get() + 1);
        } else {
            progress.cases.set(progress.cases.get() + 1);
            for e in run.outcome.history().events() {
                match e {
                    HistoryEvent::FaultInjected { .. } => {
                        progress.faults_fired.set(progress.faults_fired.get() + 1)
                    }
                    HistoryEvent::InstanceCrashed { .. } => {
                        progress.crashes.set(progress.crashes.get() + 1)
                    }
                    _ => {}
                }
            }
        }
        match run.violations.first() {
            None => Ok(()),
            Some(v) => {
                if !failing {
                    *progress.first_failure.borrow_mut() = Some(scenario);
                }
                Err(TestCaseError::fail(v.summary.clone()))
            }
        }
    });
    if let Some(e) = progress.error.take() {
        return Err(CheckError::Simulation(e));
    }
    match result {
        Ok(()) => Ok(Passed {
            semantics,
            cases: progress.cases.get(),
            seed: verifier.seed,
            faults_fired: progress.faults_fired.get(),
            crashes: progress.crashes.get(),
            broker: None,
        }),
        Err(TestError::Abort(reason)) => Err(CheckError::Aborted(reason.to_string())),
        Err(TestError::Fail(_, minimal)) => {
            let mut still_fails = |candidate: &Scenario| {
                let _ = tx.send(Message::Case(candidate.clone()));
                progress.shrink_steps.set(progress.shrink_steps.get() + 1);
                let factory = factory.clone();
                let run = run_scenario(semantics, verifier, candidate, move |ctx| factory(ctx))?;
                Ok(!run.violations.is_empty())
            };
            let minimal = merge_faults(minimal, &mut still_fails)?;
            let broken = broken_invariants(semantics, verifier, factory, &minimal)?;
            let mut breaks_the_same = |candidate: &Scenario| {
                let _ = tx.send(Message::Case(candidate.clone()));
                progress.shrink_steps.set(progress.shrink_steps.get() + 1);
                Ok(broken_invariants(semantics, verifier, factory, candidate)? == broken)
            };
            let minimal = simplify_faults(minimal, &mut breaks_the_same)?;
            let minimal = fewer_instances(minimal, &mut breaks_the_same)?;
            let minimal = drop_events(minimal, &mut still_fails)?;
            let _ = tx.send(Message::Case(minimal.clone()));
            let (run, logs) = capture_logs(|| {
                let factory = factory.clone();
                run_scenario(semantics, verifier, &minimal, move |ctx| factory(ctx))
            });
            let run = run?;
            let first = progress
                .first_failure
                .take()
                .unwrap_or_else(|| minimal.clone());
            Err(CheckError::Violated(Box::new(Counterexample::new(
                semantics,
                verifier,
                run,
                &first,
                progress.cases.get(),
                progress.shrink_steps.get(),
                logs,
            ))))
        }
    }
}

/// Shrinks further where proptest, which changes one value at a time, stops: a fault that
/// shifts the occurrence count of a later one can only go together with that shift. A failed
/// store commit makes the retry the second commit ([`Scenario::without_fault`]); a crash
/// makes every operation on the redelivered event happen a second time
/// ([`Scenario::without_fault_and_its_redelivery`]). Keeps every removal after which the
/// scenario still fails.
fn merge_faults(
    mut scenario: Scenario,
    mut still_fails: impl FnMut(&Scenario) -> Result<bool, Error>,
) -> Result<Scenario, CheckError> {
    'search: loop {
        for index in 0..scenario.faults.len() {
            let removed = &scenario.faults[index];
            let mut candidates = Vec::new();
            let shifted = scenario.without_fault(index);
            let redelivered = scenario.without_fault_and_its_redelivery(index);
            if redelivered.faults != shifted.faults {
                candidates.push(redelivered);
            }
            // A plain removal proptest has tried already.
            if scenario.faults.iter().any(|f| f.falls_after(removed)) {
                candidates.insert(0, shifted);
            }
            for candidate in candidates {
                if still_fails(&candidate)? {
                    scenario = candidate;
                    continue 'search;
                }
            }
        }
        return Ok(scenario);
    }
}

/// The names of the invariants `scenario` breaks, in order.
fn broken_invariants<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    factory: &Arc<F>,
    scenario: &Scenario,
) -> Result<Vec<String>, Error>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let factory = factory.clone();
    let run = run_scenario(semantics, verifier, scenario, move |ctx| factory(ctx))?;
    Ok(run.violations.into_iter().map(|v| v.invariant).collect())
}

/// Replaces each fault by a crash at the same point, after or before the operation, where the
/// scenario still breaks the same invariants: a crash is the easiest failure to read, and
/// one every broker can replay (a process freeze none can, a broker restart only the brokers
/// the kit starts). proptest never tries it: it shrinks a fault within its kind.
fn simplify_faults(
    mut scenario: Scenario,
    mut breaks_the_same: impl FnMut(&Scenario) -> Result<bool, Error>,
) -> Result<Scenario, CheckError> {
    for index in 0..scenario.faults.len() {
        if matches!(
            scenario.faults[index].fault,
            Fault::CrashAfter | Fault::CrashBefore
        ) {
            continue;
        }
        for crash in [Fault::CrashAfter, Fault::CrashBefore] {
            let mut candidate = scenario.clone();
            candidate.faults[index].fault = crash;
            if breaks_the_same(&candidate)? {
                scenario = candidate;
                break;
            }
        }
    }
    Ok(scenario)
}

/// Removes consumer instances the failure does not need (a simpler fault may need fewer:
/// another instance took over from a frozen one, a crashed one restarts by itself).
fn fewer_instances(
    mut scenario: Scenario,
    mut breaks_the_same: impl FnMut(&Scenario) -> Result<bool, Error>,
) -> Result<Scenario, CheckError> {
    while scenario.instances > 1 && scenario.late_joins.is_empty() {
        let mut candidate = scenario.clone();
        candidate.instances -= 1;
        if !breaks_the_same(&candidate)? {
            break;
        }
        scenario = candidate;
    }
    Ok(scenario)
}

/// Removes the events the failure does not need. proptest deletes events only before it
/// shrinks the faults, so an event that became superfluous later stays; this pass tries each
/// removal again (events with a fault anchored on them stay).
fn drop_events(
    mut scenario: Scenario,
    mut still_fails: impl FnMut(&Scenario) -> Result<bool, Error>,
) -> Result<Scenario, CheckError> {
    let mut index = 0;
    while index < scenario.events.len() {
        match scenario.without_event(index) {
            Some(candidate) if still_fails(&candidate)? => scenario = candidate,
            _ => index += 1,
        }
    }
    Ok(scenario)
}

/// A `Write` into a shared buffer, for the log capture.
#[derive(Clone, Default)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with every `tracing` event on this thread written to a buffer (no timestamps, no
/// colours, without the kit's own history lines, which the timeline already shows).
fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::{Layer, Registry, filter, fmt};
    let buffer = SharedBuffer::default();
    let writer = buffer.clone();
    let layer = fmt::layer()
        .with_writer(move || writer.clone())
        .without_time()
        .with_ansi(false)
        .with_target(true)
        .with_filter(filter::filter_fn(|meta| {
            meta.target() != "effectively_once::history"
        }));
    let subscriber = Registry::default().with(layer);
    let value = tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (value, String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ScenarioFault;

    #[test]
    fn merging_removes_a_fault_together_with_the_occurrence_shift_it_caused() {
        let fault = |occurrence, fault| ScenarioFault {
            event: 0,
            operation: Operation::StoreCommit,
            occurrence,
            fault,
        };
        let scenario = Scenario {
            seed: 0,
            partitions: 1,
            instances: 1,
            late_joins: Vec::new(),
            events: Vec::new(),
            faults: vec![fault(2, Fault::CrashAfter), fault(1, Fault::Fail)],
        };
        // Fails whenever the first store commit is followed by a crash.
        let mut tried = Vec::new();
        let merged = merge_faults(scenario, |s| {
            tried.push(s.faults.len());
            Ok(s.faults.contains(&fault(1, Fault::CrashAfter)))
        })
        .unwrap();
        assert_eq!(merged.faults, vec![fault(1, Fault::CrashAfter)]);
        assert_eq!(tried, vec![1], "the plain removal is proptest's to try");
    }

    #[test]
    fn simplifying_turns_faults_into_crashes_where_the_failure_stays_and_drops_instances() {
        let fault = |operation, fault| ScenarioFault {
            event: 0,
            operation,
            occurrence: 1,
            fault,
        };
        let freeze = Fault::Freeze(std::time::Duration::from_secs(60));
        let scenario = Scenario {
            seed: 0,
            partitions: 1,
            instances: 3,
            late_joins: Vec::new(),
            events: Vec::new(),
            faults: vec![
                fault(Operation::Effect, freeze),
                fault(Operation::Send, Fault::LoseAck),
            ],
        };
        // The failure needs something to happen before the effect's completion (a crash
        // before it does), the lost ack on the send, and two instances.
        let breaks = |s: &Scenario| {
            let first = s.faults[0].fault;
            Ok(s.instances >= 2
                && (first == freeze || first == Fault::CrashBefore)
                && s.faults[1].fault == Fault::LoseAck)
        };
        let simplified = simplify_faults(scenario, breaks).unwrap();
        assert_eq!(
            simplified.faults,
            vec![
                fault(Operation::Effect, Fault::CrashBefore),
                fault(Operation::Send, Fault::LoseAck)
            ]
        );
        assert_eq!(fewer_instances(simplified, breaks).unwrap().instances, 2);
    }
}
