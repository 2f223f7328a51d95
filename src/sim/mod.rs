//! The simulated Kafka cluster: deterministic, in-process, driven by a virtual clock.
//!
//! One [`World`] holds the whole cluster (topics, groups, clients) and the run's history, behind
//! a mutex shared by every client handle. All of it runs on one current-thread tokio runtime
//! whose clock is paused: time only moves when every task is waiting, straight to the next
//! timer, so timeouts of minutes cost nothing and nothing sleeps in real time.

pub(crate) mod assignor;
mod commit;
pub(crate) mod config;
mod consumer;
pub(crate) mod group;
pub(crate) mod log;
pub(crate) mod partitioner;
mod poll;
mod producer;
pub(crate) mod rng;
mod timers;
pub(crate) mod txn;
pub(crate) mod txn_error;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

pub use consumer::Consumer;
pub(crate) use consumer::ConsumerState;
pub use producer::Producer;
pub(crate) use producer::ProducerState;

use crate::broker::{BrokerSwitch, NativeClient};
use crate::history::Operation;
use crate::history::{ClusterSnapshot, RecordPosition, TopicPartition};
use crate::history::{
    CommitKind, History, HistoryEntry, HistoryEvent, Incarnation, InstanceId, Lag, MemberRemoval,
};
use crate::run::fault_plan::{self as fault, FaultPlan, Injection};
use group::{Events, Group, GroupState};
use log::{RecordKind, StoredRecord, Topic};
use rng::SimRng;

/// A client (consumer or producer) created by an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ClientId(pub u64);

/// The panic payload a simulated crash unwinds the instance's task with. The harness
/// recognises it; it never reaches the user.
pub(crate) struct CrashSignal;

/// Unwinds the current task as a crashed process. Uses `resume_unwind`, so no panic hook
/// prints anything.
pub(crate) fn unwind_crash() -> ! {
    std::panic::resume_unwind(Box::new(CrashSignal))
}

/// Cluster-wide settings of a run.
#[derive(Clone, Debug)]
pub(crate) struct SimSettings {
    /// Network latency bounds for asynchronous calls (recv, send, effects).
    pub latency: (Duration, Duration),
    /// The broker's `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub session_timeout_bounds: (Duration, Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InstanceStatus {
    NotStarted,
    Running,
    Crashed,
    Panicked,
    Failed,
    Stopped,
}

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

/// An asynchronous commit on its way to the coordinator.
#[derive(Clone, Debug)]
pub(crate) struct PendingCommit {
    pub due: Instant,
    pub client: ClientId,
    pub incarnation: Incarnation,
    pub group: String,
    pub member: Option<String>,
    pub generation: i32,
    pub offsets: Vec<(TopicPartition, i64)>,
    pub ambiguous: bool,
}

/// The whole simulated cluster and the run's history.
pub(crate) struct World {
    pub rng: SimRng,
    pub origin: Instant,
    pub settings: SimSettings,
    pub topics: BTreeMap<String, Topic>,
    pub groups: BTreeMap<String, Group>,
    pub consumers: BTreeMap<ClientId, ConsumerState>,
    pub producers: BTreeMap<ClientId, ProducerState>,
    pub instances: BTreeMap<InstanceId, InstanceState>,
    pub faults: FaultPlan,
    /// How many times each interception point was reached.
    pub operations: BTreeMap<Operation, u64>,
    pub history: History,
    pub last_activity: Instant,
    pub idempotency_keys: BTreeSet<(String, String)>,
    pub async_commits: Vec<PendingCommit>,
    pub finished: bool,
    /// The transaction coordinator's state, per `transactional.id`.
    pub transactions: BTreeMap<String, txn::TxnRecord>,
    /// While the broker restarts: when it is back.
    pub broker_down_until: Option<Instant>,
    /// On a real broker: takes it down and brings it back for a restart fault.
    pub broker_switch: Option<BrokerSwitch>,
    changed: bool,
    /// Root tasks of crashed instances, aborted once the lock is released.
    pending_aborts: Vec<AbortHandle>,
    /// On a real broker: the librdkafka handles of each incarnation's clients.
    natives: Vec<(Incarnation, NativeClient)>,
    /// Handles of crashed incarnations, destroyed once the lock is released.
    pending_kills: Vec<NativeClient>,
    next_client: u64,
    next_member: u64,
    next_producer_id: i64,
}

impl World {
    pub(crate) fn new(
        seed: u64,
        settings: SimSettings,
        topics: &[(String, i32)],
        faults: FaultPlan,
    ) -> Self {
        let now = Instant::now();
        World {
            rng: SimRng::new(seed),
            origin: now,
            settings,
            topics: topics
                .iter()
                .map(|(name, n)| (name.clone(), Topic::new(*n)))
                .collect(),
            groups: BTreeMap::new(),
            consumers: BTreeMap::new(),
            producers: BTreeMap::new(),
            instances: BTreeMap::new(),
            faults,
            operations: BTreeMap::new(),
            history: History::default(),
            last_activity: now,
            idempotency_keys: BTreeSet::new(),
            async_commits: Vec::new(),
            finished: false,
            transactions: BTreeMap::new(),
            broker_down_until: None,
            broker_switch: None,
            changed: false,
            pending_aborts: Vec::new(),
            natives: Vec::new(),
            pending_kills: Vec::new(),
            next_client: 0,
            next_member: 0,
            next_producer_id: 1000,
        }
    }

    /// Virtual time since the run started.
    pub(crate) fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    pub(crate) fn record(&mut self, incarnation: Option<Incarnation>, event: HistoryEvent) {
        let at = self.elapsed();
        self.history.push(HistoryEntry {
            at,
            incarnation,
            event,
        });
        self.last_activity = Instant::now();
        self.changed = true;
    }

    pub(crate) fn record_all(&mut self, events: Events) {
        for (incarnation, event) in events {
            self.record(incarnation, event);
        }
    }

    /// Marks the state as changed so that waiting tasks re-check it.
    pub(crate) fn touch(&mut self) {
        self.changed = true;
    }

    fn take_changed(&mut self) -> (bool, Vec<AbortHandle>, Vec<NativeClient>) {
        (
            std::mem::take(&mut self.changed),
            std::mem::take(&mut self.pending_aborts),
            std::mem::take(&mut self.pending_kills),
        )
    }

    /// Registers a real broker client's handle, destroyed as a killed process leaves it if
    /// its incarnation crashes.
    pub(crate) fn register_native(&mut self, incarnation: Incarnation, client: NativeClient) {
        self.natives.push((incarnation, client));
    }

    /// Every registered handle, for destruction at the end of the run.
    pub(crate) fn take_natives(&mut self) -> Vec<NativeClient> {
        self.pending_kills
            .drain(..)
            .chain(self.natives.drain(..).map(|(_, c)| c))
            .collect()
    }

    pub(crate) fn next_client_id(&mut self) -> ClientId {
        self.next_client += 1;
        ClientId(self.next_client)
    }

    pub(crate) fn next_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        format!("{client_id}-{}", self.next_member)
    }

    pub(crate) fn next_producer_id(&mut self) -> i64 {
        self.next_producer_id += 1;
        self.next_producer_id
    }

    /// A random network latency, in whole milliseconds (tokio's timer resolution).
    pub(crate) fn latency(&mut self) -> Duration {
        let (lo, hi) = self.settings.latency;
        let millis = self
            .rng
            .between(lo.as_millis() as u64, hi.as_millis() as u64);
        Duration::from_millis(millis)
    }

    pub(crate) fn partitions_of(&self, topic: &str) -> Option<i32> {
        self.topics.get(topic).map(Topic::partition_count)
    }

    pub(crate) fn end_offset(&self, tp: &TopicPartition) -> Option<i64> {
        self.topics
            .get(&tp.topic)
            .and_then(|t| t.partitions.get(tp.partition as usize))
            .map(|p| p.end_offset())
    }

    /// The log of `tp`, if the topic and partition exist.
    pub(crate) fn partition(&self, tp: &TopicPartition) -> Option<&log::Partition> {
        self.topics
            .get(&tp.topic)
            .and_then(|t| t.partitions.get(tp.partition as usize))
    }

    /// How far a consumer with `isolation` may read `tp` (see [`log::Partition::fetch_limit`]).
    pub(crate) fn fetch_limit(
        &self,
        tp: &TopicPartition,
        isolation: config::IsolationLevel,
    ) -> Option<i64> {
        self.partition(tp).map(|p| p.fetch_limit(isolation))
    }

    pub(crate) fn group_mut(&mut self, id: &str) -> &mut Group {
        self.groups
            .entry(id.to_string())
            .or_insert_with(|| Group::new(id))
    }

    /// Tries to finish the rebalance in progress in `group`.
    pub(crate) fn complete_rebalance(&mut self, group: &str) {
        let mut out = Events::new();
        if let Some(g) = self.groups.get_mut(group) {
            let topics = &self.topics;
            g.try_complete(|t| topics.get(t).map(Topic::partition_count), &mut out);
        }
        self.record_all(out);
    }

    /// Removes a member from its group (leave, session timeout, max.poll breach).
    pub(crate) fn remove_member(&mut self, group: &str, member: &str, reason: MemberRemoval) {
        let mut out = Events::new();
        if let Some(g) = self.groups.get_mut(group) {
            g.remove(member, reason, &mut out);
        }
        self.record_all(out);
        self.complete_rebalance(group);
    }

    /// Appends a record on behalf of the cluster (the harness's input producer).
    pub(crate) fn append_input(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        transaction: Option<bool>,
    ) -> Result<RecordPosition, crate::Error> {
        let partitions = self
            .partitions_of(topic)
            .ok_or_else(|| crate::Error::UnknownTopic(topic.to_string()))?;
        let partition = match partition {
            Some(p) if (0..partitions).contains(&p) => p,
            Some(p) => {
                return Err(crate::Error::UnknownPartition {
                    topic: topic.to_string(),
                    partition: p,
                    partitions,
                });
            }
            None => partitioner::Partitioner::ConsistentRandom.partition(
                key.as_deref(),
                partitions,
                &mut self.rng,
            ),
        };
        let timestamp = self.elapsed().as_millis() as i64;
        let key_text = key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let producer_id = transaction.map(|_| self.next_producer_id());
        let log = &mut self
            .topics
            .get_mut(topic)
            .expect("checked above")
            .partitions[partition as usize];
        let offset = log.append(StoredRecord {
            kind: RecordKind::Data,
            transaction: producer_id,
            key,
            payload,
            headers: Vec::new(),
            timestamp,
        });
        if let (Some(producer_id), Some(commit)) = (producer_id, transaction) {
            log.note_transactional_write(producer_id, offset);
            log.end_transaction(producer_id, commit, timestamp);
        }
        let position = TopicPartition::new(topic, partition).at(offset);
        self.record(
            None,
            HistoryEvent::RecordProduced {
                position: position.clone(),
                key: key_text,
                retry: false,
            },
        );
        if transaction == Some(false) {
            self.record(
                None,
                HistoryEvent::TransactionAborted {
                    transactional_id: "upstream".into(),
                    partitions: vec![position.topic_partition()],
                    reason: "the upstream producer aborted it".into(),
                },
            );
        }
        Ok(position)
    }

    // ----- instances -----

    pub(crate) fn alive(&self, incarnation: Incarnation) -> bool {
        self.instances.get(&incarnation.instance).is_some_and(|i| {
            i.incarnation == incarnation.number && i.status == InstanceStatus::Running
        }) && !self.finished
    }

    pub(crate) fn frozen_until(&self, incarnation: Incarnation) -> Option<Instant> {
        self.instances
            .get(&incarnation.instance)
            .and_then(|i| i.frozen_until)
            .filter(|t| *t > Instant::now())
    }

    pub(crate) fn current_record(&self, incarnation: Incarnation) -> Option<RecordPosition> {
        self.instances
            .get(&incarnation.instance)
            .and_then(|i| i.current_record.clone())
    }

    /// Counts one call of `operation` against the fault schedule, records the faults that
    /// fire and folds them into an [`Injection`].
    pub(crate) fn intercept(
        &mut self,
        operation: Operation,
        incarnation: Incarnation,
        record: Option<RecordPosition>,
    ) -> Injection {
        *self.operations.entry(operation).or_default() += 1;
        let fired = self
            .faults
            .intercept(operation, incarnation.instance, record.as_ref());
        for fault in &fired {
            self.record(
                Some(incarnation),
                HistoryEvent::FaultInjected {
                    operation,
                    fault: *fault,
                    record: record.clone(),
                },
            );
        }
        let injection = fault::injection(&fired);
        if let Some(down) = injection.broker_restart {
            self.restart_broker(down);
        }
        injection
    }

    /// The broker goes down for `down` (a restart with durable storage). Heartbeats stop
    /// reaching the coordinator, so each member's session runs out unless the broker is back
    /// first (see [`fire_timers`](Self::fire_timers)); librdkafka reports the lost connection
    /// through every consumer's next poll.
    fn restart_broker(&mut self, down: Duration) {
        let now = Instant::now();
        let until = now + down;
        self.broker_down_until = Some(self.broker_down_until.map_or(until, |u| u.max(until)));
        self.stop_heartbeats(now, |_| true);
        for c in self.consumers.values_mut() {
            c.errors.push_back(broker_down_error());
        }
        if let Some(switch) = &self.broker_switch {
            switch.restart(down);
        }
        self.touch();
    }

    /// When the broker is back, while it is down.
    pub(crate) fn broker_down(&self) -> Option<Instant> {
        self.broker_down_until.filter(|t| *t > Instant::now())
    }

    /// The interception step every client call, effect and store commit goes through, before
    /// the call: the incarnation must be alive; the call is counted against the fault plan and
    /// the faults that fire are recorded ([`intercept`](Self::intercept)); a crash before the
    /// call is carried out here, its cause naming the call (`what`). `Err(Crashed)`: the
    /// incarnation is dead or crashed right here (the caller publishes and unwinds). After the
    /// call, [`complete_call`](Self::complete_call) carries out a crash after it.
    pub(crate) fn intercept_call(
        &mut self,
        operation: Operation,
        incarnation: Incarnation,
        record: Option<RecordPosition>,
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
    /// one fired (`Err(Crashed)`: the caller publishes and unwinds).
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

    /// The instance dies on the spot: its clients vanish without a word (no LeaveGroup, no
    /// final commit; its group members time out after `session.timeout.ms`), its tasks are
    /// aborted. Returns false when it was not running.
    pub(crate) fn crash(&mut self, incarnation: Incarnation, cause: String) -> bool {
        if !self.alive(incarnation) {
            return false;
        }
        let now = Instant::now();
        let state = self
            .instances
            .get_mut(&incarnation.instance)
            .expect("alive");
        state.status = InstanceStatus::Crashed;
        state.died_at = Some(now);
        state.frozen_until = None;
        if let Some(root) = state.root.take() {
            self.pending_aborts.push(root);
        }
        self.record(Some(incarnation), HistoryEvent::InstanceCrashed { cause });
        self.drop_clients(incarnation);
        true
    }

    /// Forgets an incarnation's clients; their group members stop heartbeating.
    pub(crate) fn drop_clients(&mut self, incarnation: Incarnation) {
        let now = Instant::now();
        let dead: Vec<ClientId> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.incarnation == incarnation)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.consumers.remove(&id);
        }
        self.stop_heartbeats(now, |i| i == incarnation);
        self.producers.retain(|_, p| p.incarnation != incarnation);
        let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.natives)
            .into_iter()
            .partition(|(i, _)| *i == incarnation);
        self.natives = live;
        self.pending_kills.extend(dead.into_iter().map(|(_, c)| c));
        self.touch();
    }

    /// From `now` on, no heartbeat of the members of the incarnations `which` selects reaches
    /// the coordinator: each session runs out `session.timeout.ms` later, unless a deadline
    /// is already running.
    fn stop_heartbeats(&mut self, now: Instant, which: impl Fn(Incarnation) -> bool) {
        for group in self.groups.values_mut() {
            for m in group.members.values_mut() {
                if which(m.incarnation) && m.session_deadline.is_none() {
                    m.session_deadline = Some(now + m.session_timeout);
                }
            }
        }
    }

    /// Freezes the whole process: heartbeats stop until it thaws.
    pub(crate) fn freeze(&mut self, incarnation: Incarnation, duration: Duration) {
        let now = Instant::now();
        if let Some(state) = self.instances.get_mut(&incarnation.instance) {
            state.frozen_until = Some(now + duration);
        }
        self.stop_heartbeats(now, |i| i == incarnation);
        self.touch();
    }
}

/// The instance crashed during the call: unwind.
#[derive(Debug)]
pub(crate) struct Crashed;

/// The world and the signal that it changed, shared by the harness and every client handle.
pub(crate) struct Shared {
    world: Mutex<World>,
    changed: Notify,
}

impl Shared {
    pub(crate) fn new(world: World) -> Self {
        Shared {
            world: Mutex::new(world),
            changed: Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every task waiting for the world to change, if it did, and aborts the root tasks
    /// of instances that crashed. Call after releasing the lock.
    pub(crate) fn publish(&self) {
        let (changed, aborts, kills) = self.lock().take_changed();
        for root in aborts {
            root.abort();
        }
        // A handle in use right now (a crash inside one of its callbacks) is destroyed at the
        // next publish, after that call returned.
        let busy: Vec<NativeClient> = kills.into_iter().filter(|c| !c.kill()).collect();
        if !busy.is_empty() {
            self.lock().pending_kills.extend(busy);
        }
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// Waits until the world changes. Call right after [`publish`](Self::publish), with no
    /// await in between, so no change can be missed.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await
    }
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

/// What librdkafka's poll returns when the broker connection is lost.
pub(crate) fn broker_down_error() -> KafkaError {
    KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure)
}

/// The error a handle of a crashed instance returns while its task is already unwinding.
pub(crate) fn dead_error() -> KafkaError {
    KafkaError::Canceled
}
