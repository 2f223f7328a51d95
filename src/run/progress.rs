//! How far the runs on a thread have got in virtual time, for a watchdog on another thread:
//! a consumer that keeps the thread busy while its run's virtual clock moves on (a timer that
//! wakes it often through a long pause) is slow, not blocked.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

thread_local! {
    static WATCHED: RefCell<Option<Arc<AtomicU64>>> = const { RefCell::new(None) };
}

/// From now on, every run on the current thread counts the advances of its virtual clock
/// into `counter`.
pub(crate) fn watch_this_thread(counter: Arc<AtomicU64>) {
    WATCHED.with(|w| *w.borrow_mut() = Some(counter));
}

/// The counter the runs of the current thread count into, if a watchdog watches it.
pub(crate) fn watched() -> Option<Arc<AtomicU64>> {
    WATCHED.with(|w| w.borrow().clone())
}

/// How often the clock is counted, in the run's time: rarely enough to cost nothing through
/// a 25-hour pause (150 wake-ups; every 10 s tripled the time of the zoo's checks), often
/// enough that a busy consumer's clock shows it moving within the case timeout.
const EVERY: Duration = Duration::from_secs(600);

/// A task of the run (on the current `LocalSet`) that counts into `counter` each time the
/// run's clock moved [`EVERY`] further; it stops when the returned guard is dropped. A
/// consumer that blocks the thread stops the clock, and the count with it.
pub(crate) fn count_clock(counter: Arc<AtomicU64>) -> ClockCount {
    ClockCount(tokio::task::spawn_local(async move {
        loop {
            tokio::time::sleep(EVERY).await;
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }))
}

/// Stops counting when dropped.
pub(crate) struct ClockCount(tokio::task::JoinHandle<()>);

impl Drop for ClockCount {
    fn drop(&mut self) {
        self.0.abort();
    }
}
