//! The simulated Kafka cluster: deterministic, in-process, driven by a virtual clock.
//!
//! One [`World`] holds the whole cluster (topics, groups, clients, the transaction
//! coordinator), behind a mutex shared by every client handle; the run it serves keeps the
//! history, the instances and the fault plan ([`Run`]), and the simulator reports to it. All of
//! it runs on one current-thread tokio runtime whose clock is paused: time only moves when
//! every task is waiting, straight to the next timer, so timeouts of minutes cost nothing and
//! nothing sleeps in real time. [`SimBackend`] is the run's view of it.

pub(crate) mod assignor;
mod backend;
mod base_producer;
mod commit;
pub(crate) mod config;
mod consumer;
mod cooperative;
pub(crate) mod group;
pub(crate) mod log;
mod manual_assign;
mod partition_queue;

mod poll;
mod positioning;
mod producer;
mod static_member;
mod timers;
pub(crate) mod txn;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::Instant;

pub(crate) use backend::SimBackend;
pub(crate) use consumer::ConsumerState;
pub(crate) use consumer::SimConsumer;
pub(crate) use producer::ProducerState;
pub(crate) use producer::SimProducer;

use crate::history::Operation;
use crate::history::{ClusterSnapshot, RecordPosition, TopicName, TopicPartition};
use crate::history::{CommitKind, HistoryEvent, Incarnation, Lag, MemberRemoval};
use crate::run::core::{Crashed, Run, RunCore, RunEvent};
use crate::run::fault_plan::{self as fault, Injection};
use commit::Committer;
use group::{Events, Group, GroupState};
use log::{RecordKind, StoredRecord, Topic};

/// A client (consumer or producer) created by an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ClientId(pub u64);

/// Cluster-wide settings of a run.
#[derive(Clone, Debug)]
pub(crate) struct SimSettings {
    /// The broker's `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub session_timeout_bounds: (Duration, Duration),
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
    /// The consumer's `group.instance.id`.
    pub instance: Option<String>,
    /// Refused by the coordinator ([`Fault::Fail`](crate::history::Fault::Fail)).
    pub refused: bool,
}

/// The whole simulated cluster.
pub(crate) struct World {
    /// The run the cluster serves: its record and the one interception step.
    pub run: Arc<Run>,
    pub settings: SimSettings,
    pub topics: BTreeMap<TopicName, Topic>,
    pub groups: BTreeMap<String, Group>,
    pub consumers: BTreeMap<ClientId, ConsumerState>,
    pub producers: BTreeMap<ClientId, ProducerState>,
    pub async_commits: Vec<PendingCommit>,
    /// The transaction coordinator's state, per `transactional.id`.
    pub transactions: BTreeMap<String, txn::TxnRecord>,
    /// While the broker restarts: when it is back.
    pub broker_down_until: Option<Instant>,
    /// The candidates of a fetch, a buffer kept from poll to poll (see `poll_fetch`).
    fetch_candidates: Vec<(usize, i64)>,
    next_client: u64,
    next_member: u64,
    next_producer_id: i64,
}

impl World {
    pub(crate) fn new(run: Arc<Run>, settings: SimSettings, topics: &[(String, i32)]) -> Self {
        World {
            run,
            settings,
            topics: topics
                .iter()
                .map(|(name, n)| (TopicName::new(name), Topic::new(*n)))
                .collect(),
            groups: BTreeMap::new(),
            consumers: BTreeMap::new(),
            producers: BTreeMap::new(),
            async_commits: Vec::new(),
            transactions: BTreeMap::new(),
            broker_down_until: None,
            fetch_candidates: Vec::new(),
            next_client: 0,
            next_member: 0,
            next_producer_id: 1000,
        }
    }

    /// Virtual time since the run started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.run.lock().elapsed()
    }

    /// Records an event in the run's history.
    pub(crate) fn record(&mut self, incarnation: Option<Incarnation>, event: HistoryEvent) {
        self.run.lock().record(incarnation, event);
    }

    pub(crate) fn record_all(&mut self, events: Events) {
        for (incarnation, event) in events {
            self.record(incarnation, event);
        }
    }

    /// Marks the state as changed so that waiting tasks re-check it.
    pub(crate) fn touch(&mut self) {
        self.run.lock().touch();
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
        self.run.lock().latency()
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

    /// Appends a record on behalf of the cluster (the run's input producer), at `now`, the
    /// virtual clock's reading (`timestamp`, in milliseconds since the run started) of the step
    /// that writes a batch of input.
    pub(crate) fn append_input(
        &mut self,
        (now, timestamp): (Instant, i64),
        topic: &TopicName,
        partition: i32,
        key: Option<Arc<[u8]>>,
        payload: Option<Arc<[u8]>>,
        transaction: Option<bool>,
    ) -> Result<RecordPosition, crate::error::Error> {
        let partitions = self
            .partitions_of(topic)
            .ok_or_else(|| crate::error::Error::UnknownTopic(topic.to_string()))?;
        if !(0..partitions).contains(&partition) {
            return Err(crate::error::Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions,
            });
        }
        let key_text = key.as_ref().map(crate::history::key_text);
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
            headers: Box::default(),
            timestamp,
        });
        if let (Some(producer_id), Some(commit)) = (producer_id, transaction) {
            log.note_transactional_write(producer_id, offset);
            log.end_transaction(producer_id, commit, timestamp);
        }
        let position = TopicPartition::new(topic, partition).at(offset);
        let mut run = self.run.lock();
        run.record_at(
            now,
            None,
            HistoryEvent::RecordProduced {
                position: position.clone(),
                key: key_text,
                retry: false,
            },
        );
        if transaction == Some(false) {
            run.record_at(
                now,
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
        self.run.lock().alive(incarnation)
    }

    pub(crate) fn frozen_until(&self, incarnation: Incarnation) -> Option<Instant> {
        self.run.lock().frozen_until(incarnation)
    }

    pub(crate) fn current_record(&self, incarnation: Incarnation) -> Option<RecordPosition> {
        self.run.lock().current_record(incarnation)
    }

    /// Carries out what the run did to its instances: crashed and exited incarnations lose
    /// their clients, frozen ones stop heartbeating, a broker restart takes the broker down.
    /// Called right after every step that may queue such events, before anything else happens.
    pub(crate) fn react(&mut self) {
        let events = self.run.lock().take_events();
        self.react_to(events);
    }

    /// [`react`](Self::react) to events already taken from the run.
    fn react_to(&mut self, events: Vec<RunEvent>) {
        for event in events {
            match event {
                RunEvent::ClientsGone(incarnation) => self.drop_clients(incarnation),
                RunEvent::Frozen(incarnation) => {
                    self.stop_heartbeats(Instant::now(), |i| i == incarnation);
                }
                RunEvent::BrokerRestart(down) => self.restart_broker(down),
            }
        }
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
        self.touch();
    }

    /// When the broker is back, while it is down.
    pub(crate) fn broker_down(&self) -> Option<Instant> {
        self.broker_down_until.filter(|t| *t > Instant::now())
    }

    /// The run's interception step ([`RunCore::intercept_call`](crate::run::core::RunCore::intercept_call)),
    /// with the cluster's reaction to what it did.
    pub(crate) fn intercept_call(
        &mut self,
        operation: Operation,
        incarnation: Incarnation,
        record: Option<&RecordPosition>,
        what: &dyn fmt::Display,
    ) -> Result<Injection, Crashed> {
        self.with_run(|run| run.intercept_call(operation, incarnation, record, what))
    }

    /// The end of the run's interception step
    /// ([`RunCore::complete_call`](crate::run::core::RunCore::complete_call)), with the
    /// cluster's reaction to a crash.
    pub(crate) fn complete_call(
        &mut self,
        injection: &Injection,
        incarnation: Incarnation,
        what: &dyn fmt::Display,
    ) -> Result<(), Crashed> {
        if !injection.crash_after {
            // Nothing to carry out, and nothing queued for the cluster to react to: every
            // step that queues something reacts at once (`with_run`).
            return Ok(());
        }
        self.with_run(|run| run.complete_call(injection, incarnation, what))
    }

    /// Freezes the whole process: nothing of it runs and its heartbeats stop until it thaws.
    pub(crate) fn freeze(&mut self, incarnation: Incarnation, duration: Duration) {
        self.with_run(|run| run.freeze(incarnation, duration));
    }

    /// Runs a step of the run's (`f`, under its lock) and carries out at once what it did to
    /// the instances: the one way the simulator changes the run's instances.
    fn with_run<T>(&mut self, f: impl FnOnce(&mut RunCore) -> T) -> T {
        let (result, events) = {
            let mut run = self.run.lock();
            let result = f(&mut run);
            (result, run.take_events())
        };
        self.react_to(events);
        result
    }

    /// Forgets an incarnation's clients; their group members stop heartbeating.
    pub(crate) fn drop_clients(&mut self, incarnation: Incarnation) {
        let now = Instant::now();
        self.consumers.retain(|_, c| c.incarnation != incarnation);
        self.stop_heartbeats(now, |i| i == incarnation);
        self.producers.retain(|_, p| p.incarnation != incarnation);
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
}

/// The cluster shared by the run's backend view and every simulated client handle.
pub(crate) struct Shared {
    world: Mutex<World>,
    run: Arc<Run>,
}

impl Shared {
    pub(crate) fn new(world: World) -> Self {
        let run = world.run.clone();
        Shared {
            world: Mutex::new(world),
            run,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the run's changes ([`Run::publish`]). Call after releasing the lock.
    pub(crate) fn publish(&self) {
        self.run.publish();
    }

    /// Waits until the incarnation is not frozen ([`thawed`](crate::run::freeze::thawed)).
    pub(crate) async fn thawed(&self, incarnation: Incarnation) {
        crate::run::freeze::thawed(&self.run, incarnation).await
    }

    /// Waits until the run changes ([`Run::changed`]).
    pub(crate) async fn changed(&self) {
        self.run.changed().await
    }
}

/// What librdkafka's poll returns when the broker connection is lost.
pub(crate) fn broker_down_error() -> KafkaError {
    KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure)
}
