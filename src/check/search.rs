//! The search: proptest generates and shrinks scenarios on a worker thread while the calling
//! thread watches the wall clock, so a consumer that blocks the thread is a verdict, not a hang.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Once};
use std::time::Instant;

use proptest::strategy::SBoxedStrategy;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngSeed, TestCaseError, TestError, TestRunner,
};

use super::ahead::{Ahead, Verdicts};
use super::case_key::{CaseKey, key_of};
use super::judge::{CaseRun, Detail, run_case, run_scenario};
use super::report::{Counterexample, Passed};
use super::shrink::{
    drop_events, fewer_instances, merge_faults, remove_superfluous, simplify_faults,
};
use super::{CheckError, Verifier};
use crate::client::txn_error::stable_text;
use crate::error::Error;
use crate::history::Operation;
use crate::history::{History, HistoryEvent};
use crate::invariant::Semantics;
use crate::run::{InstanceContext, InstanceExit};
use crate::scenario::{Event, Scenario, StreamEvent};

/// The cases running now, by number (in the order they started), for a hung case's report.
/// The threads that run cases add and remove their own entries (a case's scenario is
/// allocated and freed on its thread); the watcher reads it only when it suspects a hang.
type Running = Mutex<BTreeMap<u64, Scenario>>;

/// Keeps [`Running`] and counts each case's start and end as progress for the watchdog.
struct Announcer<'a> {
    running: &'a Running,
    progress: &'a AtomicU64,
    next: AtomicU64,
}

impl Announcer<'_> {
    /// Runs `f` announced as case `scenario`.
    fn running<T>(&self, scenario: &Scenario, f: impl FnOnce() -> T) -> T {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let lock = || self.running.lock().unwrap_or_else(|e| e.into_inner());
        lock().insert(n, scenario.clone());
        self.progress.fetch_add(1, Ordering::Relaxed);
        let value = f();
        let finished = lock().remove(&n);
        self.progress.fetch_add(1, Ordering::Relaxed);
        drop(finished);
        value
    }
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
    // How often the worker's runs moved their virtual clocks on, and how many cases started
    // and ended: a case is hung only while this stands still (a consumer woken often through
    // a long pause is slow, not stuck).
    let progress = Arc::new(AtomicU64::new(0));
    let running: Arc<Running> = Arc::default();
    let worker_progress = progress.clone();
    let worker_running = running.clone();
    let worker = std::thread::Builder::new()
        .name("effectively-once-check".into())
        .spawn(move || {
            crate::run::progress::watch_this_thread(worker_progress.clone());
            silence_panics_on_this_thread();
            let announcer = Announcer {
                running: &worker_running,
                progress: &worker_progress,
                next: AtomicU64::new(0),
            };
            let result = search(
                semantics,
                &worker_verifier,
                &factory,
                &announcer,
                &worker_progress,
            );
            let _ = tx.send(result);
        })
        .map_err(|e| CheckError::Aborted(format!("could not start the worker thread: {e}")))?;
    // The watchdog looks four times per case timeout; it calls a case hung when nothing moved
    // for a whole timeout.
    let look = verifier.case_timeout / 4;
    let mut seen = progress.load(Ordering::Relaxed);
    let mut last_moved = Instant::now();
    loop {
        match rx.recv_timeout(look) {
            Ok(result) => {
                let _ = worker.join();
                return result;
            }
            Err(RecvTimeoutError::Timeout) if progress.load(Ordering::Relaxed) != seen => {
                seen = progress.load(Ordering::Relaxed);
                last_moved = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) if last_moved.elapsed() < verifier.case_timeout => {}
            Err(RecvTimeoutError::Timeout) => {
                // The worker is blocked inside the consumer; it is left behind.
                let first = running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .next()
                    .cloned();
                return Err(CheckError::Violated(Box::new(Counterexample::hung(
                    semantics,
                    verifier.case_timeout,
                    verifier.replay(),
                    first,
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
    let run = run_case(
        semantics,
        verifier,
        &scenario,
        move |ctx| factory(ctx),
        Detail::Verdict,
    )?;
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

/// The name of the one invariant that is not about safety: it is reported after the others,
/// never in their place.
const LIVENESS: &str = "liveness";

/// What one run of a scenario found.
#[derive(Clone)]
struct Judged {
    /// The names of the broken invariants, safety before liveness.
    broken: Vec<String>,
    faults_fired: u64,
    crashes: u64,
}

/// What one run of `scenario` found.
fn judged(run: &CaseRun) -> Judged {
    let mut judged = Judged {
        broken: run.violations.iter().map(|v| v.invariant.clone()).collect(),
        faults_fired: 0,
        crashes: 0,
    };
    for e in run.outcome.history().events() {
        match e {
            HistoryEvent::FaultInjected { .. } => judged.faults_fired += 1,
            HistoryEvent::InstanceCrashed { .. } => judged.crashes += 1,
            _ => {}
        }
    }
    judged
}

/// Runs one case and judges it; shared by the worker threads.
struct CaseRunner<'a, F> {
    semantics: Semantics,
    verifier: &'a Verifier,
    factory: &'a Arc<F>,
    announcer: &'a Announcer<'a>,
}

impl<F, Fut> CaseRunner<'_, F>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    /// Runs `scenario` on the current thread and judges it.
    fn run(&self, scenario: &Scenario) -> Result<Judged, Error> {
        let factory = self.factory.clone();
        self.announcer.running(scenario, || {
            run_case(
                self.semantics,
                self.verifier,
                scenario,
                move |ctx| factory(ctx),
                Detail::Verdict,
            )
            .map(|run| judged(&run))
        })
    }
}

/// Runs and judges scenarios, each one once: the search makes one pass per broken invariant,
/// and each pass meets the cases of the passes before it again. With more than one thread,
/// the cases a pass will meet next are judged ahead on worker threads.
struct Judge<'a, F> {
    cases: CaseRunner<'a, F>,
    verdicts: Verdicts<SBoxedStrategy<Scenario>, Judged, Error>,
}

impl<F, Fut> Judge<'_, F>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    fn judge(&self, scenario: &Scenario) -> Result<Judged, Error> {
        self.judge_keyed(key_of(scenario), scenario)
    }

    /// [`judge`](Self::judge) of `scenario`, whose key is `key`.
    fn judge_keyed(&self, key: CaseKey, scenario: &Scenario) -> Result<Judged, Error> {
        self.verdicts.of(key, scenario, |s| self.cases.run(s))
    }

    /// A worker thread's work: judging the cases ahead of the search.
    fn work_ahead(&self, progress: &Arc<AtomicU64>) {
        crate::run::progress::watch_this_thread(progress.clone());
        silence_panics_on_this_thread();
        self.verdicts.work_ahead(|s| self.cases.run(s));
    }

    /// Whether `scenario` breaks `target`, counting the step.
    fn breaks(&self, target: &str, scenario: &Scenario, steps: &Cell<u32>) -> Result<bool, Error> {
        steps.set(steps.get() + 1);
        Ok(self.judge(scenario)?.broken.iter().any(|b| b == target))
    }
}

/// What one pass of the search learns on the way.
#[derive(Default)]
struct Progress {
    cases: Cell<u32>,
    faults_fired: Cell<u64>,
    crashes: Cell<u64>,
    /// The invariant this pass found broken and shrinks for, and the case that broke it.
    target: RefCell<Option<(String, Scenario)>>,
    shrink_steps: Cell<u32>,
}

/// The invariant a case that broke `broken` is shrunk for, of those not `reported` yet: the
/// first safety invariant, liveness only when no safety invariant is left.
fn next_target(broken: &[String], reported: &[String]) -> Option<String> {
    let mut new = broken.iter().filter(|b| !reported.contains(b));
    let first = new.clone().find(|b| b.as_str() != LIVENESS);
    first.or_else(|| new.next()).cloned()
}

/// Generates cases until one breaks an invariant not reported yet, shrinks it for that
/// invariant, and starts over (the same cases, judged once) until a pass finds nothing new:
/// every distinct broken invariant gets its own minimal counterexample, safety before
/// liveness.
fn search<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    factory: &Arc<F>,
    announcer: &Announcer<'_>,
    watched: &Arc<AtomicU64>,
) -> Result<Passed, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    // A split check's cases come from its indexed stream, which proptest's saved seeds do not
    // replay: the seed and the shard do.
    let persist = verifier.persist && verifier.source_file.is_some() && verifier.shard.is_whole();
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
    let strategy = space.shared_strategy();
    let shard = verifier.shard;
    let ahead =
        (verifier.threads > 1).then(|| Ahead::new(&config, &strategy, shard, verifier.seed));
    let judge = Judge {
        cases: CaseRunner {
            semantics,
            verifier,
            factory,
            announcer,
        },
        verdicts: Verdicts::new(ahead),
    };
    std::thread::scope(|scope| {
        for n in 1..verifier.threads {
            let judge = &judge;
            // A thread the system refuses leaves its share to the others.
            let _refused = std::thread::Builder::new()
                .name(format!("effectively-once-case-{n}"))
                .spawn_scoped(scope, move || judge.work_ahead(watched));
        }
        let result = passes(semantics, verifier, &config, &strategy, &judge);
        judge.verdicts.stop();
        result
    })
}

/// The search's passes over the cases, each shrinking the first case that breaks an invariant
/// not reported yet, until a pass finds nothing new.
fn passes<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    config: &Config,
    strategy: &SBoxedStrategy<Scenario>,
    judge: &Judge<'_, F>,
) -> Result<Passed, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let shard = verifier.shard;
    let error: RefCell<Option<Error>> = RefCell::new(None);
    let mut reported: Vec<String> = Vec::new();
    let mut found: Vec<Counterexample> = Vec::new();
    loop {
        let mut runner = TestRunner::new(config.clone());
        let sharded = shard.strategy(strategy.clone(), verifier.seed);
        let progress = Progress::default();
        let result = runner.run(&sharded, |scenario| {
            if error.borrow().is_some() {
                return Err(TestCaseError::fail("the simulation failed"));
            }
            let judged = match judge.judge_keyed(key_of(&scenario), &scenario) {
                Ok(judged) => judged,
                Err(e) => {
                    *error.borrow_mut() = Some(e);
                    return Err(TestCaseError::fail("the simulation failed"));
                }
            };
            if let Some((target, _)) = &*progress.target.borrow() {
                // proptest shrinks: only the target counts (a case that breaks only
                // liveness does not stand for a safety violation).
                progress.shrink_steps.set(progress.shrink_steps.get() + 1);
                return if judged.broken.contains(target) {
                    Err(TestCaseError::fail(target.clone()))
                } else {
                    Ok(())
                };
            }
            progress.cases.set(progress.cases.get() + 1);
            progress
                .faults_fired
                .set(progress.faults_fired.get() + judged.faults_fired);
            progress
                .crashes
                .set(progress.crashes.get() + judged.crashes);
            match next_target(&judged.broken, &reported) {
                None => Ok(()),
                Some(target) => {
                    let fail = TestCaseError::fail(target.clone());
                    *progress.target.borrow_mut() = Some((target, scenario));
                    Err(fail)
                }
            }
        });
        if let Some(e) = error.take() {
            return Err(CheckError::Simulation(e));
        }
        match result {
            Ok(()) if found.is_empty() => {
                return Ok(Passed {
                    semantics,
                    cases: progress.cases.get(),
                    seed: verifier.seed,
                    shard,
                    faults_fired: progress.faults_fired.get(),
                    crashes: progress.crashes.get(),
                    broker: None,
                });
            }
            Ok(()) => break,
            Err(TestError::Abort(reason)) => return Err(CheckError::Aborted(reason.to_string())),
            Err(TestError::Fail(_, minimal)) => {
                let Some((target, first)) = progress.target.take() else {
                    return Err(CheckError::Aborted(
                        "proptest reported a failure no case made".into(),
                    ));
                };
                let c = shrink_for(judge, &target, minimal, &first, &progress)?;
                // Shrunk to a scenario already reported with this violation among its own:
                // the report shows it there.
                let shown = found.iter().any(|f| {
                    f.scenario == c.scenario && f.violations.iter().any(|v| v.invariant == target)
                });
                if !shown {
                    found.push(c);
                }
                reported.push(target);
            }
        }
    }
    // Safety before liveness, each in the order the search found it.
    found.sort_by_key(|c| c.violation().invariant == LIVENESS);
    let others = found.split_off(1);
    match found.pop() {
        Some(primary) => Err(CheckError::Violated(Box::new(primary.with_others(others)))),
        None => Err(CheckError::Aborted("no counterexample was kept".into())),
    }
}

/// Shrinks `minimal`, proptest's minimal case for `target`, with the passes proptest cannot
/// make (each keeping `target` broken), runs it again with its logs captured, and reports it.
fn shrink_for<F, Fut>(
    judge: &Judge<'_, F>,
    target: &str,
    minimal: Scenario,
    first: &Scenario,
    progress: &Progress,
) -> Result<Counterexample, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let steps = &progress.shrink_steps;
    let mut still_fails = |candidate: &Scenario| judge.breaks(target, candidate, steps);
    let minimal = merge_faults(minimal, &mut still_fails)?;
    let broken = judge.judge(&minimal)?.broken;
    let mut breaks_the_same = |candidate: &Scenario| {
        steps.set(steps.get() + 1);
        Ok(judge.judge(candidate)?.broken == broken)
    };
    let minimal = simplify_faults(minimal, &mut breaks_the_same)?;
    let minimal = fewer_instances(minimal, &mut breaks_the_same)?;
    let minimal = drop_events(minimal, &mut still_fails)?;
    let minimal = remove_superfluous(minimal, &mut still_fails)?;
    let cases = &judge.cases;
    let run_logged = || {
        capture_logs(|| {
            let factory = cases.factory.clone();
            run_scenario(cases.semantics, cases.verifier, &minimal, move |ctx| {
                factory(ctx)
            })
        })
    };
    let (run, logs) = cases.announcer.running(&minimal, run_logged);
    let run = run?;
    // Once more: the same scenario must give the same history.
    let (again, _) = cases.announcer.running(&minimal, run_logged);
    let difference = first_difference(run.outcome.history(), again?.outcome.history());
    Ok(Counterexample::new(
        cases.semantics,
        target,
        run.violations,
        run.scenario,
        run.published,
        run.outcome.history().clone(),
        cases.verifier.replay(),
        first,
        progress.cases.get(),
        steps.get(),
        // What the consumer logged may quote the simulator's errors: in their stable form.
        stable_text(logs),
    )
    .with_nondeterminism(difference))
}

/// Where two histories of one scenario first differ, if they do: the line of each.
fn first_difference(first: &History, second: &History) -> Option<String> {
    let (first, second) = (first.to_string(), second.to_string());
    if first == second {
        return None;
    }
    let mut lines = first.lines().zip(second.lines()).enumerate();
    Some(match lines.find(|(_, (a, b))| a != b) {
        Some((n, (a, b))) => format!(
            "line {} of the timeline: `{}` then `{}`",
            n + 1,
            a.trim(),
            b.trim()
        ),
        None => "one timeline is longer than the other".to_string(),
    })
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

    #[test]
    fn a_case_is_shrunk_for_a_safety_invariant_before_liveness_and_for_each_only_once() {
        let broken = [
            "liveness".to_string(),
            "exactly-once".into(),
            "at-least-once".into(),
        ];
        let reported = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(next_target(&broken, &[]).as_deref(), Some("exactly-once"));
        assert_eq!(
            next_target(&broken, &reported(&["exactly-once"])).as_deref(),
            Some("at-least-once")
        );
        assert_eq!(
            next_target(&broken, &reported(&["exactly-once", "at-least-once"])).as_deref(),
            Some("liveness")
        );
        assert_eq!(
            next_target(
                &broken,
                &reported(&["exactly-once", "at-least-once", "liveness"])
            ),
            None
        );
    }
}
