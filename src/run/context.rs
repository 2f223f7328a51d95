//! What an instance of the consumer under test gets from the run, and how its future ends.

use std::fmt::Display;
use std::rc::Rc;
use std::sync::Arc;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaResult;

use crate::broker::BrokerSession;
use crate::client::RebalanceHandler;
use crate::effect::EffectSink;
use crate::history::{Incarnation, InstanceId};
use crate::sim::{Consumer, Producer, Shared};
use crate::store::{self, DurableStore};

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
    pub(crate) shared: Arc<Shared>,
    pub(crate) incarnation: Incarnation,
    pub(crate) store_uri: Rc<str>,
    pub(crate) broker: Option<Arc<BrokerSession>>,
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
        match &self.broker {
            Some(session) => Consumer::on_broker(
                self.shared.clone(),
                self.incarnation,
                session.clone(),
                config,
                handler,
            ),
            None => Consumer::create(self.shared.clone(), self.incarnation, config, handler),
        }
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
        match &self.broker {
            Some(session) => {
                Producer::on_broker(self.shared.clone(), self.incarnation, session, config)
            }
            None => Producer::create(self.shared.clone(), self.incarnation, config),
        }
    }

    /// An effect sink named `name` (`"email"`, `"payment"`).
    pub fn effect_sink(&self, name: &str) -> EffectSink {
        EffectSink::new(self.shared.clone(), self.incarnation, name)
    }

    /// A new connection to the scenario's durable database, which outlives crashes.
    pub fn durable_store(&self) -> rusqlite::Result<DurableStore> {
        let conn = store::open_scenario_db(&self.store_uri)?;
        Ok(DurableStore::intercepted(
            conn,
            self.shared.clone(),
            self.incarnation,
        ))
    }
}
