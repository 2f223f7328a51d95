//! The run's own record and the one interception step.
//!
//! A [`Run`] is shared by the driver, every client handle, effect sink and durable store of
//! one run, whatever the backend: the instance table (who is alive, crashed, frozen), the fault
//! plan, the one seeded RNG, the history, the idempotency keys of effect sinks. Every client
//! call, effect and store commit goes through [`RunCore::intercept_call`] before it takes effect
//! and [`RunCore::complete_call`] after: the instance must be alive, the call is counted
//! against the fault plan, the faults that fire are recorded, a crash before or after the call
//! is carried out there.
//!
//! What a fault or an instance's end means for the cluster (its clients vanish, its group
//! members stop heartbeating, the broker goes down) is the backend's to carry out: the run
//! queues it as a [`RunEvent`] and the backend reacts before anything else happens
//! ([`Backend::react`](super::backend::Backend::react)).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::error::KafkaError;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::backend::Backend;
use super::fault_plan::{self, FaultPlan, Injection};
use super::rng::SimRng;
use super::store_effects::StoreEffects;
use crate::history::{
    History, HistoryEntry, HistoryEvent, Incarnation, InstanceId, Operation, RecordPosition,
};

/// The panic payload a crash unwinds the instance's task with. The driver recognises it; it
/// never reaches the user.
pub(crate) struct CrashSignal;

/// Unwinds the current task as a crashed process. Uses `resume_unwind`, so no panic hook
/// prints anything.
pub(crate) fn unwind_crash() -> ! {
    std::panic::resume_unwind(Box::new(CrashSignal))
}

/// Unwinds as a crash, unless the thread is already unwinding (a handle used from a
/// destructor during a crash must not abort the process with a double panic).
pub(crate) fn crashed<T>(fallback: T) -> T {
    if std::thread::panicking() {
        fallback
    } else {
        unwind_crash()
    }
}

/// The error a handle of a crashed instance returns while its task is already unwinding.
pub(crate) fn dead_error() -> KafkaError {
    KafkaError::Canceled
}

/// The instance crashed during the call (or was dead already): unwind.
#[derive(Debug)]
pub(crate) struct Crashed;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InstanceStatus {
    NotStarted,
    Running,
    Crashed,
    Panicked,
    Failed,
    Stopped,
}

/// One instance slot: its current incarnation and how it is doing.
#[derive(Debug)]
pub(crate) struct InstanceState {
    pub incarnation: u32,
    pub status: InstanceStatus,
    pub died_at: Option<Instant>,
    pub frozen_until: Option<Instant>,
    pub current_record: Option<RecordPosition>,
    pub root: Option<AbortHandle>,
    pub restarts: u32,
}

/// What the run did that the backend must carry out in the cluster, at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunEvent {
    /// The incarnation is gone (crashed, or its future ended): its clients vanish without a
    /// word and its group members stop heartbeating.
    ClientsGone(Incarnation),
    /// The whole process froze: its group members stop heartbeating until it thaws.
    Frozen(Incarnation),
    /// The broker restarts and is down for this long.
    BrokerRestart(Duration),
}

/// The run's record. Reached through [`Run::lock`].
pub(crate) struct RunCore {
    /// The one source of randomness of the run.
    pub rng: SimRng,
    pub origin: Instant,
    /// Network latency bounds for asynchronous calls (recv, send, effects).
    pub latency: (Duration, Duration),
    pub instances: BTreeMap<InstanceId, InstanceState>,
    pub faults: FaultPlan,
    /// How many times each interception point was reached.
    pub operations: BTreeMap<Operation, u64>,
    pub history: History,
    pub last_activity: Instant,
    /// Where the records of each named event landed ([`InputRecord::event_id`](super::InputRecord::event_id)).
    event_records: BTreeMap<String, Vec<RecordPosition>>,
    /// Idempotency keys seen by effect sinks, per sink name.
    pub idempotency_keys: BTreeSet<(String, String)>,
    /// The store effects whose rows each durable-store commit names in the history.
    pub store_effects: StoreEffects,
    pub finished: bool,
    changed: bool,
    /// What the backend has yet to carry out.
    events: Vec<RunEvent>,
    /// Root tasks of crashed instances, aborted once the lock is released.
    pending_aborts: Vec<AbortHandle>,
}

impl RunCore {
    pub(crate) fn new(seed: u64, latency: (Duration, Duration), faults: FaultPlan) -> Self {
        let now = Instant::now();
        RunCore {
            rng: SimRng::new(seed),
            origin: now,
            latency,
            instances: BTreeMap::new(),
            faults,
            operations: BTreeMap::new(),
            history: History::default(),
            last_activity: now,
            event_records: BTreeMap::new(),
            idempotency_keys: BTreeSet::new(),
            store_effects: StoreEffects::default(),
            finished: false,
            changed: false,
            events: Vec::new(),
            pending_aborts: Vec::new(),
        }
    }

    /// Virtual time since the run started.
    pub(crate) fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    pub(crate) fn record(&mut self, incarnation: Option<Incarnation>, event: HistoryEvent) {
        // One read of the clock (tokio's paused clock is not free).
        self.record_at(Instant::now(), incarnation, event);
    }

    /// [`record`](Self::record) at `now`, the virtual clock's reading of a step that records
    /// several events.
    pub(crate) fn record_at(
        &mut self,
        now: Instant,
        incarnation: Option<Incarnation>,
        event: HistoryEvent,
    ) {
        self.history.push(HistoryEntry {
            at: now.saturating_duration_since(self.origin),
            incarnation,
            event,
        });
        self.last_activity = now;
        self.changed = true;
    }

    /// Marks the state as changed so that waiting tasks re-check it.
    pub(crate) fn touch(&mut self) {
        self.changed = true;
    }

    /// A random network latency, in whole milliseconds (tokio's timer resolution).
    pub(crate) fn latency(&mut self) -> Duration {
        let (lo, hi) = self.latency;
        let millis = self
            .rng
            .between(lo.as_millis() as u64, hi.as_millis() as u64);
        Duration::from_millis(millis)
    }

    /// What the backend has yet to carry out, in order.
    pub(crate) fn take_events(&mut self) -> Vec<RunEvent> {
        std::mem::take(&mut self.events)
    }

    // ----- instances -----

    pub(crate) fn alive(&self, incarnation: Incarnation) -> bool {
        self.instances.get(&incarnation.instance).is_some_and(|i| {
            i.incarnation == incarnation.number && i.status == InstanceStatus::Running
        }) && !self.finished
    }

    pub(crate) fn frozen_until(&self, incarnation: Incarnation) -> Option<Instant> {
        // The clock is read only for a frozen instance (every poll of an instance asks).
        let until = self
            .instances
            .get(&incarnation.instance)
            .and_then(|i| i.frozen_until)?;
        (until > Instant::now()).then_some(until)
    }

    /// [`frozen_until`](Self::frozen_until) as of `now`.
    pub(crate) fn frozen_until_at(
        &self,
        incarnation: Incarnation,
        now: Instant,
    ) -> Option<Instant> {
        self.instances
            .get(&incarnation.instance)
            .and_then(|i| i.frozen_until)
            .filter(|t| *t > now)
    }

    /// The instances frozen at `now`.
    pub(crate) fn frozen_at(&self, now: Instant) -> Vec<InstanceId> {
        self.instances
            .iter()
            .filter(|(_, i)| i.frozen_until.is_some_and(|t| t > now))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Thaws the processes whose freeze is over by `now`; returns their incarnations.
    pub(crate) fn thaw(&mut self, now: Instant) -> Vec<Incarnation> {
        let mut thawed = Vec::new();
        for (id, state) in &mut self.instances {
            if state.frozen_until.is_some_and(|t| t <= now) {
                state.frozen_until = None;
                thawed.push(Incarnation {
                    instance: *id,
                    number: state.incarnation,
                });
            }
        }
        thawed
    }

    /// When the next frozen process thaws.
    pub(crate) fn next_thaw(&self) -> Option<Instant> {
        self.instances.values().filter_map(|s| s.frozen_until).min()
    }

    /// The incarnations running now and not frozen.
    pub(crate) fn running_unfrozen(&self) -> impl Iterator<Item = Incarnation> + '_ {
        self.instances
            .iter()
            .filter(|(_, i)| i.status == InstanceStatus::Running && i.frozen_until.is_none())
            .map(|(id, i)| Incarnation {
                instance: *id,
                number: i.incarnation,
            })
    }

    /// The record the incarnation received last (the one it is handling).
    pub(crate) fn current_record(&self, incarnation: Incarnation) -> Option<RecordPosition> {
        self.instances
            .get(&incarnation.instance)
            .and_then(|i| i.current_record.clone())
    }

    /// Notes that a record of `event_id` landed at `position`.
    pub(crate) fn event_landed(&mut self, event_id: String, position: &RecordPosition) {
        self.event_records
            .entry(event_id)
            .or_default()
            .push(position.clone());
    }

    /// The record an effect for `event_id` belongs to: the record of that event the
    /// incarnation is handling, else the event's first record; for an event no input record
    /// named, the record the incarnation received last.
    pub(crate) fn record_of_event(
        &self,
        incarnation: Incarnation,
        event_id: &str,
    ) -> Option<RecordPosition> {
        let current = self.current_record(incarnation);
        match self
            .event_records
            .get(event_id)
            .and_then(|c| c.first().map(|f| (c, f)))
        {
            None => current,
            Some((copies, _)) if current.as_ref().is_some_and(|c| copies.contains(c)) => current,
            Some((_, first)) => Some(first.clone()),
        }
    }

    /// Notes the record the incarnation was just handed.
    pub(crate) fn set_current_record(&mut self, incarnation: Incarnation, record: &RecordPosition) {
        if let Some(state) = self.instances.get_mut(&incarnation.instance) {
            match &mut state.current_record {
                // The same topic as a rule: reuse the name's allocation.
                Some(current) => current.clone_from(record),
                None => state.current_record = Some(record.clone()),
            }
        }
    }

    /// The instance dies on the spot: recorded, its tasks aborted, its clients gone
    /// ([`RunEvent::ClientsGone`]). Returns false when it was not running.
    pub(crate) fn crash(&mut self, incarnation: Incarnation, cause: String) -> bool {
        if !self.alive(incarnation) {
            return false;
        }
        let state = self
            .instances
            .get_mut(&incarnation.instance)
            .expect("alive");
        state.status = InstanceStatus::Crashed;
        state.died_at = Some(Instant::now());
        state.frozen_until = None;
        if let Some(root) = state.root.take() {
            self.pending_aborts.push(root);
        }
        self.record(Some(incarnation), HistoryEvent::InstanceCrashed { cause });
        self.clients_gone(incarnation);
        true
    }

    /// The incarnation's clients are gone (it crashed or its future ended): the backend
    /// drops them as a killed process leaves them ([`RunEvent::ClientsGone`]).
    pub(crate) fn clients_gone(&mut self, incarnation: Incarnation) {
        self.events.push(RunEvent::ClientsGone(incarnation));
        self.touch();
    }

    /// Freezes the whole process for `duration`: nothing of it runs; its members stop
    /// heartbeating ([`RunEvent::Frozen`]). A freeze of a process frozen already lasts until
    /// the later of the two thaws.
    pub(crate) fn freeze(&mut self, incarnation: Incarnation, duration: Duration) {
        if let Some(state) = self.instances.get_mut(&incarnation.instance) {
            let until = Instant::now() + duration;
            state.frozen_until = Some(state.frozen_until.map_or(until, |t| t.max(until)));
        }
        self.events.push(RunEvent::Frozen(incarnation));
        self.touch();
    }

    // ----- the interception step -----

    /// Counts one call of `operation` against the fault plan, records the faults that fire
    /// and folds them into an [`Injection`]; a broker restart among them is queued for the
    /// backend.
    pub(crate) fn intercept(
        &mut self,
        operation: Operation,
        incarnation: Incarnation,
        record: Option<&RecordPosition>,
    ) -> Injection {
        *self.operations.entry(operation).or_default() += 1;
        let fired = self
            .faults
            .intercept(operation, incarnation.instance, record);
        for fault in &fired {
            self.record(
                Some(incarnation),
                HistoryEvent::FaultInjected {
                    operation,
                    fault: *fault,
                    record: record.cloned(),
                },
            );
        }
        let injection = fault_plan::injection(&fired);
        if let Some(down) = injection.broker_restart {
            self.events.push(RunEvent::BrokerRestart(down));
            self.touch();
        }
        injection
    }

    /// The interception step every client call, effect and store commit goes through, before
    /// the call: the incarnation must be alive; the call is counted against the fault plan and
    /// the faults that fire are recorded ([`intercept`](Self::intercept)); a crash before the
    /// call is carried out here, its cause naming the call (`what`). `Err(Crashed)`: the
    /// incarnation is dead or crashed right here (the caller lets the backend react, publishes
    /// and unwinds). After the call, [`complete_call`](Self::complete_call) carries out a
    /// crash after it.
    pub(crate) fn intercept_call(
        &mut self,
        operation: Operation,
        incarnation: Incarnation,
        record: Option<&RecordPosition>,
        what: &dyn fmt::Display,
    ) -> Result<Injection, Crashed> {
        if !self.alive(incarnation) {
            return Err(Crashed);
        }
        let injection = self.intercept(operation, incarnation, record);
        if injection.crash_before {
            self.crash(incarnation, format!("fault: crash before {what}"));
            return Err(Crashed);
        }
        Ok(injection)
    }

    /// The end of the interception step, once the call took effect: the crash after it, if
    /// one fired (`Err(Crashed)`: the caller lets the backend react, publishes and unwinds).
    pub(crate) fn complete_call(
        &mut self,
        injection: &Injection,
        incarnation: Incarnation,
        what: &dyn fmt::Display,
    ) -> Result<(), Crashed> {
        if injection.crash_after {
            self.crash(incarnation, format!("fault: crash after {what}"));
            return Err(Crashed);
        }
        Ok(())
    }
}

/// What an interception point the run itself serves (an effect sink, a durable store) holds:
/// the run, the backend that must react to what the step did, and the incarnation.
#[derive(Clone)]
pub(crate) struct Interception {
    pub run: Arc<Run>,
    pub backend: Arc<dyn Backend>,
    pub incarnation: Incarnation,
}

impl Interception {
    /// Lets the backend carry out what the run did, then publishes the run's changes.
    pub(crate) fn react_and_publish(&self) {
        self.backend.react();
        self.run.publish();
    }

    /// Whether the incarnation is alive.
    pub(crate) fn alive(&self) -> bool {
        self.run.alive(self.incarnation)
    }
}

/// One run's record and the signal that it changed, shared by the driver, the backend and
/// every handle an instance holds.
pub(crate) struct Run {
    core: Mutex<RunCore>,
    changed: Notify,
}

impl Run {
    pub(crate) fn new(core: RunCore) -> Arc<Self> {
        Arc::new(Run {
            core: Mutex::new(core),
            changed: Notify::new(),
        })
    }

    /// The run's record. Hold the guard briefly: never across a call that may lock it again.
    pub(crate) fn lock(&self) -> MutexGuard<'_, RunCore> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the incarnation is alive (a shorthand for a brief lock).
    pub(crate) fn alive(&self, incarnation: Incarnation) -> bool {
        self.lock().alive(incarnation)
    }

    /// Records an event of the incarnation (a shorthand for a brief lock).
    pub(crate) fn record(&self, incarnation: Option<Incarnation>, event: HistoryEvent) {
        self.lock().record(incarnation, event);
    }

    /// Wakes every task waiting for the run to change, if it did, and aborts the root tasks
    /// of crashed instances. Call after releasing every lock (and after the backend reacted to
    /// the run's events).
    pub(crate) fn publish(&self) {
        let (changed, aborts) = {
            let mut core = self.lock();
            (
                std::mem::take(&mut core.changed),
                std::mem::take(&mut core.pending_aborts),
            )
        };
        for root in aborts {
            root.abort();
        }
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// Waits until the run changes. Call right after [`publish`](Self::publish), with no
    /// await in between, so no change can be missed.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await
    }
}
