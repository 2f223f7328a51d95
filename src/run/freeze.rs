//! A frozen process (SIGSTOP) runs nothing until it thaws: what holds its tasks and its calls
//! into the kit.
//!
//! The driver runs each incarnation's root task, and [`InstanceContext::spawn`] each task the
//! instance spawns through the kit, inside a [`FreezeGate`]: while the incarnation is frozen
//! the gate does not poll the task at all (its timers expire unseen and fire at the thaw, as
//! after SIGCONT) and arms one timer for the thaw, so a freeze costs the same whatever its
//! length. Tasks spawned with plain `tokio::spawn` are not behind a gate; every asynchronous
//! call into the kit ([`thawed`]) waits for the thaw before it proceeds, which holds them at
//! their next recv, send or effect.
//!
//! [`InstanceContext::spawn`]: super::InstanceContext::spawn

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::{Sleep, sleep_until};

use super::core::Run;
use crate::history::Incarnation;

/// Waits until the incarnation is not frozen (re-checking at each thaw, as a freeze can be
/// extended meanwhile).
pub(crate) async fn thawed(run: &Run, incarnation: Incarnation) {
    loop {
        let until = run.lock().frozen_until(incarnation);
        let Some(until) = until else {
            return;
        };
        sleep_until(until).await;
    }
}

/// A task of an incarnation: not polled while the incarnation is frozen, and dropped once the
/// incarnation is gone (crashed, exited, or the run is over), as a killed process's threads.
pub(crate) struct FreezeGate<F> {
    run: Arc<Run>,
    incarnation: Incarnation,
    inner: Option<Pin<Box<F>>>,
    thaw: Option<Pin<Box<Sleep>>>,
}

impl<F> FreezeGate<F> {
    pub(crate) fn new(run: Arc<Run>, incarnation: Incarnation, inner: F) -> Self {
        FreezeGate {
            run,
            incarnation,
            inner: Some(Box::pin(inner)),
            thaw: None,
        }
    }
}

impl<F: Future> Future for FreezeGate<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        loop {
            let (alive, until) = {
                let run = this.run.lock();
                (
                    run.alive(this.incarnation),
                    run.frozen_until(this.incarnation),
                )
            };
            if !alive {
                // The process is gone: so is this task (its handles may unwind as they drop).
                let inner = this.inner.take();
                let _ = catch_unwind(AssertUnwindSafe(move || drop(inner)));
                this.thaw = None;
                return Poll::Pending;
            }
            let Some(until) = until else {
                break;
            };
            let thaw = this
                .thaw
                .get_or_insert_with(|| Box::pin(sleep_until(until)));
            if thaw.deadline() != until {
                thaw.as_mut().reset(until);
            }
            if thaw.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.thaw = None;
        match this.inner.as_mut() {
            Some(inner) => inner.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}
