//! librdkafka's poll loop over the simulated cluster: rebalances, fetches, commit callbacks,
//! and what a consumer hands the application next.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::Instant;

use super::config::IsolationLevel;
use super::group::{Events, GroupState, Member};
use super::log::StoredRecord;
use super::positioning::Starts;
use super::{ClientId, Committer, Crashed, PendingCommit, World, broker_down_error};
use crate::history::Operation;
use crate::history::{CommitKind, HistoryEvent, Incarnation, MemberRemoval};
use crate::history::{RecordPosition, TopicPartition};
use crate::run::fault_plan::Injection;

use super::consumer::JOIN_RETRY_BACKOFF;

/// librdkafka's `RD_KAFKA_OFFSET_STORED`.
const STORED: i64 = -1000;

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
    /// Cooperative protocol: revoke only these partitions, keep the rest.
    RevokeIncremental {
        partitions: Vec<TopicPartition>,
    },
    /// Cooperative protocol: take up `generation`, adding these partitions.
    AssignIncremental {
        generation: i32,
        partitions: Vec<TopicPartition>,
    },
    CommitCallback(KafkaResult<()>, Vec<(TopicPartition, i64)>),
    /// The record is handed to the application: it was delivered in this very poll.
    Deliver(OwnedMessage),
    /// A record was picked, but a stall or a freeze holds up its hand-over: wait `delay`,
    /// then [`resume`](World::resume) it. Nothing of it is consumed yet, so a recv future
    /// dropped meanwhile loses nothing (rdkafka's `recv` is cancel-safe).
    Hold {
        held: Held,
        delay: Duration,
    },
    Wait,
}

/// A record picked for the application whose hand-over is held up (see [`PollStep::Hold`]).
/// The faults of its recv fired when it was picked; what delivering it does (the position,
/// the auto-stored offset, the history, a crash after the recv) waits for the hand-over.
pub(crate) struct Held {
    position: RecordPosition,
    injection: Injection,
    /// Picked by the queue of this split partition, not by the consumer's `recv`.
    queue: Option<TopicPartition>,
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
        record.payload.as_deref().map(<[u8]>::to_vec),
        record.key.as_deref().map(<[u8]>::to_vec),
        position.topic.to_string(),
        Timestamp::CreateTime(record.timestamp),
        position.partition,
        position.offset,
        headers,
    )
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
        self.auto_commit_of(client, kind, None)
    }

    /// The auto-commit of the stored offsets of `only` these partitions (all when `None`).
    pub(crate) fn auto_commit_of(
        &mut self,
        client: ClientId,
        kind: CommitKind,
        only: Option<&[TopicPartition]>,
    ) -> Result<(), Crashed> {
        let mut offsets = self.uncommitted_stored(client);
        if let Some(only) = only {
            offsets.retain(|(tp, _)| only.contains(tp));
        }
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

    /// The client's incarnation and, if its process is frozen at `now`, until when; `None`
    /// when the client or its instance is gone.
    pub(super) fn polling_instance(
        &self,
        client: ClientId,
        now: Instant,
    ) -> Option<(Incarnation, Option<Instant>)> {
        let incarnation = self.consumers.get(&client)?.incarnation;
        let run = self.run.lock();
        run.alive(incarnation)
            .then(|| (incarnation, run.frozen_until_at(incarnation, now)))
    }

    pub(crate) fn poll_step(&mut self, client: ClientId, may_return: bool) -> PollStep {
        self.poll_step_at(client, may_return, Instant::now())
    }

    /// [`poll_step`](Self::poll_step) at `now` (the virtual clock's reading).
    pub(crate) fn poll_step_at(
        &mut self,
        client: ClientId,
        may_return: bool,
        now: Instant,
    ) -> PollStep {
        let Some((incarnation, frozen_until)) = self.polling_instance(client, now) else {
            return PollStep::Dead;
        };
        if let Some(until) = frozen_until {
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
            if session_lost && c.assigned {
                return PollStep::Revoke {
                    partitions: c.group_partitions(),
                    lost: true,
                };
            }
            return PollStep::Wait;
        }
        let c = self.consumers.get(&client).expect("checked");
        if c.subscription.is_empty() && c.assigned {
            // Unsubscribed: revoke through the callback, then leave (`finish_revoke`).
            return PollStep::Revoke {
                partitions: c.group_partitions(),
                lost: false,
            };
        }
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
        self.poll_fetch(client, incarnation, may_return, latency, None)
    }

    /// Group membership work done inside poll: rejoin after losing the membership, join,
    /// revoke for a rebalance, sync the new assignment.
    fn poll_group(&mut self, client: ClientId, now: Instant) -> Option<PollStep> {
        // This runs on every poll: the group id and the member id are borrowed, and copied only
        // on the way to a change of the group.
        let c = self.consumers.get(&client).expect("caller checked");
        let incarnation = c.incarnation;
        // A max.poll breach is handed to the application first, then the lost partitions.
        if c.poll_exceeded {
            let c = self.consumers.get_mut(&client).expect("checked");
            c.poll_exceeded = false;
            self.touch();
            return Some(PollStep::Error(KafkaError::MessageConsumption(
                RDKafkaErrorCode::PollExceeded,
            )));
        }
        // A static member replaced by a newer one with its `group.instance.id`: librdkafka
        // raises a fatal error (`FENCED_INSTANCE_ID`), loses its assignment and joins no more.
        if !c.fatal && self.static_member_fenced(client) {
            self.fence(client);
        }
        let c = self.consumers.get_mut(&client).expect("checked");
        if c.fatal {
            if let Some(error) = c.errors.pop_front() {
                return Some(PollStep::Error(error));
            }
            if c.assigned {
                return Some(PollStep::Revoke {
                    partitions: c.group_partitions(),
                    lost: true,
                });
            }
            c.member = None;
            c.generation = -1;
            return None;
        }
        // A static member that missed `max.poll.interval.ms` dropped its member id without
        // leaving (KIP-345): its assignment is lost; it rejoins under its instance id.
        if c.member.is_none() && c.assigned && c.lost {
            return Some(PollStep::Revoke {
                partitions: c.group_partitions(),
                lost: true,
            });
        }
        // The coordinator removed us (session timeout, max.poll breach): the assignment (even
        // an empty one) is lost.
        if let Some(member) = &c.member {
            let known = self
                .groups
                .get(&c.settings.group_id)
                .is_some_and(|g| g.members.contains_key(member));
            if !known {
                if c.assigned {
                    return Some(PollStep::Revoke {
                        partitions: c.group_partitions(),
                        lost: true,
                    });
                }
                let c = self.consumers.get_mut(&client).expect("checked");
                c.member = None;
                c.generation = -1;
            }
        }
        let c = self.consumers.get(&client).expect("checked");
        match c.member.as_deref() {
            None => {
                // librdkafka does not join before one of the subscribed topics exists.
                if !c
                    .subscription
                    .iter()
                    .any(|t| self.topics.contains_key(t.as_str()))
                {
                    return None;
                }
                let group_id = c.settings.group_id.clone();
                let c = self.consumers.get_mut(&client).expect("checked");
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
                    instance_id: c.settings.group_instance_id.clone(),
                    subscription: c.subscription.clone(),
                    strategies: c.settings.strategies.clone(),
                    session_timeout,
                    session_deadline: None,
                    joined: true,
                    assignment: Vec::new(),
                    abandoned: false,
                };
                let member_id = self.next_member_id(&client_name);
                let mut out = Events::new();
                let joined = self.group_mut(&group_id).join(&member_id, member, &mut out);
                self.record_all(out);
                let c = self.consumers.get_mut(&client).expect("checked");
                match joined {
                    Ok(()) => {
                        c.member = Some(member_id);
                        c.joined_once = true;
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
                    .get(&c.settings.group_id)
                    .expect("member of an existing group");
                if g.state == GroupState::PreparingRebalance && !g.members[member].joined {
                    let (group_id, member) = (c.settings.group_id.clone(), member.to_string());
                    if self.cooperative(client) {
                        self.cooperative_rejoin(client, &member);
                        return None;
                    }
                    let c = self.consumers.get_mut(&client).expect("checked");
                    if c.assigned {
                        return Some(PollStep::Revoke {
                            partitions: c.group_partitions(),
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
        let g = self.groups.get(&c.settings.group_id)?;
        let m = g.members.get(member)?;
        if g.state != GroupState::Stable || c.generation == g.generation {
            return None;
        }
        if self.cooperative(client) {
            return Some(self.cooperative_sync(client, g.generation, &m.assignment));
        }
        Some(PollStep::Assign {
            generation: g.generation,
            partitions: m.assignment.clone(),
        })
    }

    /// Picks the next record to hand to the application, if any: for the consumer's `recv`
    /// (`queue` is `None`) of a partition not split off, else of the queue's partition.
    pub(super) fn poll_fetch(
        &mut self,
        client: ClientId,
        incarnation: Incarnation,
        may_return: bool,
        latency: Duration,
        queue: Option<&TopicPartition>,
    ) -> PollStep {
        if let Some(error) = self.reset_out_of_range(client) {
            return PollStep::Error(error);
        }
        // Each candidate as (index in the assignment, offset): the record's position is only
        // built for the one delivered (this runs on every poll, with a buffer kept from poll
        // to poll).
        let mut candidates = std::mem::take(&mut self.fetch_candidates);
        candidates.clear();
        let mut eof = None;
        let c = self.consumers.get_mut(&client).expect("caller checked");
        let isolation = c.settings.isolation_level;
        for (i, tp) in c.assignment.iter().enumerate() {
            let Some(pos) = c.positions.get_mut(tp) else {
                continue;
            };
            let Some(partition) = self
                .topics
                .get(&tp.topic)
                .and_then(|t| t.partitions.get(tp.partition as usize))
            else {
                continue;
            };
            // Control records occupy offsets but are never delivered, nor (`read_committed`)
            // are the records of aborted transactions: step over them, up to the fetch limit.
            let end = partition.fetch_limit(isolation);
            while *pos < end && !partition.delivers(*pos, isolation) {
                *pos += 1;
            }
            let pos = *pos;
            if c.paused.contains(tp) {
                continue; // paused by the application: nothing of it is handed out
            }
            if queue.map_or(c.split.contains(tp), |q| q != tp) {
                continue; // handed out by its own queue, or not this queue's
            }
            if pos < end {
                candidates.push((i, pos));
            } else if c.settings.enable_partition_eof
                && c.eof_reported.get(tp) != Some(&pos)
                && eof.is_none()
            {
                eof = Some((tp.clone(), pos));
            }
        }
        let picked = if candidates.is_empty() && eof.is_none() {
            Err(PollStep::Wait)
        } else if !may_return && !latency.is_zero() {
            Err(PollStep::Sleep(latency))
        } else if let Some((tp, pos)) = eof {
            let c = self.consumers.get_mut(&client).expect("caller checked");
            c.eof_reported.insert(tp.clone(), pos);
            Err(PollStep::Error(KafkaError::PartitionEOF(tp.partition)))
        } else {
            Ok(candidates[self.run.lock().rng.below(candidates.len() as u64) as usize])
        };
        self.fetch_candidates = candidates;
        let (index, offset) = match picked {
            Ok(picked) => picked,
            Err(step) => return step,
        };
        let position = self.consumers[&client].assignment[index].at(offset);
        let recv = Operation::Recv;
        let Ok(injection) = self.intercept_call(
            recv,
            incarnation,
            Some(&position),
            &format_args!("{recv} of {position}"),
        ) else {
            return PollStep::Dead;
        };
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
        if let Some(freeze) = injection.freeze {
            // The process freezes right here, before the record is handed over.
            self.freeze(incarnation, freeze);
        }
        let held = Held {
            position,
            injection,
            queue: queue.cloned(),
        };
        match (injection.stall, injection.freeze) {
            (None, None) => self.hand_over(client, held),
            (stall, _) => PollStep::Hold {
                held,
                delay: stall.unwrap_or_default(),
            },
        }
    }

    /// Goes on with a held record once its delay is over: waits out a freeze of the process,
    /// then hands the record over.
    pub(crate) fn resume(&mut self, client: ClientId, held: Held) -> PollStep {
        let now = Instant::now();
        let Some((_, frozen_until)) = self.polling_instance(client, now) else {
            return PollStep::Dead;
        };
        match frozen_until {
            Some(until) => PollStep::Hold {
                held,
                delay: until - now,
            },
            None => self.hand_over(client, held),
        }
    }

    /// Delivers a picked record, in the poll that hands it to the application: the position
    /// moves past it, its offset is auto-stored, the history records it, a crash after the
    /// recv fires. A record held up meanwhile whose partition moved on (revoked, or a new
    /// position) is not delivered: the consumer polls again.
    fn hand_over(&mut self, client: ClientId, held: Held) -> PollStep {
        let Held {
            position,
            injection,
            queue,
        } = held;
        let c = self.consumers.get(&client).expect("caller checked");
        let (incarnation, isolation) = (c.incarnation, c.settings.isolation_level);
        let index = c
            .assignment
            .iter()
            .position(|tp| tp.topic == position.topic && tp.partition == position.partition);
        let current = index.is_some_and(|i| {
            let tp = &c.assignment[i];
            c.positions.get(tp) == Some(&position.offset) && !c.paused.contains(tp)
        });
        let Some(index) = index.filter(|_| current) else {
            return match queue {
                None => self.poll_step(client, true),
                Some(tp) => self.queue_step(client, &tp, true),
            };
        };
        let record = &self.topics[&position.topic].partitions[position.partition as usize].records
            [position.offset as usize];
        let message = owned_message(&position, record);
        let key = record.key_text();
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
        {
            let mut run = self.run.lock();
            run.set_current_record(incarnation, &position);
            run.record(
                Some(incarnation),
                HistoryEvent::Delivered {
                    position: position.clone(),
                    key,
                    read_committed: isolation == IsolationLevel::ReadCommitted,
                },
            );
        }
        let recv = Operation::Recv;
        let what = format_args!("{recv} of {position}");
        if self.complete_call(&injection, incarnation, &what).is_err() {
            return PollStep::Dead;
        }
        PollStep::Deliver(message)
    }

    /// After `pre_rebalance(Revoke)`: auto-commit (unless lost), drop the partitions, rejoin
    /// (or leave the group, once unsubscribed or closing).
    pub(crate) fn finish_revoke(&mut self, client: ClientId, lost: bool) -> Result<(), Crashed> {
        let c = self.consumers.get(&client).ok_or(Crashed)?;
        if !self.alive(c.incarnation) {
            return Err(Crashed);
        }
        if !lost && c.settings.enable_auto_commit {
            self.auto_commit(client, CommitKind::Revoke)?;
        }
        let c = self.consumers.get_mut(&client).ok_or(Crashed)?;
        let partitions = c.group_partitions();
        c.assignment.clear();
        c.group_assignment = None;
        c.assigned = false;
        c.lost = false;
        c.assigned_offsets.clear();
        c.positions.clear();
        c.starts.clear();
        c.stored.clear();
        c.eof_reported.clear();
        let (incarnation, group, member) =
            (c.incarnation, c.settings.group_id.clone(), c.member.clone());
        let leaving = c.subscription.is_empty();
        let closing = c.closing;
        if lost || leaving {
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
        match (lost, member) {
            (false, Some(member)) if leaving => {
                self.commits_in_flight_arrive(client);
                self.leave_group(&group, &member, closing);
            }
            (false, Some(member)) => {
                self.group_mut(&group).rejoin(&member);
                self.complete_rebalance(&group);
            }
            _ => {}
        }
        Ok(())
    }

    /// After `pre_rebalance(Assign)`: take the new partitions, starting from the committed
    /// offsets or `auto.offset.reset`.
    pub(crate) fn finish_assign(&mut self, client: ClientId, generation: i32) {
        let Some(c) = self.consumers.get(&client) else {
            return;
        };
        let (group_id, incarnation) = (c.settings.group_id.clone(), c.incarnation);
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
        let Starts {
            positions: starts,
            resets,
            errors,
        } = self.start_offsets(client, &assignment);
        let positions: BTreeMap<TopicPartition, i64> = starts.iter().cloned().collect();
        let c = self.consumers.get_mut(&client).expect("checked");
        c.generation = generation;
        // librdkafka lists a group's partitions as starting from the stored offset.
        c.assigned_offsets = assignment.iter().map(|tp| (tp.clone(), STORED)).collect();
        c.assignment = assignment;
        c.group_assignment = None;
        c.assigned = true;
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
                resets,
            },
        );
    }

    /// Graceful close (the consumer was dropped by a live instance): final auto-commit, then
    /// LeaveGroup.
    pub(crate) fn close_consumer(&mut self, client: ClientId) {
        let Some(c) = self.consumers.get(&client) else {
            return;
        };
        if !self.alive(c.incarnation) {
            return;
        }
        self.commits_in_flight_arrive(client);
        let c = &self.consumers[&client];
        // While the broker is down the close sends nothing: neither the final commit nor the
        // LeaveGroup gets through (`leave_group`).
        if c.settings.enable_auto_commit && self.broker_down().is_none() {
            let offsets = self.uncommitted_stored(client);
            let c = &self.consumers[&client];
            let (incarnation, group, member, instance, generation) = (
                c.incarnation,
                c.settings.group_id.clone(),
                c.member.clone(),
                c.settings.group_instance_id.clone(),
                c.generation,
            );
            if !offsets.is_empty() && !c.fatal {
                let committer = Committer {
                    member: member.as_deref(),
                    instance: instance.as_deref(),
                    generation,
                };
                let _ =
                    self.apply_commit(incarnation, &group, committer, &offsets, CommitKind::Close);
            }
        }
        let c = self.consumers.remove(&client).expect("checked");
        if let Some(member) = c.member {
            self.leave_group(&c.settings.group_id, &member, true);
        }
        self.touch();
    }

    /// librdkafka's close waits for the client's commits in flight before it leaves the
    /// group: they arrive now (unless the broker is down: then nothing gets through).
    fn commits_in_flight_arrive(&mut self, client: ClientId) {
        if self.broker_down().is_some() {
            return;
        }
        let (own, others): (Vec<PendingCommit>, Vec<PendingCommit>) =
            std::mem::take(&mut self.async_commits)
                .into_iter()
                .partition(|p| p.client == client);
        self.async_commits = others;
        self.commits_arrive(own);
    }

    /// The member leaves the group (LeaveGroup), unless the broker is down: then the request
    /// never arrives, and the member, whose client is gone, stays until its session runs out
    /// (measured on the mock cluster: `tests/brokers/close_during_outage.rs`). A static
    /// member's close sends no LeaveGroup either (KIP-345, librdkafka's
    /// `rd_kafka_cgrp_leave_maybe`): it stays until its session runs out, unless a restart
    /// with its `group.instance.id` takes its place first. (`unsubscribe` does leave.)
    pub(crate) fn leave_group(&mut self, group: &str, member: &str, closing: bool) {
        let static_close = closing
            && self
                .groups
                .get(group)
                .and_then(|g| g.members.get(member))
                .is_some_and(|m| m.instance_id.is_some());
        if self.broker_down().is_none() && !static_close {
            self.remove_member(group, member, MemberRemoval::Left);
            return;
        }
        let now = Instant::now();
        if let Some(m) = self
            .groups
            .get_mut(group)
            .and_then(|g| g.members.get_mut(member))
        {
            m.abandoned = true;
            m.session_deadline.get_or_insert(now + m.session_timeout);
        }
    }
}
