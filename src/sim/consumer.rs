//! The simulated group consumer: librdkafka's consumer semantics over the simulated cluster.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Rebalance, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::OwnedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::time::Instant;

use super::config::ConsumerSettings;
use super::group::{Events, GroupState};
use super::manual_assign::Change;
use super::partition_queue::SimPartitionQueue;
use super::poll::PollStep;
use super::{ClientId, Shared, World, broker_down_error};
use crate::client::{
    ConsumerHandle, GroupMetadata, GroupMetadataRepr, RebalanceHandler, explicit_offsets,
};
use crate::history::Operation;
use crate::history::{CommitKind, HistoryEvent, Incarnation, MemberRemoval};
use crate::history::{RecordPosition, TopicPartition};
use crate::run::backend::{BoxFuture, ConsumerClient, PartitionQueueClient};
use crate::run::core::{Crashed, crashed, dead_error};
use crate::run::store_progress::Progress;

/// How long librdkafka waits before retrying a JoinGroup the coordinator refused.
pub(crate) const JOIN_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// Offsets a commit covered, per partition.
pub(crate) type Offsets = Vec<(TopicPartition, i64)>;

/// One consumer client's state, as librdkafka keeps it.
#[derive(Debug)]
pub(crate) struct ConsumerState {
    pub incarnation: Incarnation,
    pub settings: ConsumerSettings,
    pub subscription: Vec<String>,
    pub member: Option<String>,
    /// The generation this client has synced to (-1 before its first assignment).
    pub generation: i32,
    pub assignment: Vec<TopicPartition>,
    /// The group handed this consumer an assignment (perhaps empty) that it has not revoked
    /// yet: librdkafka's eager protocol revokes it through the rebalance callback, empty or
    /// not, at the next rebalance, on `unsubscribe` and on close.
    pub assigned: bool,
    /// Next offset to hand to the application, per assigned partition.
    pub positions: BTreeMap<TopicPartition, i64>,
    /// Offsets stored for the next commit.
    pub stored: BTreeMap<TopicPartition, i64>,
    /// Where consumption of each assigned partition started (committed offset or reset).
    pub starts: BTreeMap<TopicPartition, i64>,
    /// How many `recv` calls are in progress.
    pub polling: u32,
    pub last_poll: Instant,
    pub errors: VecDeque<KafkaError>,
    pub commit_callbacks: VecDeque<(KafkaResult<()>, Offsets)>,
    pub next_auto_commit: Option<Instant>,
    pub eof_reported: BTreeMap<TopicPartition, i64>,
    /// The partitions the application paused: nothing of them is handed out.
    pub paused: BTreeSet<TopicPartition>,
    /// Cooperative protocol: it revoked partitions for the generation it is taking up, and
    /// rejoins once it took it up.
    pub rejoin_after_sync: bool,
    /// It joined a group at least once: librdkafka reports the group's rebalance protocol
    /// from then on (`None` before).
    pub joined_once: bool,
    /// The partitions split off into queues of their own (`split_partition_queue`): `recv`
    /// hands out nothing of them, their queues do (see [`partition_queue`](super::partition_queue)).
    pub split: BTreeSet<TopicPartition>,
    /// librdkafka left the group because `max.poll.interval.ms` passed without a poll; the next
    /// poll reports it.
    pub poll_exceeded: bool,
    pub join_retry_at: Option<Instant>,
    /// The offsets a manual assignment gave, as librdkafka's `assignment()` lists them
    /// (raw: `Invalid` became `Stored`).
    pub assigned_offsets: BTreeMap<TopicPartition, i64>,
    /// The group's assignment while a manual `assign` replaced it: librdkafka still revokes
    /// the group's partitions at the next rebalance.
    pub group_assignment: Option<Vec<TopicPartition>>,
    /// librdkafka's `assignment_lost`: set while a lost assignment is being revoked.
    pub lost: bool,
    /// A fatal error was raised (a static member fenced by a newer one with its
    /// `group.instance.id`): the consumer commits and joins nothing more.
    pub fatal: bool,
    /// The application is closing it: a static member sends no LeaveGroup then.
    pub closing: bool,
}

impl ConsumerState {
    fn new(incarnation: Incarnation, settings: ConsumerSettings) -> Self {
        let now = Instant::now();
        let next_auto_commit = (settings.enable_auto_commit
            && !settings.auto_commit_interval.is_zero())
        .then(|| now + settings.auto_commit_interval);
        ConsumerState {
            incarnation,
            settings,
            subscription: Vec::new(),
            member: None,
            generation: -1,
            assignment: Vec::new(),
            assigned: false,
            positions: BTreeMap::new(),
            stored: BTreeMap::new(),
            starts: BTreeMap::new(),
            polling: 0,
            last_poll: now,
            errors: VecDeque::new(),
            commit_callbacks: VecDeque::new(),
            next_auto_commit,
            eof_reported: BTreeMap::new(),
            paused: BTreeSet::new(),
            rejoin_after_sync: false,
            joined_once: false,
            split: BTreeSet::new(),
            poll_exceeded: false,
            join_retry_at: None,
            assigned_offsets: BTreeMap::new(),
            group_assignment: None,
            lost: false,
            fatal: false,
            closing: false,
        }
    }

    /// The partitions a revoke of the group's assignment lists: the group's, even when a
    /// manual `assign` replaced them since.
    pub(crate) fn group_partitions(&self) -> Vec<TopicPartition> {
        self.group_assignment
            .clone()
            .unwrap_or_else(|| self.assignment.clone())
    }

    /// When librdkafka gives up on the application and leaves the group.
    pub(crate) fn max_poll_deadline(&self) -> Option<Instant> {
        (self.polling == 0 && self.member.is_some() && !self.poll_exceeded)
            .then(|| self.last_poll + self.settings.max_poll_interval)
    }

    /// Waiting in `recv` with nothing to deliver, nothing pending and nothing consumed that is
    /// not committed yet.
    /// With `progress` (the consumer's own database), a partition's progress is its offset
    /// there instead of the group's committed offset.
    pub(crate) fn idle(&self, world: &World, progress: Option<&Progress>) -> bool {
        if self.polling == 0
            || self.poll_exceeded
            || !self.errors.is_empty()
            || !self.commit_callbacks.is_empty()
        {
            return false;
        }
        let group = world.groups.get(&self.settings.group_id);
        if !self.subscription.is_empty() {
            let settled = self.member.as_ref().is_some_and(|m| {
                group.is_some_and(|g| {
                    g.state == GroupState::Stable
                        && g.generation == self.generation
                        && g.members.contains_key(m)
                })
            });
            if !settled {
                return false;
            }
        }
        self.assignment.iter().all(|tp| {
            let Some(&position) = self.positions.get(tp) else {
                return true; // no position: consumption stopped on an auto.offset.reset error
            };
            let recorded = match progress {
                Some(progress) => progress.get(tp),
                None => group.and_then(|g| g.committed.get(tp)),
            };
            let done = recorded.or(self.starts.get(tp)).copied().unwrap_or(0);
            // Consumed and committed up to the last record it would be handed (markers and
            // aborted records after it do not count).
            world
                .partition(tp)
                .is_none_or(|p| p.settled_from(done.min(position), self.settings.isolation_level))
        })
    }
}

pub(crate) fn tpl(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for tp in partitions {
        list.add_partition(&tp.topic, tp.partition);
    }
    list
}

pub(crate) fn tpl_with_offsets(
    offsets: impl IntoIterator<Item = (TopicPartition, Option<i64>)>,
) -> KafkaResult<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for (tp, offset) in offsets {
        list.add_partition_offset(
            &tp.topic,
            tp.partition,
            offset.map_or(Offset::Invalid, Offset::Offset),
        )?;
    }
    Ok(list)
}

/// A consumer of the simulated cluster, librdkafka's consumer semantics (see
/// [`Consumer`](crate::Consumer), the handle users hold).
pub(crate) struct SimConsumer {
    shared: Arc<Shared>,
    client: ClientId,
    incarnation: Incarnation,
    handler: Option<Arc<dyn RebalanceHandler>>,
}

impl std::fmt::Debug for SimConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConsumer")
            .field("incarnation", &self.incarnation)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// Marks a `recv` in progress for `max.poll.interval.ms` purposes: from its first poll step
/// (`enter`, under that step's lock) until it returns (`leave`, under the lock of the step
/// that delivered) or its future is dropped.
struct PollGuard<'a> {
    shared: &'a Shared,
    client: ClientId,
    active: bool,
}

impl<'a> PollGuard<'a> {
    fn new(shared: &'a Shared, client: ClientId) -> Self {
        PollGuard {
            shared,
            client,
            active: false,
        }
    }

    fn enter(&mut self, world: &mut World, now: Instant) {
        if let Some(c) = world.consumers.get_mut(&self.client) {
            c.polling += 1;
            c.last_poll = now;
        }
        self.active = true;
    }

    fn leave(&mut self, world: &mut World, now: Instant) {
        if let Some(c) = world.consumers.get_mut(&self.client) {
            c.polling -= 1;
            c.last_poll = now;
        }
        self.active = false;
    }
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        if self.active {
            let mut world = self.shared.lock();
            self.leave(&mut world, Instant::now());
        }
    }
}

impl SimConsumer {
    pub(crate) fn create(
        shared: Arc<Shared>,
        incarnation: Incarnation,
        config: &ClientConfig,
        handler: Option<Arc<dyn RebalanceHandler>>,
    ) -> KafkaResult<Self> {
        let settings = ConsumerSettings::from_config(config)?;
        let client = {
            let mut world = shared.lock();
            if !world.alive(incarnation) {
                drop(world);
                return Err(crashed(dead_error()));
            }
            let client = world.next_client_id();
            let mut state = ConsumerState::new(incarnation, settings);
            if world.broker_down().is_some() {
                // It cannot reach the bootstrap server.
                state.errors.push_back(broker_down_error());
            }
            world.consumers.insert(client, state);
            client
        };
        Ok(SimConsumer {
            shared,
            client,
            incarnation,
            handler,
        })
    }

    /// Runs `f` on the world and this consumer's state; unwinds if the instance is dead.
    /// (The state is lent out of the world for the call and put back unless `f` crashed the
    /// instance, whose clients are gone.)
    fn with_live<T>(&self, f: impl FnOnce(&mut World, &mut ConsumerState) -> T) -> KafkaResult<T> {
        let mut world = self.shared.lock();
        if !world.alive(self.incarnation) || !world.consumers.contains_key(&self.client) {
            drop(world);
            return Err(crashed(dead_error()));
        }
        let mut state = world.consumers.remove(&self.client).expect("checked");
        let result = f(&mut world, &mut state);
        if world.alive(self.incarnation) {
            world.consumers.insert(self.client, state);
        }
        drop(world);
        self.shared.publish();
        Ok(result)
    }

    fn rebalance_callback(&self, pre: bool, rebalance: &Rebalance<'_>) {
        if let Some(handler) = &self.handler {
            if pre {
                handler.pre_rebalance(self, rebalance);
            } else {
                handler.post_rebalance(self, rebalance);
            }
        }
    }

    async fn recv_message(&self) -> KafkaResult<OwnedMessage> {
        let mut guard = PollGuard::new(&self.shared, self.client);
        let mut may_return = false;
        // A record picked but held up (a stall, a freeze): dropping this future drops it
        // unconsumed.
        let mut held = None;
        loop {
            // Virtual time stands still until this task yields: one reading serves the step.
            let now = Instant::now();
            let step = {
                let mut world = self.shared.lock();
                if !guard.active {
                    guard.enter(&mut world, now);
                }
                let step = match held.take() {
                    Some(h) => world.resume(self.client, h),
                    None => world.poll_step_at(self.client, may_return, now),
                };
                if matches!(step, PollStep::Deliver(_)) {
                    guard.leave(&mut world, now);
                }
                step
            };
            self.shared.publish();
            match step {
                PollStep::Dead => return Err(crashed(dead_error())),
                PollStep::Error(e) => return Err(e),
                PollStep::Sleep(d) => {
                    tokio::time::sleep(d).await;
                    may_return = true;
                }
                PollStep::Revoke { partitions, lost } => {
                    let list = tpl(&partitions);
                    if let Some(c) = self.shared.lock().consumers.get_mut(&self.client) {
                        c.lost = lost; // until the revoke's unassign (`finish_revoke`)
                    }
                    self.rebalance_callback(true, &Rebalance::Revoke(&list));
                    let done = self.shared.lock().finish_revoke(self.client, lost);
                    self.shared.publish();
                    if done.is_err() {
                        return Err(crashed(dead_error()));
                    }
                    self.rebalance_callback(false, &Rebalance::Revoke(&list));
                }
                PollStep::Assign {
                    generation,
                    partitions,
                } => {
                    let list = tpl(&partitions);
                    self.rebalance_callback(true, &Rebalance::Assign(&list));
                    self.shared.lock().finish_assign(self.client, generation);
                    self.shared.publish();
                    self.rebalance_callback(false, &Rebalance::Assign(&list));
                }
                PollStep::RevokeIncremental { partitions } => {
                    let list = tpl(&partitions);
                    self.rebalance_callback(true, &Rebalance::Revoke(&list));
                    let done = self
                        .shared
                        .lock()
                        .finish_incremental_revoke(self.client, &partitions);
                    self.shared.publish();
                    if done.is_err() {
                        return Err(crashed(dead_error()));
                    }
                    self.rebalance_callback(false, &Rebalance::Revoke(&list));
                }
                PollStep::AssignIncremental {
                    generation,
                    partitions,
                } => {
                    let list = tpl(&partitions);
                    self.rebalance_callback(true, &Rebalance::Assign(&list));
                    self.shared.lock().finish_incremental_assign(
                        self.client,
                        generation,
                        &partitions,
                    );
                    self.shared.publish();
                    self.rebalance_callback(false, &Rebalance::Assign(&list));
                }
                PollStep::CommitCallback(result, offsets) => {
                    if let Some(handler) = &self.handler {
                        let list =
                            tpl_with_offsets(offsets.into_iter().map(|(tp, o)| (tp, Some(o))))?;
                        handler.commit_callback(result, &list);
                    }
                }
                PollStep::Hold { held: h, delay } => {
                    held = Some(h);
                    tokio::time::sleep(delay).await;
                }
                PollStep::Deliver(message) => return Ok(message),
                PollStep::Wait => self.shared.changed().await,
            }
        }
    }

    /// A seek through the world (see [`positioning`](super::positioning)): unwinds when the
    /// instance crashed before or after it.
    fn positioning<T>(
        &self,
        f: impl FnOnce(&mut World, &mut ConsumerState, Incarnation) -> Result<KafkaResult<T>, Crashed>,
    ) -> KafkaResult<T> {
        match self.with_live(|world, c| f(world, c, self.incarnation))? {
            Ok(result) => result,
            Err(Crashed) => Err(crashed(dead_error())),
        }
    }

    fn store(
        &self,
        tp: TopicPartition,
        stored: i64,
        anchor: RecordPosition,
        explicit_list: bool,
    ) -> KafkaResult<()> {
        let outcome = self.with_live(|world, c| {
            if explicit_list && c.settings.enable_auto_offset_store {
                return Ok(Err(KafkaError::StoreOffset(
                    RDKafkaErrorCode::InvalidArgument,
                )));
            }
            let store = Operation::StoreOffset;
            let what = format_args!("{store} of {anchor}");
            let injection = world.intercept_call(store, self.incarnation, Some(&anchor), &what)?;
            let result = if injection.fail {
                Err(KafkaError::StoreOffset(RDKafkaErrorCode::Fail))
            } else if !c.assignment.contains(&tp) {
                Err(KafkaError::StoreOffset(RDKafkaErrorCode::State))
            } else {
                c.stored.insert(tp.clone(), stored);
                world.record(
                    Some(self.incarnation),
                    HistoryEvent::OffsetStored {
                        partition: tp,
                        offset: stored,
                    },
                );
                Ok(())
            };
            world.complete_call(&injection, self.incarnation, &what)?;
            Ok(result)
        })?;
        match outcome {
            Ok(result) => result,
            Err(Crashed) => Err(crashed(dead_error())),
        }
    }
}

impl Drop for SimConsumer {
    /// A close by a live instance: librdkafka revokes the assignment through the rebalance
    /// callback (a commit made there counts), then leaves the group. A crashed instance's
    /// consumer calls nothing.
    fn drop(&mut self) {
        let revoke = {
            let mut world = self.shared.lock();
            let alive = world.alive(self.incarnation);
            match world.consumers.get_mut(&self.client) {
                Some(c) if alive && c.assigned && self.handler.is_some() => {
                    c.subscription.clear();
                    c.closing = true;
                    Some(c.group_partitions())
                }
                _ => None,
            }
        };
        if let Some(partitions) = revoke {
            let list = tpl(&partitions);
            self.rebalance_callback(true, &Rebalance::Revoke(&list));
            let revoked = self.shared.lock().finish_revoke(self.client, false);
            self.shared.publish();
            if revoked.is_ok() {
                self.rebalance_callback(false, &Rebalance::Revoke(&list));
            }
        }
        self.shared.lock().close_consumer(self.client);
        self.shared.publish();
    }
}

impl ConsumerHandle for SimConsumer {
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        if topics.is_empty() {
            return Err(KafkaError::Subscription("no topics given".into()));
        }
        if let Some(pattern) = topics.iter().find(|t| t.starts_with('^')) {
            return Err(KafkaError::Subscription(format!(
                "effectively-once simulator: regex subscriptions ({pattern}) are not modelled"
            )));
        }
        let mut topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        topics.sort();
        topics.dedup();
        self.with_live(|world, c| {
            if let Some(unknown) = topics.iter().find(|t| !world.topics.contains_key(t.as_str())) {
                tracing::warn!("effectively-once: subscribed topic {unknown:?} does not exist in the simulated cluster");
                c.errors.push_back(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition));
            }
            c.subscription = topics.clone();
            world.touch();
            if let Some(member) = &c.member {
                let mut out = Events::new();
                world.group_mut(&c.settings.group_id).resubscribe(member, topics, &mut out);
                world.record_all(out);
            }
        })
    }

    /// As librdkafka: a consumer holding an assignment keeps it (and its membership) until its
    /// next poll, which revokes it through the rebalance callback and leaves the group.
    fn unsubscribe(&self) {
        let _ = self.with_live(|world, c| {
            c.subscription.clear();
            world.touch();
            if c.assigned {
                return;
            }
            c.positions.clear();
            c.starts.clear();
            c.stored.clear();
            if let Some(member) = c.member.take() {
                world.remove_member(&c.settings.group_id, &member, MemberRemoval::Left);
            }
            c.generation = -1;
        });
    }

    /// The assigned partitions, each with the offset a manual assignment gave it
    /// (`Invalid` for the group's).
    fn assignment(&self) -> KafkaResult<TopicPartitionList> {
        let partitions = self.with_live(|_, c| {
            c.assignment
                .iter()
                .map(|tp| (tp.clone(), c.assigned_offsets.get(tp).copied()))
                .collect::<Vec<_>>()
        })?;
        let mut list = TopicPartitionList::with_capacity(partitions.len());
        for (tp, offset) in partitions {
            let offset = offset.map_or(Offset::Invalid, Offset::from_raw);
            list.add_partition_offset(&tp.topic, tp.partition, offset)?;
        }
        Ok(list)
    }

    fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.with_live(|world, c| world.change_assignment(c, Change::Assign(assignment)))?
    }

    fn unassign(&self) -> KafkaResult<()> {
        self.with_live(|world, c| world.change_assignment(c, Change::Unassign))?
    }

    fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.with_live(|world, c| world.change_assignment(c, Change::Add(assignment)))?
    }

    fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.with_live(|world, c| world.change_assignment(c, Change::Remove(assignment)))?
    }

    fn assignment_lost(&self) -> bool {
        self.with_live(|_, c| c.lost).unwrap_or(false)
    }

    fn rebalance_protocol(&self) -> RebalanceProtocol {
        let cooperative = self.shared.lock().cooperative(self.client);
        self.with_live(|_, c| match (c.joined_once, cooperative) {
            (false, _) => RebalanceProtocol::None,
            (true, true) => RebalanceProtocol::Cooperative,
            (true, false) => RebalanceProtocol::Eager,
        })
        .unwrap_or(RebalanceProtocol::None)
    }

    fn fetch_watermarks(
        &self,
        topic: &str,
        partition: i32,
        _timeout: Timeout,
    ) -> KafkaResult<(i64, i64)> {
        let tp = TopicPartition::new(topic, partition);
        self.with_live(|world, _| world.partition(&tp).map(|p| (0, p.end_offset())))?
            .ok_or(KafkaError::MetadataFetch(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            ))
    }

    fn subscription(&self) -> KafkaResult<TopicPartitionList> {
        let topics = self.with_live(|_, c| c.subscription.clone())?;
        let mut list = TopicPartitionList::with_capacity(topics.len());
        for topic in &topics {
            list.add_partition(topic, -1);
        }
        Ok(list)
    }

    fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        let list = explicit_offsets(offsets)?;
        let anchor = self.shared.lock().current_record(self.incarnation);
        self.commit_intercepted(Operation::Commit, anchor, list, mode)
    }

    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
        let (offsets, anchor) = {
            let world = self.shared.lock();
            (
                world.uncommitted_stored(self.client),
                world.current_record(self.incarnation),
            )
        };
        if offsets.is_empty() {
            // librdkafka sends no request and answers `_NO_OFFSET`.
            if !self.shared.lock().alive(self.incarnation) {
                return Err(crashed(dead_error()));
            }
            return Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset));
        }
        self.commit_intercepted(Operation::Commit, anchor, offsets, mode)
    }

    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        let tp = TopicPartition::new(topic, partition);
        let anchor = tp.at(offset);
        self.store(tp, offset + 1, anchor, false)
    }

    fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        // As rd_kafka_offsets_store: each partition is stored on its own; the call fails only
        // when none could be stored, with the last error.
        let mut last_error = None;
        let mut stored = 0;
        for elem in offsets.elements() {
            let Offset::Offset(o) = elem.offset() else {
                return Err(KafkaError::StoreOffset(RDKafkaErrorCode::InvalidArgument));
            };
            let tp = TopicPartition::new(elem.topic(), elem.partition());
            let anchor = tp.at(o - 1);
            match self.store(tp, o, anchor, true) {
                Ok(()) => stored += 1,
                Err(e @ KafkaError::StoreOffset(RDKafkaErrorCode::InvalidArgument)) => {
                    return Err(e);
                }
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            Some(e) if stored == 0 => Err(e),
            _ => Ok(()),
        }
    }

    /// As librdkafka's application position: `Invalid` until a record of the partition was
    /// handed out since it was assigned (the start, committed or reset, is not a position).
    /// (A partition whose first offsets are control records moves past them before any
    /// record is handed out; librdkafka would still say `Invalid` there.)
    fn position(&self) -> KafkaResult<TopicPartitionList> {
        let positions = self.with_live(|_, c| {
            c.assignment
                .iter()
                .map(|tp| {
                    let position = c.positions.get(tp).copied();
                    let moved = position.is_some() && position != c.starts.get(tp).copied();
                    (tp.clone(), position.filter(|_| moved))
                })
                .collect::<Vec<_>>()
        })?;
        tpl_with_offsets(positions)
    }

    fn committed(&self, _timeout: Timeout) -> KafkaResult<TopicPartitionList> {
        let committed = self.with_live(|world, c| {
            let group = world.groups.get(&c.settings.group_id);
            c.assignment
                .iter()
                .map(|tp| (tp.clone(), group.and_then(|g| g.committed.get(tp).copied())))
                .collect::<Vec<_>>()
        })?;
        tpl_with_offsets(committed)
    }

    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        _timeout: Timeout,
    ) -> KafkaResult<()> {
        let tp = TopicPartition::new(topic, partition);
        self.positioning(|world, c, incarnation| world.seek(c, incarnation, tp, offset))
    }

    fn seek_partitions(
        &self,
        partitions: TopicPartitionList,
        _timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        self.positioning(|world, c, incarnation| world.seek_partitions(c, incarnation, partitions))
    }

    fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        self.with_live(|world, c| world.pause(c, self.incarnation, partitions, true))?
    }

    fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        self.with_live(|world, c| world.pause(c, self.incarnation, partitions, false))?
    }

    fn committed_offsets(
        &self,
        partitions: TopicPartitionList,
        _timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        self.with_live(|world, c| world.committed_offsets(c, partitions))?
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.with_live(|_, c| {
            GroupMetadata(GroupMetadataRepr::Simulated {
                group: c.settings.group_id.clone(),
                generation: c.generation,
                member: c.member.clone(),
            })
        })
        .ok()
    }
}

impl ConsumerClient for SimConsumer {
    fn recv(&self) -> BoxFuture<'_, KafkaResult<OwnedMessage>> {
        Box::pin(self.recv_message())
    }

    fn split_partition_queue(
        &self,
        partition: TopicPartition,
    ) -> Option<Box<dyn PartitionQueueClient>> {
        SimPartitionQueue::split(self.shared.clone(), self.client, partition)
            .map(|q| Box::new(q) as Box<dyn PartitionQueueClient>)
    }

    fn commit_intercepted(
        &self,
        operation: Operation,
        anchor: Option<RecordPosition>,
        offsets: Vec<(TopicPartition, i64)>,
        mode: CommitMode,
    ) -> KafkaResult<()> {
        let kind = match mode {
            CommitMode::Sync => CommitKind::Sync,
            CommitMode::Async => CommitKind::Async,
        };
        let outcome =
            self.shared
                .lock()
                .intercepted_commit(self.client, operation, anchor, offsets, kind);
        self.shared.publish();
        match outcome {
            Ok(result) => result,
            Err(Crashed) => Err(crashed(dead_error())),
        }
    }
}
