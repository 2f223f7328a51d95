//! Running a [`Simulation`] on a backend: the simulator, or librdkafka against a real broker.
//!
//! The one place that knows the backends: it picks one, hands it to the run's driver, and
//! turns what the run recorded into an [`Outcome`].

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::broker::self_check::Capability;
use crate::broker::{BrokerBackend, BrokerError, BrokerProvider, RunningBroker};
use crate::error::Error;
use crate::history::Operation;
use crate::run::backend::Backend;
use crate::run::core::{Run, RunCore};
use crate::run::driver::Driver;
use crate::run::fault_plan::FaultPlan;
use crate::run::{InstanceContext, InstanceExit, Simulation};

mod outcome;

use crate::run::store;
use crate::run::store_effects::StoreEffects;
use crate::sim::{SimBackend, SimSettings};
pub use outcome::Outcome;

static SCENARIO_DB: AtomicU64 = AtomicU64::new(0);

impl Simulation {
    /// Runs the instances to the end and returns what happened.
    ///
    /// `factory` starts one instance: it gets an [`InstanceContext`] and returns the consumer's
    /// future (typically its poll loop). It is called again for each restart.
    pub fn run<F, Fut>(&self, factory: F) -> Result<Outcome, Error>
    where
        F: Fn(InstanceContext) -> Fut + 'static,
        Fut: Future + 'static,
        Fut::Output: InstanceExit,
    {
        self.run_with(None, factory)
    }

    /// Runs the same instances, input and faults on a real broker instead of the simulator,
    /// in real time: a fresh broker from `provider` with the simulation's topics, the input
    /// written before the instances start, the consumers on librdkafka. Crashes destroy the
    /// instance's librdkafka handles without closing them (no LeaveGroup, no final commit).
    /// The run ends when every running instance waits in `recv` and every group has
    /// committed up to the end of the partitions it subscribed to (read with the admin API),
    /// with nothing happening for a second; at the time limit (the simulation's, at most 60 s),
    /// the lag says which partitions were behind and by how much.
    ///
    /// A [`Fault::BrokerRestart`](crate::Fault::BrokerRestart) takes the broker down when its
    /// anchor is reached and brings it back after the outage (see [`crate::broker`]); a
    /// restart that could not be carried out is an error, not a pass.
    ///
    /// Not possible on a real broker (a [`BrokerError::Unsupported`] error): input produced
    /// after the start, [`Fault::Freeze`](crate::Fault::Freeze) (librdkafka
    /// keeps heartbeating from its own threads), faults on
    /// [`Operation::AutoCommit`] (librdkafka commits on its own), a
    /// [`Fault::Stall`](crate::Fault::Stall) longer than 20 s (it takes its length in wall
    /// time), broker restarts on an external cluster or longer than 500 ms.
    pub fn run_on<F, Fut>(&self, provider: &BrokerProvider, factory: F) -> Result<Outcome, Error>
    where
        F: Fn(InstanceContext) -> Fut + 'static,
        Fut: Future + 'static,
        Fut::Output: InstanceExit,
    {
        self.check_broker_support(provider)?;
        let mut capped = self.clone();
        capped.config.time_limit = capped.config.time_limit.min(BROKER_TIME_LIMIT);
        capped.run_with(Some(provider), factory)
    }

    fn check_broker_support(&self, provider: &BrokerProvider) -> Result<(), BrokerError> {
        let unsupported = |why: String| Err(BrokerError::Unsupported(why));
        if let Some((at, _)) = self.config.input.iter().find(|(at, _)| !at.is_zero()) {
            return unsupported(format!(
                "input produced at {at:?}: all input is written before the start"
            ));
        }
        for rule in self.config.faults.rules() {
            if matches!(rule.fault, crate::history::Fault::Freeze(_)) {
                return unsupported(format!(
                    "{} on {}: librdkafka keeps heartbeating while the application is frozen",
                    rule.fault,
                    rule.anchor.operation()
                ));
            }
            if rule.anchor.operation() == Operation::AutoCommit {
                return unsupported(format!(
                    "{} on auto-commit: librdkafka commits on its own threads, out of the kit's reach",
                    rule.fault
                ));
            }
            if let crate::history::Fault::Stall(delay) = rule.fault {
                if delay > MAX_BROKER_STALL {
                    return unsupported(format!(
                        "{} on {}: on a real broker a stall takes its length in wall time, and \
                         runs there may last at most {}; stalls of up to {} run there",
                        rule.fault,
                        rule.anchor.operation(),
                        crate::history::human_duration(BROKER_TIME_LIMIT),
                        crate::history::human_duration(MAX_BROKER_STALL),
                    ));
                }
            }
            if let crate::history::Fault::BrokerRestart(down) = rule.fault {
                if matches!(provider, BrokerProvider::External { .. }) {
                    return unsupported(format!(
                        "{} on {}: the kit restarts only the brokers it started (the mock \
                         cluster, a container), not a cluster it was given",
                        rule.fault,
                        rule.anchor.operation()
                    ));
                }
                if down > MAX_BROKER_OUTAGE {
                    return unsupported(format!(
                        "{} on {}: on a real broker an outage may last at most {} (with \
                         the {} session the kit gives consumers in runs with restarts there, \
                         a longer one and librdkafka's reconnect can cost the sessions on a \
                         loaded machine, where the simulator's outage of the same length \
                         would not)",
                        rule.fault,
                        rule.anchor.operation(),
                        crate::history::human_duration(MAX_BROKER_OUTAGE),
                        crate::history::human_duration(crate::broker::RESTART_SESSION_TIMEOUT),
                    ));
                }
            }
        }
        Ok(())
    }

    fn run_with<F, Fut>(
        &self,
        provider: Option<&BrokerProvider>,
        factory: F,
    ) -> Result<Outcome, Error>
    where
        F: Fn(InstanceContext) -> Fut + 'static,
        Fut: Future + 'static,
        Fut::Output: InstanceExit,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::NestedRuntime);
        }
        // A real broker runs in real time; the simulator on a paused, virtual clock.
        let mut runtime = tokio::runtime::Builder::new_current_thread();
        runtime.enable_time().start_paused(provider.is_none());
        // tokio draws the branch an unbiased `select!` polls first from the runtime's RNG,
        // which it seeds at random unless told otherwise, and only its unstable API can: with
        // `--cfg tokio_unstable` the run's seed decides it, so that such a `select!` replays.
        #[cfg(tokio_unstable)]
        runtime.rng_seed(tokio::runtime::RngSeed::from_bytes(
            &self.config.seed.to_le_bytes(),
        ));
        let runtime = runtime.build().map_err(Error::Runtime)?;
        let self_check = provider.map(BrokerProvider::self_check).transpose()?;
        let broker = provider.map(|p| p.start(&self.config.topics)).transpose()?;
        let bootstrap = broker.as_ref().map(|b| b.bootstrap().to_string());
        let uri: Rc<str> = format!(
            "file:/effectively-once-{}-{}?vfs=memdb",
            std::process::id(),
            SCENARIO_DB.fetch_add(1, Ordering::Relaxed)
        )
        .into();
        let store = store::open_scenario_db(&uri)?;
        let local = tokio::task::LocalSet::new();
        let config = self.config.clone();
        let switch = broker.as_ref().and_then(RunningBroker::switch);
        // A broker without KIP-345 would play a static member's restart as a new member.
        let static_members = self_check
            .as_ref()
            .and_then(|found| found.shortfall(Capability::KeepsStaticMembers));
        let restarts = switch.clone();
        let (run, backend, result) = local.block_on(&runtime, async move {
            let mut core =
                RunCore::new(config.seed, config.latency, FaultPlan::new(&config.faults));
            core.store_effects = StoreEffects::new(config.store_effects.clone());
            let run = Run::new(core);
            let backend: Arc<dyn Backend> = match bootstrap {
                None => Arc::new(SimBackend::new(
                    run.clone(),
                    SimSettings {
                        session_timeout_bounds: config.session_timeout_bounds,
                    },
                    &config.topics,
                )),
                Some(bootstrap) => Arc::new(BrokerBackend::new(
                    run.clone(),
                    bootstrap,
                    switch,
                    static_members,
                    broker_session_cap(&config.faults),
                )),
            };
            let driver = Driver {
                run: run.clone(),
                backend: backend.clone(),
                config,
                factory: Rc::new(factory),
                store_uri: uri,
            };
            let result = driver.run().await;
            (run, backend, result)
        });
        // Lingering tasks of the run are dropped with the local set; their handles see the
        // run finished and do nothing.
        drop(local);
        drop(runtime);
        backend.finish();
        result?;
        // A restart that did not happen must not pass for one that did.
        if let Some(failures) = restarts.map(|s| s.failures()).filter(|f| !f.is_empty()) {
            return Err(BrokerError::Docker(format!(
                "restarting the broker: {}",
                failures.join("; ")
            ))
            .into());
        }
        let cluster = backend.snapshot(&self.config.topics)?;
        drop(backend);
        drop(broker);
        // The run is over: its record moves into the outcome.
        let mut core = run.lock();
        Ok(Outcome {
            history: std::mem::take(&mut core.history),
            cluster,
            self_check,
            unfired: core.faults.unfired(),
            operations: std::mem::take(&mut core.operations),
            store,
            inputs: core.faults.take_inputs(),
        })
    }
}

/// The longest a real-broker run lasts (its session timeouts are capped at 2 s, 6 s with
/// broker restarts, so a group that has not caught up by then is wedged).
const BROKER_TIME_LIMIT: Duration = Duration::from_secs(60);
/// The longest broker restart a real-broker run takes on: measured on the mock cluster with
/// a 2 s session (and librdkafka's default reconnect backoff), a 500 ms outage kept every
/// session on an idle machine and a 1.5 s one lost them; runs also cap the backoff
/// (`MAX_RECONNECT_BACKOFF`) and the fetch wait (`MAX_FETCH_WAIT`), and a run with restarts
/// gives its consumers a 6 s session (`RESTART_SESSION_TIMEOUT`): 500 ms down against 6 s
/// leaves 4.4 s of slack once librdkafka's reconnect and coordinator lookup are counted.
pub(crate) const MAX_BROKER_OUTAGE: Duration = Duration::from_millis(500);

/// The longest session a run's consumers get on a real broker: 2 s, so that a crash costs
/// seconds, or 6 s in a run with broker restarts, so that the outage and librdkafka's way
/// back (reconnect, coordinator lookup) do not cost the session on a loaded machine.
fn broker_session_cap(faults: &crate::scenario::FaultSchedule) -> Duration {
    let restarts = faults
        .rules()
        .iter()
        .any(|rule| matches!(rule.fault, crate::history::Fault::BrokerRestart(_)));
    if restarts {
        crate::broker::RESTART_SESSION_TIMEOUT
    } else {
        crate::broker::MAX_SESSION_TIMEOUT
    }
}
/// The longest stall a run on a real broker plays: it takes its length in wall time, within
/// [`BROKER_TIME_LIMIT`] (the 6-minute effect of a `max.poll.interval.ms` breach and the
/// 70-second send of a transaction timeout do not fit).
pub(crate) const MAX_BROKER_STALL: Duration = Duration::from_secs(20);
