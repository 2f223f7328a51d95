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

use super::judge::run_scenario;
use super::report::{Counterexample, Passed};
use super::shrink::{
    broken_invariants, drop_events, fewer_instances, merge_faults, simplify_faults,
};
use super::{CheckError, Verifier};
use crate::error::Error;
use crate::history::HistoryEvent;
use crate::history::Operation;
use crate::invariant::Semantics;
use crate::run::{InstanceContext, InstanceExit};
use crate::scenario::{Event, Scenario, StreamEvent};

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
                    semantics,
                    verifier.case_timeout,
                    verifier.replay(),
                    current,
                ))));
            }
            Err(RecvTimeoutError::Disconnected) => {
                let why = match worker.join() {
                    Err(payload) => crate::run::panic_message(&payload),
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
                run.violations,
                run.scenario,
                run.published,
                run.outcome.history().clone(),
                verifier.replay(),
                &first,
                progress.cases.get(),
                progress.shrink_steps.get(),
                logs,
            ))))
        }
    }
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
