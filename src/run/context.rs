//! What an instance of the consumer under test gets from the run, and how its future ends.

use std::fmt::Display;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaResult;

use super::backend::Backend;
use super::base_client::{BaseProducer, ThreadedProducer};
use super::client::{Consumer, Producer};
use super::core::{Interception, Run};
use super::freeze::FreezeGate;
use crate::client::{DeliveryHandler, RebalanceHandler};
use crate::history::{Incarnation, InstanceId};
use crate::run::effect::EffectSink;
use crate::run::store::{self, DurableStore};

/// How a consumer's future ended: `()` or a `Result` whose error is displayed in the history.
#[diagnostic::on_unimplemented(
    message = "a consumer's future must end with `()` or a `Result`, not `{Self}`",
    label = "this consumer's future ends with `{Self}`",
    note = "end the consumer with `()`, or with a `Result<_, E>` whose error `E` implements `Display` (the report shows it)"
)]
pub trait InstanceExit {
    /// The error to report, if the consumer returned one.
    fn exit_error(self) -> Option<String>;
}

impl InstanceExit for () {
    fn exit_error(self) -> Option<String> {
        None
    }
}

impl<T, E: Display> InstanceExit for Result<T, E> {
    fn exit_error(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// What an instance's factory gets: the means to create its clients, effect sinks and
/// durable store. Everything created from it belongs to this incarnation and dies with it.
#[derive(Clone)]
pub struct InstanceContext {
    pub(crate) run: Arc<Run>,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) incarnation: Incarnation,
    pub(crate) store_uri: Rc<str>,
}

impl std::fmt::Debug for InstanceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceContext")
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

impl InstanceContext {
    /// The instance slot (stable across restarts).
    pub fn instance(&self) -> InstanceId {
        self.incarnation.instance
    }

    /// This life of the instance.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// Creates a consumer from the same `ClientConfig` production uses. Settings that change
    /// delivery semantics are honoured; unmodelled ones are refused with a clear error. On a
    /// real broker ([`Simulation::run_on`](crate::Simulation::run_on)) it is librdkafka's consumer, pointed at the broker
    /// (`bootstrap.servers` is replaced, `session.timeout.ms` capped at 2 s).
    pub fn create_consumer(&self, config: &ClientConfig) -> KafkaResult<Consumer> {
        self.consumer(config, None)
    }

    fn consumer(
        &self,
        config: &ClientConfig,
        handler: Option<Arc<dyn RebalanceHandler>>,
    ) -> KafkaResult<Consumer> {
        self.backend
            .create_consumer(self.incarnation, config, handler)
            .map(Consumer::new)
    }

    /// Creates a consumer whose rebalance and commit callbacks go to `handler`.
    pub fn create_consumer_with_handler<H: RebalanceHandler>(
        &self,
        config: &ClientConfig,
        handler: H,
    ) -> KafkaResult<Consumer> {
        self.consumer(config, Some(Arc::new(handler)))
    }

    /// Creates a producer.
    pub fn create_producer(&self, config: &ClientConfig) -> KafkaResult<Producer> {
        self.backend
            .create_producer(self.incarnation, config)
            .map(Producer::new)
    }

    /// Creates a low-level producer, as rdkafka's `BaseProducer`: `send` enqueues and
    /// returns at once, delivery reports reach `handler` from `poll` and `flush`.
    pub fn create_base_producer<H: DeliveryHandler>(
        &self,
        config: &ClientConfig,
        handler: H,
    ) -> KafkaResult<BaseProducer<H>> {
        self.backend
            .create_base_producer(self.incarnation, config)
            .map(|client| BaseProducer::new(client, handler))
    }

    /// Creates a low-level producer whose delivery reports reach `handler` from a background
    /// task of this instance, as rdkafka's `ThreadedProducer` serves them from its thread.
    pub fn create_threaded_producer<H: DeliveryHandler>(
        &self,
        config: &ClientConfig,
        handler: H,
    ) -> KafkaResult<ThreadedProducer<H>> {
        let base = self.create_base_producer(config, handler)?;
        Ok(ThreadedProducer::new(base, self))
    }

    /// An effect sink named `name` (`"email"`, `"payment"`).
    pub fn effect_sink(&self, name: &str) -> EffectSink {
        EffectSink::new(self.interception(), name)
    }

    /// A new connection to the scenario's durable database, which outlives crashes.
    pub fn durable_store(&self) -> rusqlite::Result<DurableStore> {
        let conn = store::open_scenario_db(&self.store_uri)?;
        Ok(DurableStore::intercepted(conn, self.interception()))
    }

    /// Spawns a task of this instance (on the current thread, as `tokio::task::spawn_local`)
    /// that lives and freezes with it: while the process is frozen the task does not run at
    /// all (its timers fire at the thaw, as after SIGCONT), and once the incarnation is gone
    /// (crashed, exited) the task is dropped the next time it wakes. Spawn the instance's
    /// background tasks (tickers, flushers, workers) this way: a task spawned with plain
    /// `tokio::spawn` keeps running through a freeze until its next asynchronous call into
    /// the kit (recv, send, an effect), which waits for the thaw, and its synchronous calls
    /// (commits, stores) go through meanwhile. Inside the task
    /// [`InstanceContext::current`] is this context.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let gate = FreezeGate::new(self.run.clone(), self.incarnation, future);
        tokio::task::spawn_local(super::current::scope(self.clone(), gate))
    }

    fn interception(&self) -> Interception {
        Interception {
            run: self.run.clone(),
            backend: self.backend.clone(),
            incarnation: self.incarnation,
        }
    }
}
