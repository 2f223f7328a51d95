//! The simulated Kafka cluster: deterministic, in-process, driven by a virtual clock.
//!
//! One [`World`] holds the whole cluster (topics, groups, clients) and the run's history, behind
//! a mutex shared by every client handle. All of it runs on one current-thread tokio runtime
//! whose clock is paused: time only moves when every task is waiting, straight to the next
//! timer, so timeouts of minutes cost nothing and nothing sleeps in real time.

pub(crate) mod assignor;
pub(crate) mod config;
mod consumer;
pub(crate) mod group;
pub(crate) mod log;
pub(crate) mod partitioner;
mod producer;
pub(crate) mod rng;
pub(crate) mod txn;
pub(crate) mod txn_error;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult};
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

    /// [`intercept`](Self::intercept) for a live incarnation, with the crash-before fault
    /// carried out: `Err(Crashed)` when the incarnation is dead or crashed right here (the
    /// caller publishes and unwinds).
    pub(crate) fn intercept_or_crash(
        &mut self,
        operation: Operation,
        incarnation: Incarnation,
        record: Option<RecordPosition>,
    ) -> Result<Injection, Crashed> {
        if !self.alive(incarnation) {
            return Err(Crashed);
        }
        let injection = self.intercept(operation, incarnation, record);
        if injection.crash_before {
            self.crash(incarnation, format!("fault: crash before {operation}"));
            return Err(Crashed);
        }
        Ok(injection)
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

    // ----- commits -----

    /// Applies a commit at the coordinator and records the outcome.
    pub(crate) fn apply_commit(
        &mut self,
        incarnation: Incarnation,
        group: &str,
        member: Option<&str>,
        generation: i32,
        offsets: &[(TopicPartition, i64)],
        kind: CommitKind,
    ) -> Result<(), RDKafkaErrorCode> {
        let g = self.group_mut(group);
        let result = g.check_commit(member, generation);
        if result.is_ok() {
            for (tp, offset) in offsets {
                g.committed.insert(tp.clone(), *offset);
            }
        }
        let event = match result {
            Ok(()) => HistoryEvent::OffsetsCommitted {
                group: group.to_string(),
                generation,
                offsets: offsets.to_vec(),
                kind,
            },
            Err(code) => HistoryEvent::CommitRejected {
                group: group.to_string(),
                offsets: offsets.to_vec(),
                kind,
                error: KafkaError::ConsumerCommit(code).to_string(),
            },
        };
        self.record(Some(incarnation), event);
        result
    }

    /// Whether the broker is down and `member`'s session ends before it is back. A commit made
    /// while the broker is down otherwise waits for it and is applied then (the simulator
    /// applies it at once: nobody else can reach the coordinator in between).
    fn session_outlasted_by_outage(&self, group: &str, member: Option<&str>) -> bool {
        let (Some(back), Some(member)) = (self.broker_down(), member) else {
            return false;
        };
        self.groups
            .get(group)
            .and_then(|g| g.members.get(member))
            .and_then(|m| m.session_deadline)
            .is_some_and(|deadline| deadline <= back)
    }

    /// A commit as the application (or librdkafka on its behalf) makes it, through the
    /// interception point `operation`. `Err(None)` means the instance crashed.
    pub(crate) fn intercepted_commit(
        &mut self,
        client: ClientId,
        operation: Operation,
        anchor: Option<RecordPosition>,
        offsets: Vec<(TopicPartition, i64)>,
        kind: CommitKind,
    ) -> Result<KafkaResult<()>, Crashed> {
        let Some(c) = self.consumers.get(&client) else {
            return Err(Crashed);
        };
        let incarnation = c.incarnation;
        let (group, member, generation) =
            (c.settings.group_id.clone(), c.member.clone(), c.generation);
        let injection = self.intercept_or_crash(operation, incarnation, anchor)?;
        let reject = |world: &mut World, why: &str, code| {
            world.record(
                Some(incarnation),
                HistoryEvent::CommitRejected {
                    group: group.clone(),
                    offsets: offsets.clone(),
                    kind,
                    error: format!("{why} (not applied)"),
                },
            );
            Err(KafkaError::ConsumerCommit(code))
        };
        let result = if injection.fail {
            reject(
                self,
                "injected failure: group rebalance in progress",
                fault::COMMIT_FAILED,
            )
        } else if kind != CommitKind::Async
            && self.session_outlasted_by_outage(&group, member.as_deref())
        {
            // librdkafka holds the commit until the coordinator is back, but the member's
            // session runs out first: it gives up.
            reject(
                self,
                "the broker is down and the member's session runs out before it is back: \
                 waiting for coordinator",
                RDKafkaErrorCode::WaitingForCoordinator,
            )
        } else if kind == CommitKind::Async {
            // While the broker is down the request waits for it.
            let now = Instant::now();
            let due = (now + self.latency()).max(self.broker_down().unwrap_or(now));
            self.async_commits.push(PendingCommit {
                due,
                client,
                incarnation,
                group,
                member,
                generation,
                offsets,
                ambiguous: injection.ambiguous,
            });
            self.touch();
            Ok(())
        } else {
            match self.apply_commit(
                incarnation,
                &group,
                member.as_deref(),
                generation,
                &offsets,
                kind,
            ) {
                Ok(()) if injection.ambiguous => {
                    Err(KafkaError::ConsumerCommit(fault::COMMIT_TIMED_OUT))
                }
                Ok(()) => Ok(()),
                Err(code) => Err(KafkaError::ConsumerCommit(code)),
            }
        };
        if injection.crash_after {
            self.crash(incarnation, format!("fault: crash after {operation}"));
            return Err(Crashed);
        }
        Ok(result)
    }

    // ----- timers -----

    /// Fires every timer that is due: thaws, session timeouts, max.poll.interval breaches,
    /// auto-commits and asynchronous commits reaching the coordinator.
    pub(crate) fn fire_timers(&mut self) {
        let now = Instant::now();
        // Thaw frozen processes: heartbeats resume for members that were not removed.
        let thawed: Vec<(InstanceId, u32)> = self
            .instances
            .iter()
            .filter(|(_, s)| s.frozen_until.is_some_and(|t| t <= now))
            .map(|(id, s)| (*id, s.incarnation))
            .collect();
        for (id, number) in thawed {
            self.instances.get_mut(&id).expect("listed").frozen_until = None;
            let incarnation = Incarnation {
                instance: id,
                number,
            };
            if self.alive(incarnation) && self.broker_down_until.is_none() {
                for group in self.groups.values_mut() {
                    for m in group.members.values_mut() {
                        if m.incarnation == incarnation {
                            m.session_deadline = None;
                        }
                    }
                }
            }
            self.touch();
        }
        self.expire_transactions(now);
        // Session timeouts.
        let expired: Vec<(String, String)> = self
            .groups
            .iter()
            .flat_map(|(g, group)| {
                group
                    .members
                    .iter()
                    .filter(|(_, m)| m.session_deadline.is_some_and(|d| d <= now))
                    .map(move |(id, _)| (g.clone(), id.clone()))
            })
            .collect();
        for (group, member) in expired {
            self.remove_member(&group, &member, MemberRemoval::SessionTimeout);
        }
        // The broker is back: the sessions that outlasted the outage resume (heartbeats of
        // running, unfrozen processes reach the coordinator again).
        if self.broker_down_until.is_some_and(|t| t <= now) {
            self.broker_down_until = None;
            self.record(None, HistoryEvent::BrokerBack);
            let resumed: BTreeSet<Incarnation> = self
                .instances
                .iter()
                .filter(|(_, s)| s.status == InstanceStatus::Running && s.frozen_until.is_none())
                .map(|(id, s)| Incarnation {
                    instance: *id,
                    number: s.incarnation,
                })
                .collect();
            for group in self.groups.values_mut() {
                for m in group.members.values_mut() {
                    if resumed.contains(&m.incarnation) {
                        m.session_deadline = None;
                    }
                }
            }
            self.touch();
        }
        // max.poll.interval.ms: librdkafka leaves the group on the application's behalf.
        let breached: Vec<ClientId> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.max_poll_deadline().is_some_and(|d| d <= now))
            .filter(|(_, c)| self.frozen_until(c.incarnation).is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in breached {
            let c = self.consumers.get_mut(&id).expect("listed");
            c.poll_exceeded = true;
            let (group, member) = (
                c.settings.group_id.clone(),
                c.member.clone().expect("deadline needs a member"),
            );
            let still_member = self
                .groups
                .get(&group)
                .is_some_and(|g| g.members.contains_key(&member));
            if still_member {
                self.remove_member(&group, &member, MemberRemoval::MaxPollIntervalExceeded);
            }
        }
        // Periodic auto-commit, on a grid of `auto.commit.interval.ms` from the consumer's
        // creation. The driver only wakes for ticks with something to commit (see
        // `next_timer`), so a tick is real only when `now` falls exactly on the grid.
        let due: Vec<ClientId> = self
            .consumers
            .iter()
            .filter(|(_, c)| c.next_auto_commit.is_some_and(|t| t <= now))
            // A frozen process runs no timers.
            .filter(|(_, c)| self.frozen_until(c.incarnation).is_none())
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let c = self.consumers.get_mut(&id).expect("listed");
            let interval = c.settings.auto_commit_interval.as_nanos();
            let next = c.next_auto_commit.expect("due");
            let elapsed = (now - next).as_nanos();
            let ticks = elapsed / interval + 1;
            c.next_auto_commit = Some(next + Duration::from_nanos((ticks * interval) as u64));
            if elapsed % interval == 0 {
                // A crash here is recorded by the commit itself; the timer has nothing to add.
                let _ = self.auto_commit(id, CommitKind::Auto);
            }
        }
        // Asynchronous commits reaching the coordinator.
        let (arrived, pending): (Vec<PendingCommit>, Vec<PendingCommit>) =
            std::mem::take(&mut self.async_commits)
                .into_iter()
                .partition(|p| p.due <= now);
        self.async_commits = pending;
        for p in arrived {
            let result = self.apply_commit(
                p.incarnation,
                &p.group,
                p.member.as_deref(),
                p.generation,
                &p.offsets,
                CommitKind::Async,
            );
            let result = match result {
                Ok(()) if p.ambiguous => Err(KafkaError::ConsumerCommit(fault::COMMIT_TIMED_OUT)),
                Ok(()) => Ok(()),
                Err(code) => Err(KafkaError::ConsumerCommit(code)),
            };
            if let Some(c) = self.consumers.get_mut(&p.client) {
                c.commit_callbacks.push_back((result, p.offsets));
            }
            self.touch();
        }
    }

    /// The earliest moment a timer fires.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        let thaws = self.instances.values().filter_map(|s| s.frozen_until);
        let sessions = self
            .groups
            .values()
            .flat_map(|g| g.members.values().filter_map(|m| m.session_deadline));
        let polls = self
            .consumers
            .values()
            .filter(|c| self.frozen_until(c.incarnation).is_none())
            .filter_map(ConsumerState::max_poll_deadline);
        // The next grid tick of each auto-committing consumer with something to commit.
        let now = Instant::now();
        let autos = self
            .consumers
            .iter()
            .filter(|(_, c)| self.frozen_until(c.incarnation).is_none())
            .filter(|(id, _)| self.has_uncommitted_stored(**id))
            .filter_map(|(_, c)| {
                let next = c.next_auto_commit?;
                if next >= now {
                    return Some(next);
                }
                let interval = c.settings.auto_commit_interval.as_nanos();
                let elapsed = (now - next).as_nanos();
                let ticks = elapsed.div_ceil(interval);
                Some(next + Duration::from_nanos((ticks * interval) as u64))
            });
        let asyncs = self.async_commits.iter().map(|p| p.due);
        let transactions = self.next_transaction_timeout();
        thaws
            .chain(self.broker_down_until)
            .chain(transactions)
            .chain(sessions)
            .chain(polls)
            .chain(autos)
            .chain(asyncs)
            .min()
    }

    /// The cluster as it is now, for the run's outcome.
    pub(crate) fn snapshot(&self) -> ClusterSnapshot {
        let world = self;
        let mut logs = BTreeMap::new();
        for (name, topic) in &world.topics {
            for (p, partition) in topic.partitions.iter().enumerate() {
                let records = partition
                    .records
                    .iter()
                    .enumerate()
                    .map(|(offset, r)| crate::history::LoggedRecord {
                        offset: offset as i64,
                        key: r.key.clone(),
                        payload: r.payload.clone(),
                        control: r.kind == RecordKind::Control,
                        aborted: partition.aborted_at(offset as i64),
                        open: partition.open_at(offset as i64),
                    })
                    .collect();
                logs.insert(TopicPartition::new(name.clone(), p as i32), records);
            }
        }
        let committed = world
            .groups
            .iter()
            .flat_map(|(g, group)| {
                group
                    .committed
                    .iter()
                    .map(move |(tp, o)| ((g.clone(), tp.clone()), *o))
            })
            .collect();
        ClusterSnapshot::from_parts(logs, committed)
    }

    // ----- quiescence -----

    /// Each group's committed offset against the end of every partition of the topics it
    /// consumes (every topic a member subscribed to, and the topics it has committed offsets
    /// for).
    pub(crate) fn lag(&self) -> Vec<Lag> {
        let mut lag = Vec::new();
        for (id, group) in &self.groups {
            let mut topics: BTreeSet<&String> = group.consumed_topics.iter().collect();
            topics.extend(group.committed.keys().map(|tp| &tp.topic));
            for topic in topics {
                let Some(t) = self.topics.get(topic) else {
                    continue;
                };
                for (p, partition) in t.partitions.iter().enumerate() {
                    let tp = TopicPartition::new(topic.clone(), p as i32);
                    lag.push(Lag {
                        group: id.clone(),
                        committed: group.committed.get(&tp).copied(),
                        partition: tp,
                        end: partition.end_offset(),
                    });
                }
            }
        }
        lag
    }

    /// True when nothing is left to do: every running instance waits in `recv` on consumers
    /// that have nothing to fetch and nothing uncommitted; no rebalance, commit, thaw or open
    /// transaction is pending; partitions that no live consumer owns are committed to their end.
    pub(crate) fn idle(&self) -> bool {
        // An open transaction still has to commit, abort or time out: its outcome decides
        // what read_committed readers see.
        if !self.async_commits.is_empty()
            || self.broker_down_until.is_some()
            || self.next_transaction_timeout().is_some()
            || self.instances.values().any(|i| i.frozen_until.is_some())
            || self
                .groups
                .values()
                .any(|g| g.state == GroupState::PreparingRebalance)
        {
            return false;
        }
        let parked = self
            .instances
            .iter()
            .filter(|(_, i)| i.status == InstanceStatus::Running)
            .all(|(id, i)| {
                let incarnation = Incarnation {
                    instance: *id,
                    number: i.incarnation,
                };
                let mut consumers = self
                    .consumers
                    .values()
                    .filter(|c| c.incarnation == incarnation)
                    .peekable();
                consumers.peek().is_some() && consumers.all(|c| c.idle(self))
            });
        if !parked {
            return false;
        }
        let owned: BTreeSet<(&String, &TopicPartition)> = self
            .consumers
            .values()
            .flat_map(|c| {
                c.assignment
                    .iter()
                    .map(move |tp| (&c.settings.group_id, tp))
            })
            .collect();
        self.lag()
            .iter()
            .filter(|l| !owned.contains(&(&l.group, &l.partition)))
            .all(|l| {
                self.partition(&l.partition).is_none_or(|p| {
                    p.settled_from(
                        l.committed.unwrap_or(0),
                        config::IsolationLevel::ReadCommitted,
                    )
                })
            })
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
