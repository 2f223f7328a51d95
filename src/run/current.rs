//! The instance a task belongs to: [`InstanceContext::current`].
//!
//! The driver runs each incarnation's root future (and the factory call that makes it), and
//! [`InstanceContext::spawn`] each task the instance spawns, inside a task-local scope holding
//! the incarnation's context. Code that cannot be handed a context, such as a drop-in client
//! crate whose `ClientConfig::create()` must join the run, finds it there.

use std::future::Future;

use super::context::InstanceContext;

tokio::task_local! {
    static CURRENT: InstanceContext;
}

/// Runs `future` with `context` as the current instance.
pub(crate) fn scope<F: Future>(
    context: InstanceContext,
    future: F,
) -> impl Future<Output = F::Output> {
    CURRENT.scope(context, future)
}

impl InstanceContext {
    /// The context of the instance whose task calls this: `Some` inside an instance's own task
    /// (the future its factory returns, and the factory call itself) and inside the tasks it
    /// spawned with [`InstanceContext::spawn`]; `None` anywhere else, including tasks spawned
    /// with plain `tokio::spawn` and other threads.
    ///
    /// It lets code that is not handed a context join the run, as a drop-in client whose
    /// `create()` takes only a `ClientConfig` does: create such clients in the instance's own
    /// task, or in a task spawned with [`InstanceContext::spawn`].
    ///
    /// ```
    /// use effectively_once::{InstanceContext, Simulation};
    ///
    /// assert!(InstanceContext::current().is_none()); // not in a run
    /// let mut sim = Simulation::builder();
    /// sim.topic("events", 1);
    /// sim.build()?.run(|ctx| async move {
    ///     let current = InstanceContext::current().expect("inside the instance's task");
    ///     assert_eq!(current.incarnation(), ctx.incarnation());
    /// })?;
    /// # Ok::<(), effectively_once::Error>(())
    /// ```
    pub fn current() -> Option<InstanceContext> {
        CURRENT.try_with(InstanceContext::clone).ok()
    }
}
