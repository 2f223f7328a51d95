//! The simulated group consumer: librdkafka's consumer semantics over the simulated cluster.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::time::Instant;

use super::config::{ConsumerSettings, IsolationLevel, OffsetReset};
use super::group::{Events, GroupState, Member};
use super::log::StoredRecord;
use super::{ClientId, Crashed, Shared, World, broker_down_error, crashed, dead_error};
use crate::broker::{BrokerConsumer, BrokerSession};
use crate::client::{
    ConsumerHandle, GroupMetadata, GroupMetadataRepr, KafkaConsumer, RebalanceHandler,
    explicit_offsets,
};
use crate::history::Operation;
use crate::history::{CommitKind, HistoryEvent, Incarnation, MemberRemoval};
use crate::history::{RecordPosition, TopicPartition};

/// How long librdkafka waits before retrying a JoinGroup the coordinator refused.
const JOIN_RETRY_BACKOFF: Duration = Duration::from_secs(1);

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
    /// librdkafka left the group because `max.poll.interval.ms` passed without a poll; the next
    /// poll reports it.
    pub poll_exceeded: bool,
    pub join_retry_at: Option<Instant>,
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
            positions: BTreeMap::new(),
            stored: BTreeMap::new(),
            starts: BTreeMap::new(),
            polling: 0,
            last_poll: now,
            errors: VecDeque::new(),
            commit_callbacks: VecDeque::new(),
            next_auto_commit,
            eof_reported: BTreeMap::new(),
            poll_exceeded: false,
            join_retry_at: None,
        }
    }

    /// When librdkafka gives up on the application and leaves the group.
    pub(crate) fn max_poll_deadline(&self) -> Option<Instant> {
        (self.polling == 0 && self.member.is_some() && !self.poll_exceeded)
            .then(|| self.last_poll + self.settings.max_poll_interval)
    }

    /// Waiting in `recv` with nothing to deliver, nothing pending and nothing consumed that is
    /// not committed yet.
    pub(crate) fn idle(&self, world: &World) -> bool {
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
            let done = group
                .and_then(|g| g.committed.get(tp))
                .or(self.starts.get(tp))
                .copied()
                .unwrap_or(0);
            // Consumed and committed up to the last record it would be handed (markers and
            // aborted records after it do not count).
            world
                .partition(tp)
                .is_none_or(|p| p.settled_from(done.min(position), self.settings.isolation_level))
        })
    }
}

/// What `recv` must do next.
pub(crate) enum PollStep {
    Dead,
    Error(KafkaError),
    Sleep(Duration),
    Revoke {
        partitions: Vec<TopicPartition>,
        lost: bool,
    },
    Assign {
        generation: i32,
        partitions: Vec<TopicPartition>,
    },
    CommitCallback(KafkaResult<()>, Vec<(TopicPartition, i64)>),
    Deliver {
        message: OwnedMessage,
        delay: Option<Duration>,
    },
    Wait,
}

fn owned_message(position: &RecordPosition, record: &StoredRecord) -> OwnedMessage {
    let headers = (!record.headers.is_empty()).then(|| {
        record.headers.iter().fold(
            OwnedHeaders::new_with_capacity(record.headers.len()),
            |h, (key, value)| {
                h.insert(Header {
                    key: key.as_str(),
                    value: value.as_deref(),
                })
            },
        )
    });
    OwnedMessage::new(
        record.payload.clone(),
        record.key.clone(),
        position.topic.clone(),
        Timestamp::CreateTime(record.timestamp),
        position.partition,
        position.offset,
        headers,
    )
}

fn tpl(partitions: &[TopicPartition]) -> TopicPartitionList {
    let mut list = TopicPartitionList::with_capacity(partitions.len());
    for tp in partitions {
        list.add_partition(&tp.topic, tp.partition);
    }
    list
}

fn tpl_with_offsets(
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

impl World {
    /// Stored offsets newer than the group's committed offsets, for the assigned partitions.
    pub(crate) fn uncommitted_stored(&self, client: ClientId) -> Vec<(TopicPartition, i64)> {
        self.uncommitted_stored_iter(client)
            .map(|(tp, stored)| (tp.clone(), stored))
            .collect()
    }

    /// Whether [`uncommitted_stored`](Self::uncommitted_stored) has anything, without
    /// building it (the driver asks on every step).
    pub(crate) fn has_uncommitted_stored(&self, client: ClientId) -> bool {
        self.uncommitted_stored_iter(client).next().is_some()
    }

    fn uncommitted_stored_iter(
        &self,
        client: ClientId,
    ) -> impl Iterator<Item = (&TopicPartition, i64)> {
        let c = self.consumers.get(&client);
        let committed = c
            .and_then(|c| self.groups.get(&c.settings.group_id))
            .map(|g| &g.committed);
        c.into_iter().flat_map(move |c| {
            c.assignment.iter().filter_map(move |tp| {
                let stored = *c.stored.get(tp)?;
                let newer = committed
                    .and_then(|m| m.get(tp))
                    .is_none_or(|done| stored > *done);
                newer.then_some((tp, stored))
            })
        })
    }

    /// librdkafka's auto-commit of stored offsets (periodic, on revoke, on close).
    pub(crate) fn auto_commit(
        &mut self,
        client: ClientId,
        kind: CommitKind,
    ) -> Result<(), Crashed> {
        let offsets = self.uncommitted_stored(client);
        if offsets.is_empty() {
            return Ok(());
        }
        let incarnation = self.consumers.get(&client).ok_or(Crashed)?.incarnation;
        let anchor = self.current_record(incarnation);
        let result =
            self.intercepted_commit(client, Operation::AutoCommit, anchor, offsets.clone(), kind)?;
        if let Some(c) = self.consumers.get_mut(&client) {
            c.commit_callbacks.push_back((result, offsets));
        }
        Ok(())
    }

    fn poll_step(&mut self, client: ClientId, may_return: bool) -> PollStep {
        let now = Instant::now();
        let Some(c) = self.consumers.get(&client) else {
            return PollStep::Dead;
        };
        let incarnation = c.incarnation;
        if !self.alive(incarnation) {
            return PollStep::Dead;
        }
        if let Some(until) = self.frozen_until(incarnation) {
            return PollStep::Sleep(until - now);
        }
        let c = self.consumers.get_mut(&client).expect("checked");
        if let Some((result, offsets)) = c.commit_callbacks.pop_front() {
            // Serving the last callback can make the consumer idle: let the driver look again.
            self.touch();
            return PollStep::CommitCallback(result, offsets);
        }
        if self.broker_down().is_some() {
            // Nothing reaches the broker: no fetch, no join, no sync. The lost connection is
            // reported first; a session that runs out meanwhile costs the partitions at once
            // (librdkafka revokes them as lost on its own); then the consumer waits for the
            // broker (the world changes when it is back).
            let c = self.consumers.get_mut(&client).expect("checked");
            if let Some(error) = c.errors.pop_front() {
                return PollStep::Error(error);
            }
            let session_lost = c.member.as_ref().is_some_and(|member| {
                !self
                    .groups
                    .get(&c.settings.group_id)
                    .is_some_and(|g| g.members.contains_key(member))
            });
            if session_lost && !c.assignment.is_empty() {
                return PollStep::Revoke {
                    partitions: c.assignment.clone(),
                    lost: true,
                };
            }
            return PollStep::Wait;
        }
        let c = self.consumers.get(&client).expect("checked");
        if !c.subscription.is_empty() {
            if let Some(step) = self.poll_group(client, now) {
                return step;
            }
        }
        let latency = self.latency();
        let c = self.consumers.get_mut(&client).expect("checked");
        if !c.errors.is_empty() {
            if !may_return && !latency.is_zero() {
                return PollStep::Sleep(latency);
            }
            return PollStep::Error(c.errors.pop_front().expect("not empty"));
        }
        self.poll_fetch(client, incarnation, may_return, latency)
    }

    /// Group membership work done inside poll: rejoin after losing the membership, join,
    /// revoke for a rebalance, sync the new assignment.
    fn poll_group(&mut self, client: ClientId, now: Instant) -> Option<PollStep> {
        let c = self.consumers.get(&client).expect("caller checked");
        let group_id = c.settings.group_id.clone();
        let incarnation = c.incarnation;
        // The coordinator removed us (session timeout, max.poll breach): the assignment is lost.
        if let Some(member) = &c.member {
            let known = self
                .groups
                .get(&group_id)
                .is_some_and(|g| g.members.contains_key(member));
            if !known {
                if !c.assignment.is_empty() {
                    return Some(PollStep::Revoke {
                        partitions: c.assignment.clone(),
                        lost: true,
                    });
                }
                let c = self.consumers.get_mut(&client).expect("checked");
                c.member = None;
                c.generation = -1;
            }
        }
        let c = self.consumers.get_mut(&client).expect("checked");
        if c.poll_exceeded {
            c.poll_exceeded = false;
            self.touch();
            return Some(PollStep::Error(KafkaError::MessageConsumption(
                RDKafkaErrorCode::PollExceeded,
            )));
        }
        match c.member.clone() {
            None => {
                if c.join_retry_at.is_some_and(|t| t > now) {
                    return Some(PollStep::Sleep(c.join_retry_at.expect("checked") - now));
                }
                let (min, max) = self.settings.session_timeout_bounds;
                let session_timeout = c.settings.session_timeout;
                let client_name = c.settings.client_id.clone();
                if session_timeout < min || session_timeout > max {
                    c.join_retry_at = Some(now + JOIN_RETRY_BACKOFF);
                    return Some(PollStep::Error(KafkaError::MessageConsumption(
                        RDKafkaErrorCode::InvalidSessionTimeout,
                    )));
                }
                let member = Member {
                    incarnation,
                    subscription: c.subscription.clone(),
                    strategies: c.settings.strategies.clone(),
                    session_timeout,
                    session_deadline: None,
                    joined: true,
                    assignment: Vec::new(),
                };
                let member_id = self.next_member_id(&client_name);
                let mut out = Events::new();
                let joined = self.group_mut(&group_id).join(&member_id, member, &mut out);
                self.record_all(out);
                let c = self.consumers.get_mut(&client).expect("checked");
                match joined {
                    Ok(()) => {
                        c.member = Some(member_id);
                        c.join_retry_at = None;
                        self.complete_rebalance(&group_id);
                    }
                    Err(code) => {
                        c.join_retry_at = Some(now + JOIN_RETRY_BACKOFF);
                        return Some(PollStep::Error(KafkaError::MessageConsumption(code)));
                    }
                }
            }
            Some(member) => {
                let g = self
                    .groups
                    .get(&group_id)
                    .expect("member of an existing group");
                if g.state == GroupState::PreparingRebalance && !g.members[&member].joined {
                    if !c.assignment.is_empty() {
                        return Some(PollStep::Revoke {
                            partitions: c.assignment.clone(),
                            lost: false,
                        });
                    }
                    self.group_mut(&group_id).rejoin(&member);
                    self.touch();
                    self.complete_rebalance(&group_id);
                }
            }
        }
        let c = self.consumers.get(&client).expect("checked");
        let member = c.member.as_ref()?;
        let g = self.groups.get(&group_id)?;
        let m = g.members.get(member)?;
        (g.state == GroupState::Stable && c.generation != g.generation).then(|| PollStep::Assign {
            generation: g.generation,
            partitions: m.assignment.clone(),
        })
    }

    /// Picks the next record to hand to the application, if any.
    fn poll_fetch(
        &mut self,
        client: ClientId,
        incarnation: Incarnation,
        may_return: bool,
        latency: Duration,
    ) -> PollStep {
        let c = self.consumers.get(&client).expect("caller checked");
        let isolation = c.settings.isolation_level;
        // Control records occupy offsets but are never delivered, nor (`read_committed`) are
        // the records of aborted transactions: step over them, up to the fetch limit.
        let mut skips = Vec::new();
        for tp in &c.assignment {
            let Some(&pos) = c.positions.get(tp) else {
                continue;
            };
            let Some(partition) = self
                .topics
                .get(&tp.topic)
                .and_then(|t| t.partitions.get(tp.partition as usize))
            else {
                continue;
            };
            let limit = partition.fetch_limit(isolation);
            let mut next = pos;
            while next < limit && !partition.delivers(next, isolation) {
                next += 1;
            }
            if next != pos {
                skips.push((tp.clone(), next));
            }
        }
        let c = self.consumers.get_mut(&client).expect("caller checked");
        for (tp, next) in skips {
            c.positions.insert(tp, next);
        }
        let c = self.consumers.get(&client).expect("caller checked");
        // Each candidate as (index in the assignment, offset): the record's position is only
        // built for the one delivered (this runs on every poll).
        let mut candidates: Vec<(usize, i64)> = Vec::new();
        let mut eof = None;
        for (i, tp) in c.assignment.iter().enumerate() {
            let (Some(&pos), Some(end)) = (c.positions.get(tp), self.fetch_limit(tp, isolation))
            else {
                continue;
            };
            if pos < end {
                candidates.push((i, pos));
            } else if c.settings.enable_partition_eof
                && c.eof_reported.get(tp) != Some(&pos)
                && eof.is_none()
            {
                eof = Some((tp.clone(), pos));
            }
        }
        if candidates.is_empty() && eof.is_none() {
            return PollStep::Wait;
        }
        if !may_return && !latency.is_zero() {
            return PollStep::Sleep(latency);
        }
        if let Some((tp, pos)) = eof {
            let c = self.consumers.get_mut(&client).expect("caller checked");
            c.eof_reported.insert(tp.clone(), pos);
            return PollStep::Error(KafkaError::PartitionEOF(tp.partition));
        }
        let (index, offset) =
            candidates.swap_remove(self.rng.below(candidates.len() as u64) as usize);
        let position = self.consumers[&client].assignment[index].at(offset);
        let injection = self.intercept(Operation::Recv, incarnation, Some(position.clone()));
        if injection.crash_before {
            self.crash(
                incarnation,
                format!("fault: crash before recv of {position}"),
            );
            return PollStep::Dead;
        }
        if injection.broker_restart.is_some() {
            // The broker went down before handing the record out: the poll reports the lost
            // connection (queued by the restart) and the record waits for the broker.
            let c = self.consumers.get_mut(&client).expect("caller checked");
            return PollStep::Error(c.errors.pop_front().unwrap_or_else(broker_down_error));
        }
        if injection.fail {
            return PollStep::Error(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure,
            ));
        }
        let record = &self.topics[&position.topic].partitions[position.partition as usize].records
            [position.offset as usize];
        let message = owned_message(&position, record);
        let key = record
            .key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned());
        let c = self.consumers.get_mut(&client).expect("caller checked");
        let tp = &c.assignment[index];
        // The partition is assigned, so its position exists: update in place (no key clone).
        if let Some(next) = c.positions.get_mut(tp) {
            *next = position.offset + 1;
        }
        if c.settings.enable_auto_offset_store {
            match c.stored.get_mut(tp) {
                Some(stored) => *stored = position.offset + 1,
                None => {
                    c.stored.insert(tp.clone(), position.offset + 1);
                }
            }
        }
        if let Some(state) = self.instances.get_mut(&incarnation.instance) {
            state.current_record = Some(position.clone());
        }
        self.record(
            Some(incarnation),
            HistoryEvent::Delivered {
                position: position.clone(),
                key,
                read_committed: isolation == IsolationLevel::ReadCommitted,
            },
        );
        if injection.crash_after {
            self.crash(
                incarnation,
                format!("fault: crash after recv of {position}"),
            );
            return PollStep::Dead;
        }
        if let Some(freeze) = injection.freeze {
            self.freeze(incarnation, freeze);
        }
        let delay = match (injection.stall, injection.freeze) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or_default() + b.unwrap_or_default()),
        };
        PollStep::Deliver { message, delay }
    }

    /// After `pre_rebalance(Revoke)`: auto-commit (unless lost), drop the partitions, rejoin.
    fn finish_revoke(&mut self, client: ClientId, lost: bool) -> Result<(), Crashed> {
        let c = self.consumers.get(&client).ok_or(Crashed)?;
        if !self.alive(c.incarnation) {
            return Err(Crashed);
        }
        if !lost && c.settings.enable_auto_commit {
            self.auto_commit(client, CommitKind::Revoke)?;
        }
        let c = self.consumers.get_mut(&client).ok_or(Crashed)?;
        let partitions = std::mem::take(&mut c.assignment);
        c.positions.clear();
        c.starts.clear();
        c.stored.clear();
        c.eof_reported.clear();
        let (incarnation, group, member) =
            (c.incarnation, c.settings.group_id.clone(), c.member.clone());
        if lost {
            c.member = None;
            c.generation = -1;
        }
        self.record(
            Some(incarnation),
            HistoryEvent::PartitionsRevoked {
                group: group.clone(),
                partitions,
                lost,
            },
        );
        if let (false, Some(member)) = (lost, member) {
            self.group_mut(&group).rejoin(&member);
            self.complete_rebalance(&group);
        }
        Ok(())
    }

    /// After `pre_rebalance(Assign)`: take the new partitions, starting from the committed
    /// offsets or `auto.offset.reset`.
    fn finish_assign(&mut self, client: ClientId, generation: i32) {
        let Some(c) = self.consumers.get(&client) else {
            return;
        };
        let (group_id, incarnation, reset) = (
            c.settings.group_id.clone(),
            c.incarnation,
            c.settings.auto_offset_reset,
        );
        let Some(g) = self.groups.get(&group_id) else {
            return;
        };
        let Some(m) = c.member.as_ref().and_then(|m| g.members.get(m)) else {
            return;
        };
        if g.generation != generation || g.state != GroupState::Stable {
            return;
        }
        let assignment = m.assignment.clone();
        let mut starts = Vec::new();
        let mut positions = BTreeMap::new();
        let mut errors = Vec::new();
        for tp in &assignment {
            let start = match (g.committed.get(tp), reset) {
                (Some(&committed), _) => Some(committed),
                (None, OffsetReset::Earliest) => Some(0),
                (None, OffsetReset::Latest) => self.end_offset(tp),
                (None, OffsetReset::Error) => {
                    errors.push(KafkaError::MessageConsumption(
                        RDKafkaErrorCode::AutoOffsetReset,
                    ));
                    None
                }
            };
            if let Some(start) = start {
                positions.insert(tp.clone(), start);
                starts.push((tp.clone(), start));
            }
        }
        let c = self.consumers.get_mut(&client).expect("checked");
        c.generation = generation;
        c.assignment = assignment;
        c.starts = positions.clone();
        c.positions = positions;
        c.stored.clear();
        c.errors.extend(errors);
        self.record(
            Some(incarnation),
            HistoryEvent::PartitionsAssigned {
                group: group_id,
                generation,
                partitions: starts,
            },
        );
    }

    /// Graceful close (the consumer was dropped by a live instance): final auto-commit, then
    /// LeaveGroup.
    fn close_consumer(&mut self, client: ClientId) {
        let Some(c) = self.consumers.get(&client) else {
            return;
        };
        if !self.alive(c.incarnation) {
            return;
        }
        if c.settings.enable_auto_commit {
            let offsets = self.uncommitted_stored(client);
            let c = &self.consumers[&client];
            let (incarnation, group, member, generation) = (
                c.incarnation,
                c.settings.group_id.clone(),
                c.member.clone(),
                c.generation,
            );
            if !offsets.is_empty() {
                let _ = self.apply_commit(
                    incarnation,
                    &group,
                    member.as_deref(),
                    generation,
                    &offsets,
                    CommitKind::Close,
                );
            }
        }
        let c = self.consumers.remove(&client).expect("checked");
        if let Some(member) = c.member {
            self.remove_member(&c.settings.group_id, &member, MemberRemoval::Left);
        }
        self.touch();
    }
}

/// A consumer of the simulated cluster, created by
/// [`InstanceContext::create_consumer`](crate::InstanceContext::create_consumer) from the same
/// `ClientConfig` production uses.
///
/// It behaves as librdkafka's consumer: `recv` polls the group (joins, rebalances and their
/// callbacks happen inside it), `enable.auto.offset.store` stores each offset as the message is
/// handed out, `enable.auto.commit` commits stored offsets every `auto.commit.interval.ms` and
/// when partitions are revoked or the consumer is dropped. Every call is an interception point
/// of the fault schedule. Once its instance crashed, any use of it unwinds the calling task.
///
/// In a run on a real broker ([`Simulation::run_on`](crate::Simulation::run_on)) the same type
/// wraps librdkafka's consumer, with the same interception points.
pub struct Consumer {
    shared: Arc<Shared>,
    client: ClientId,
    incarnation: Incarnation,
    handler: Option<Arc<dyn RebalanceHandler>>,
    /// On a real broker, librdkafka's consumer does the work.
    broker: Option<BrokerConsumer>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("incarnation", &self.incarnation)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// Marks a `recv` in progress for `max.poll.interval.ms` purposes.
struct PollGuard<'a> {
    shared: &'a Shared,
    client: ClientId,
}

impl<'a> PollGuard<'a> {
    fn enter(shared: &'a Shared, client: ClientId) -> Self {
        if let Some(c) = shared.lock().consumers.get_mut(&client) {
            c.polling += 1;
            c.last_poll = Instant::now();
        }
        PollGuard { shared, client }
    }
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.shared.lock().consumers.get_mut(&self.client) {
            c.polling -= 1;
            c.last_poll = Instant::now();
        }
    }
}

impl Consumer {
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
        Ok(Consumer {
            shared,
            client,
            incarnation,
            handler,
            broker: None,
        })
    }

    /// A consumer of the run's real broker.
    pub(crate) fn on_broker(
        shared: Arc<Shared>,
        incarnation: Incarnation,
        session: Arc<BrokerSession>,
        config: &ClientConfig,
        handler: Option<Arc<dyn RebalanceHandler>>,
    ) -> KafkaResult<Self> {
        let broker = BrokerConsumer::create(shared.clone(), incarnation, session, config, handler)?;
        Ok(Consumer {
            shared,
            client: ClientId(0),
            incarnation,
            handler: None,
            broker: Some(broker),
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

    fn commit_offsets(
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
        if let Some(broker) = &self.broker {
            return broker.recv().await;
        }
        let _poll = PollGuard::enter(&self.shared, self.client);
        let mut may_return = false;
        loop {
            let step = self.shared.lock().poll_step(self.client, may_return);
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
                PollStep::CommitCallback(result, offsets) => {
                    if let Some(handler) = &self.handler {
                        let list =
                            tpl_with_offsets(offsets.into_iter().map(|(tp, o)| (tp, Some(o))))?;
                        handler.commit_callback(result, &list);
                    }
                }
                PollStep::Deliver { message, delay } => {
                    if let Some(delay) = delay {
                        tokio::time::sleep(delay).await;
                        if !self.shared.lock().alive(self.incarnation) {
                            return Err(crashed(dead_error()));
                        }
                    }
                    return Ok(message);
                }
                PollStep::Wait => self.shared.changed().await,
            }
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
            let injection = world.intercept(
                Operation::StoreOffset,
                self.incarnation,
                Some(anchor.clone()),
            );
            if injection.crash_before {
                world.crash(
                    self.incarnation,
                    format!("fault: crash before store_offset of {anchor}"),
                );
                return Err(Crashed);
            }
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
            if injection.crash_after {
                world.crash(
                    self.incarnation,
                    format!("fault: crash after store_offset of {anchor}"),
                );
                return Err(Crashed);
            }
            Ok(result)
        })?;
        match outcome {
            Ok(result) => result,
            Err(Crashed) => Err(crashed(dead_error())),
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.broker.is_some() {
            return;
        }
        self.shared.lock().close_consumer(self.client);
        self.shared.publish();
    }
}

impl ConsumerHandle for Consumer {
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        if let Some(broker) = &self.broker {
            return broker.subscribe(topics);
        }
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
            if let Some(unknown) = topics.iter().find(|t| !world.topics.contains_key(*t)) {
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

    fn unsubscribe(&self) {
        if let Some(broker) = &self.broker {
            return broker.unsubscribe();
        }
        let _ = self.with_live(|world, c| {
            if c.settings.enable_auto_commit && !c.assignment.is_empty() {
                let offsets: Vec<(TopicPartition, i64)> = c
                    .assignment
                    .iter()
                    .filter_map(|tp| c.stored.get(tp).map(|o| (tp.clone(), *o)))
                    .collect();
                if !offsets.is_empty() {
                    let _ = world.apply_commit(
                        self.incarnation,
                        &c.settings.group_id,
                        c.member.as_deref(),
                        c.generation,
                        &offsets,
                        CommitKind::Revoke,
                    );
                }
            }
            if !c.assignment.is_empty() {
                let partitions = std::mem::take(&mut c.assignment);
                world.record(
                    Some(self.incarnation),
                    HistoryEvent::PartitionsRevoked {
                        group: c.settings.group_id.clone(),
                        partitions,
                        lost: false,
                    },
                );
            }
            c.positions.clear();
            c.starts.clear();
            c.stored.clear();
            c.subscription.clear();
            world.touch();
            if let Some(member) = c.member.take() {
                world.remove_member(&c.settings.group_id, &member, MemberRemoval::Left);
            }
            c.generation = -1;
        });
    }

    fn assignment(&self) -> KafkaResult<TopicPartitionList> {
        if let Some(broker) = &self.broker {
            return broker.assignment();
        }
        let partitions = self.with_live(|_, c| c.assignment.clone())?;
        Ok(tpl(&partitions))
    }

    fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        if let Some(broker) = &self.broker {
            return broker.commit(offsets, mode);
        }
        let list = explicit_offsets(offsets)?;
        let anchor = self.shared.lock().current_record(self.incarnation);
        self.commit_offsets(Operation::Commit, anchor, list, mode)
    }

    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
        if let Some(broker) = &self.broker {
            return broker.commit_consumer_state(mode);
        }
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
        self.commit_offsets(Operation::Commit, anchor, offsets, mode)
    }

    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        if let Some(broker) = &self.broker {
            return broker.store_offset(topic, partition, offset);
        }
        let tp = TopicPartition::new(topic, partition);
        let anchor = tp.at(offset);
        self.store(tp, offset + 1, anchor, false)
    }

    fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        if let Some(broker) = &self.broker {
            return broker.store_offsets(offsets);
        }
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

    fn position(&self) -> KafkaResult<TopicPartitionList> {
        if let Some(broker) = &self.broker {
            return broker.position();
        }
        let positions = self.with_live(|_, c| {
            c.assignment
                .iter()
                .map(|tp| (tp.clone(), c.positions.get(tp).copied()))
                .collect::<Vec<_>>()
        })?;
        tpl_with_offsets(positions)
    }

    fn committed(&self, _timeout: Timeout) -> KafkaResult<TopicPartitionList> {
        if let Some(broker) = &self.broker {
            return broker.committed(_timeout);
        }
        let committed = self.with_live(|world, c| {
            let group = world.groups.get(&c.settings.group_id);
            c.assignment
                .iter()
                .map(|tp| (tp.clone(), group.and_then(|g| g.committed.get(tp).copied())))
                .collect::<Vec<_>>()
        })?;
        tpl_with_offsets(committed)
    }

    fn group_metadata(&self) -> Option<GroupMetadata> {
        if let Some(broker) = &self.broker {
            return broker.group_metadata();
        }
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

impl KafkaConsumer for Consumer {
    type Message<'a> = OwnedMessage;

    fn recv(&self) -> impl Future<Output = KafkaResult<OwnedMessage>> + Send {
        self.recv_message()
    }

    fn commit_message(&self, message: &OwnedMessage, mode: CommitMode) -> KafkaResult<()> {
        if let Some(broker) = &self.broker {
            return broker.commit_message(message, mode);
        }
        let tp = TopicPartition::new(message.topic(), message.partition());
        let anchor = tp.at(message.offset());
        self.commit_offsets(
            Operation::CommitMessage,
            Some(anchor),
            vec![(tp, message.offset() + 1)],
            mode,
        )
    }

    fn store_offset_from_message(&self, message: &OwnedMessage) -> KafkaResult<()> {
        self.store_offset(message.topic(), message.partition(), message.offset())
    }
}
