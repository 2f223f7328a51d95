//! Judging cases ahead of proptest's run, on worker threads: a generator that steps exactly as
//! the run does produces the cases the run will meet next, a batch of them runs in parallel, and
//! the run then finds each verdict waiting. The run itself stays sequential, so its order, its
//! shrinking and the report are those of a run on one thread.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestRunner};

use super::shard::{Shard, Sharded, next_case};
use crate::scenario::Scenario;

/// How many cases a batch holds per worker thread: enough to keep every thread busy, few
/// enough that little is run past a failing case.
const CASES_PER_THREAD: usize = 4;

/// The key a case is judged under: its full `Debug` text (the judge's cache key).
pub(crate) fn key_of(scenario: &Scenario) -> String {
    format!("{scenario:?}")
}

/// The cases the run will meet next, generated ahead of it.
pub(crate) struct Ahead<S: Strategy<Value = Scenario>> {
    runner: TestRunner,
    strategy: Sharded<S>,
    /// How many cases the run generates at most (its case count: every case of a pass after
    /// the first passes, as the reported ones are not failed again).
    left: u32,
    next: Option<(String, Scenario)>,
    threads: usize,
}

impl<S: Strategy<Value = Scenario> + Clone> Ahead<S> {
    /// A generator for the run of `config` over `shard` of `strategy`'s cases for the check with
    /// `seed`, judged on `threads` threads; `None` for one thread (the run judges its cases
    /// itself).
    pub(crate) fn new(
        config: &Config,
        strategy: &S,
        shard: Shard,
        seed: u64,
        threads: usize,
    ) -> Option<Self> {
        if threads < 2 {
            return None;
        }
        let runner = TestRunner::new(Config {
            failure_persistence: None,
            ..config.clone()
        });
        let mut ahead = Ahead {
            runner,
            strategy: shard.strategy(strategy.clone(), seed),
            left: config.cases,
            next: None,
            threads,
        };
        ahead.advance();
        Some(ahead)
    }

    fn advance(&mut self) {
        self.next = None;
        if self.left == 0 {
            return;
        }
        self.left -= 1;
        // A generation error stops the look-ahead; the run meets it itself.
        if let Ok(scenario) = next_case(&self.strategy, &mut self.runner) {
            self.next = Some((key_of(&scenario), scenario));
        } else {
            self.left = 0;
        }
    }

    /// Whether the case under `key` is the next one this generator has.
    pub(crate) fn is_next(&self, key: &str) -> bool {
        self.next.as_ref().is_some_and(|(k, _)| k == key)
    }

    /// The next batch of cases, without those `wanted` refuses (already judged) and repeats.
    pub(crate) fn batch(&mut self, wanted: impl Fn(&str) -> bool) -> Vec<(String, Scenario)> {
        let mut batch: Vec<(String, Scenario)> = Vec::new();
        let size = self.threads * CASES_PER_THREAD;
        while batch.len() < size {
            let Some((key, scenario)) = self.next.take() else {
                break;
            };
            if wanted(&key) && !batch.iter().any(|(k, _)| *k == key) {
                batch.push((key, scenario));
            }
            self.advance();
        }
        batch
    }

    /// How many threads judge a batch.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }
}

/// `work` applied to every item on `threads` threads: the calling thread and scoped threads
/// that first call `setup` (what the calling thread was set up with). The results come in the
/// items' order. A thread the system refuses leaves its share to the others.
pub(crate) fn map_on_threads<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    setup: impl Fn() + Sync,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let taken = AtomicUsize::new(0);
    let work_through = || {
        loop {
            let i = taken.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            let result = work(item);
            *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        }
    };
    std::thread::scope(|scope| {
        for n in 1..threads.min(items.len()) {
            let (setup, work_through) = (&setup, &work_through);
            let _refused = std::thread::Builder::new()
                .name(format!("effectively-once-case-{n}"))
                .spawn_scoped(scope, move || {
                    setup();
                    work_through();
                });
        }
        work_through();
    });
    results
        .into_iter()
        .map(|r| {
            r.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every item was worked on")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_on_threads_comes_back_in_the_items_order() {
        let items: Vec<u64> = (0..100).collect();
        let squares = map_on_threads(&items, 3, || {}, |n| n * n);
        assert_eq!(squares, items.iter().map(|n| n * n).collect::<Vec<_>>());
        assert!(map_on_threads(&[] as &[u64], 2, || {}, |n| *n).is_empty());
    }
}
