//! Judging cases ahead of proptest's run, on worker threads: a generator that steps exactly as
//! the run does produces the cases the run will meet next, worker threads take them one at a
//! time and judge them, and the run then finds each verdict waiting (or helps with the next
//! case while the one it needs is still running). The run itself stays sequential, so its
//! order, its shrinking and the report are those of a run on one thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestRunner};

use super::case_key::{CaseKey, key_of};
use super::shard::{Shard, Sharded, next_case};
use crate::scenario::Scenario;

/// The cases the run will meet, generated ahead of it.
pub(crate) struct Ahead<S: Strategy<Value = Scenario>> {
    runner: TestRunner,
    strategy: Sharded<S>,
    /// How many cases the run generates at most (its case count: every case of a pass after
    /// the first passes, as the reported ones are not failed again).
    left: u32,
}

impl<S: Strategy<Value = Scenario> + Clone> Ahead<S> {
    /// A generator for the run of `config` over `shard` of `strategy`'s cases for the check
    /// with `seed`.
    pub(crate) fn new(config: &Config, strategy: &S, shard: Shard, seed: u64) -> Self {
        let runner = TestRunner::new(Config {
            failure_persistence: None,
            ..config.clone()
        });
        Ahead {
            runner,
            strategy: shard.strategy(strategy.clone(), seed),
            left: config.cases,
        }
    }

    /// The next case the run will meet, with its key; `None` after the last one.
    fn next(&mut self) -> Option<(CaseKey, Scenario)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // A generation error stops the look-ahead; the run meets it itself.
        if let Ok(scenario) = next_case(&self.strategy, &mut self.runner) {
            Some((key_of(&scenario), scenario))
        } else {
            self.left = 0;
            None
        }
    }
}

/// The verdicts of a check's cases by key, each case judged once, by whichever thread takes
/// it first: the search thread when it meets a case, worker threads ahead of it.
pub(crate) struct Verdicts<S: Strategy<Value = Scenario>, J, E> {
    state: Mutex<State<J, E>>,
    /// Signalled each time a case's verdict is recorded.
    recorded: Condvar,
    ahead: Option<Mutex<Ahead<S>>>,
    stopped: AtomicBool,
}

struct State<J, E> {
    judged: BTreeMap<CaseKey, J>,
    /// Cases judged ahead whose run failed: the error is returned when the search meets them.
    failed: BTreeMap<CaseKey, E>,
    /// The cases some thread is judging now.
    running: BTreeSet<CaseKey>,
}

impl<S, J, E> Verdicts<S, J, E>
where
    S: Strategy<Value = Scenario> + Clone,
    J: Clone,
{
    /// Verdicts judged where they are needed, or also ahead when there is an `ahead`.
    pub(crate) fn new(ahead: Option<Ahead<S>>) -> Self {
        Verdicts {
            state: Mutex::new(State {
                judged: BTreeMap::new(),
                failed: BTreeMap::new(),
                running: BTreeSet::new(),
            }),
            recorded: Condvar::new(),
            ahead: ahead.map(Mutex::new),
            stopped: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<J, E>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The verdict on `scenario`, whose key is `key`: recorded already, or judged by `judge`
    /// now on this thread, or, when another thread is judging it, awaited while this thread
    /// judges the cases ahead.
    pub(crate) fn of(
        &self,
        key: CaseKey,
        scenario: &Scenario,
        judge: impl Fn(&Scenario) -> Result<J, E>,
    ) -> Result<J, E> {
        loop {
            let mut state = self.state();
            if let Some(judged) = state.judged.get(&key) {
                return Ok(judged.clone());
            }
            if let Some(e) = state.failed.remove(&key) {
                return Err(e);
            }
            if !state.running.contains(&key) {
                state.running.insert(key);
                drop(state);
                let verdict = judge(scenario);
                let mut state = self.state();
                state.running.remove(&key);
                if let Ok(judged) = &verdict {
                    state.judged.insert(key, judged.clone());
                }
                self.recorded.notify_all();
                return verdict;
            }
            drop(state);
            if let Some((next, case)) = self.claim() {
                let verdict = judge(&case);
                self.record(next, verdict);
                continue;
            }
            let mut state = self.state();
            while state.running.contains(&key) {
                state = self.recorded.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Judges the cases ahead with `judge` until there are none left or [`stop`](Self::stop)
    /// was called: a worker thread's loop.
    pub(crate) fn work_ahead(&self, judge: impl Fn(&Scenario) -> Result<J, E>) {
        while let Some((key, case)) = self.claim() {
            let verdict = judge(&case);
            self.record(key, verdict);
        }
    }

    /// Stops the work ahead after the cases running now.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// The next case ahead that nobody has judged or is judging, marked as running.
    fn claim(&self) -> Option<(CaseKey, Scenario)> {
        let mut ahead = self
            .ahead
            .as_ref()?
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return None;
            }
            let (key, case) = ahead.next()?;
            let mut state = self.state();
            let known = state.judged.contains_key(&key)
                || state.failed.contains_key(&key)
                || state.running.contains(&key);
            if !known {
                state.running.insert(key);
                return Some((key, case));
            }
        }
    }

    fn record(&self, key: CaseKey, verdict: Result<J, E>) {
        let mut state = self.state();
        state.running.remove(&key);
        match verdict {
            Ok(judged) => {
                state.judged.insert(key, judged);
            }
            Err(e) => {
                state.failed.insert(key, e);
            }
        }
        self.recorded.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use proptest::strategy::SBoxedStrategy;

    use super::*;
    use crate::scenario::ScenarioSpace;

    fn cases(n: u32) -> (Config, SBoxedStrategy<Scenario>) {
        let config = Config {
            cases: n,
            rng_seed: proptest::test_runner::RngSeed::Fixed(7),
            failure_persistence: None,
            ..Config::default()
        };
        (config, ScenarioSpace::default().shared_strategy())
    }

    #[test]
    fn each_case_is_judged_once_whichever_thread_takes_it() {
        let (config, strategy) = cases(40);
        let mut stream = Ahead::new(&config, &strategy, Shard::WHOLE, 7);
        let mut keys = Vec::new();
        while let Some((key, scenario)) = stream.next() {
            keys.push((key, scenario));
        }
        assert_eq!(keys.len(), 40);
        let verdicts: Verdicts<_, usize, String> =
            Verdicts::new(Some(Ahead::new(&config, &strategy, Shard::WHOLE, 7)));
        let judged = AtomicUsize::new(0);
        let judge = |s: &Scenario| {
            judged.fetch_add(1, Ordering::Relaxed);
            Ok(s.events.len())
        };
        std::thread::scope(|scope| {
            scope.spawn(|| verdicts.work_ahead(judge));
            for (key, scenario) in &keys {
                assert_eq!(
                    verdicts.of(*key, scenario, judge),
                    Ok(scenario.events.len())
                );
            }
            verdicts.stop();
        });
        let distinct: BTreeSet<&CaseKey> = keys.iter().map(|(k, _)| k).collect();
        assert_eq!(judged.load(Ordering::Relaxed), distinct.len());
    }

    #[test]
    fn an_error_judged_ahead_is_returned_when_the_case_is_met() {
        let (config, strategy) = cases(3);
        let verdicts: Verdicts<_, usize, String> =
            Verdicts::new(Some(Ahead::new(&config, &strategy, Shard::WHOLE, 7)));
        verdicts.work_ahead(|_| Err("the simulation failed".to_string()));
        let mut stream = Ahead::new(&config, &strategy, Shard::WHOLE, 7);
        let (key, scenario) = stream.next().expect("a first case");
        let never = |_: &Scenario| -> Result<usize, String> { panic!("judged twice") };
        assert_eq!(
            verdicts.of(key, &scenario, never),
            Err("the simulation failed".to_string())
        );
        // Returned once: met again, the case is judged anew.
        assert_eq!(verdicts.of(key, &scenario, |_| Ok(1)), Ok(1));
    }
}
