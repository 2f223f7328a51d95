//! Timers (thaws, session timeouts, max.poll breaches, auto-commits, asynchronous commits)
//! and quiescence: when nothing is left to do.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::history::PartitionLog;
use crate::run::store_progress::Progress;

impl World {
    // ----- timers -----

    /// Fires every timer that is due: thaws, session timeouts, max.poll.interval breaches,
    /// auto-commits and asynchronous commits reaching the coordinator.
    pub(crate) fn fire_timers(&mut self) {
        let now = Instant::now();
        // Thaw frozen processes: heartbeats resume for members that were not removed.
        let thawed = self.run.lock().thaw(now);
        for incarnation in thawed {
            if self.alive(incarnation) && self.broker_down_until.is_none() {
                for group in self.groups.values_mut() {
                    for m in group.members.values_mut() {
                        if m.incarnation == incarnation && !m.abandoned {
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
            let resumed: BTreeSet<Incarnation> = self.run.lock().running_unfrozen().collect();
            for group in self.groups.values_mut() {
                for m in group.members.values_mut() {
                    if resumed.contains(&m.incarnation) && !m.abandoned {
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
            c.lost = c.assigned;
            let (group, member) = (
                c.settings.group_id.clone(),
                c.member.clone().expect("deadline needs a member"),
            );
            let still_member = self
                .groups
                .get(&group)
                .is_some_and(|g| g.members.contains_key(&member));
            if let Some(instance_id) = c.settings.group_instance_id.clone() {
                // KIP-345: a static member sends no LeaveGroup; librdkafka drops the member id
                // (its heartbeats stop) and rejoins under its instance id, which replaces the
                // old member unless the session ran out first.
                c.member = None;
                if let Some(m) = self
                    .groups
                    .get_mut(&group)
                    .and_then(|g| g.members.get_mut(&member))
                {
                    m.session_deadline.get_or_insert(now + m.session_timeout);
                }
                let incarnation = self.consumers[&id].incarnation;
                self.record(
                    Some(incarnation),
                    HistoryEvent::StaticMemberPollExceeded { group, instance_id },
                );
                self.touch();
            } else if still_member {
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
        self.commits_arrive(arrived);
    }

    /// Asynchronous commits reach the coordinator, in order. Their outcome reaches no
    /// callback (see `intercepted_commit`).
    pub(crate) fn commits_arrive(&mut self, arrived: Vec<PendingCommit>) {
        for p in arrived {
            if p.refused {
                self.record(
                    Some(p.incarnation),
                    HistoryEvent::CommitRejected {
                        group: p.group,
                        offsets: p.offsets,
                        kind: CommitKind::Async,
                        error: "injected failure: group rebalance in progress (not applied)".into(),
                    },
                );
            } else {
                let committer = Committer {
                    member: p.member.as_deref(),
                    instance: p.instance.as_deref(),
                    generation: p.generation,
                };
                let result = self.apply_commit(
                    p.incarnation,
                    &p.group,
                    committer,
                    &p.offsets,
                    CommitKind::Async,
                );
                if result == Err(RDKafkaErrorCode::FencedInstanceId) {
                    self.fence(p.client);
                }
            }
            self.touch();
        }
    }

    /// The earliest moment a timer fires.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        let now = Instant::now();
        let (thaws, frozen) = {
            let run = self.run.lock();
            (run.next_thaw(), run.frozen_at(now))
        };
        let sessions = self
            .groups
            .values()
            .flat_map(|g| g.members.values().filter_map(|m| m.session_deadline));
        let polls = self
            .consumers
            .values()
            .filter(|c| !frozen.contains(&c.incarnation.instance))
            .filter_map(ConsumerState::max_poll_deadline);
        // The next grid tick of each auto-committing consumer with something to commit.
        let autos = self
            .consumers
            .iter()
            .filter(|(_, c)| !frozen.contains(&c.incarnation.instance))
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
            .into_iter()
            .chain(self.broker_down_until)
            .chain(transactions)
            .chain(sessions)
            .chain(polls)
            .chain(autos)
            .chain(asyncs)
            .min()
    }

    /// The cluster as the run left it, for the run's outcome: the partitions' logs are
    /// handed over as they are (the cluster is left with empty ones; call it once the run is
    /// over).
    pub(crate) fn take_snapshot(&mut self) -> ClusterSnapshot {
        let mut logs: Vec<(TopicPartition, Arc<dyn PartitionLog>)> = Vec::new();
        for (name, topic) in &mut self.topics {
            for (p, partition) in topic.partitions.iter_mut().enumerate() {
                let log = std::mem::take(partition);
                logs.push((TopicPartition::new(name, p as i32), Arc::new(log)));
            }
        }
        let committed = self
            .groups
            .iter()
            .flat_map(|(g, group)| {
                group
                    .committed
                    .iter()
                    .map(move |(tp, o)| ((g.clone(), tp.clone()), *o))
            })
            .collect();
        ClusterSnapshot::from_logs(logs, committed)
    }

    // ----- quiescence -----

    /// Each group's committed offset against the end of every partition of the topics it
    /// consumes (every topic a member subscribed to, and the topics it has committed offsets
    /// for).
    pub(crate) fn lag(&self) -> Vec<Lag> {
        let mut lag = Vec::new();
        for (id, group) in &self.groups {
            let mut topics: BTreeSet<&str> =
                group.consumed_topics.iter().map(String::as_str).collect();
            topics.extend(group.committed.keys().map(|tp| tp.topic.as_str()));
            for topic in topics {
                let Some(t) = self.topics.get(topic) else {
                    continue;
                };
                for (p, partition) in t.partitions.iter().enumerate() {
                    let tp = TopicPartition::new(topic, p as i32);
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

    /// True when nothing is left to do: every `running` incarnation waits in `recv` on
    /// consumers that have nothing to fetch and nothing uncommitted; no rebalance, commit or
    /// open transaction is pending; partitions that no live consumer owns are committed to
    /// their end. (Frozen processes are the run's to know.)
    pub(crate) fn idle(&self, running: &[Incarnation], progress: Option<&Progress>) -> bool {
        // An open transaction still has to commit, abort or time out: its outcome decides
        // what read_committed readers see.
        if !self.async_commits.is_empty()
            || self.broker_down_until.is_some()
            || self.next_transaction_timeout().is_some()
            || self
                .groups
                .values()
                .any(|g| g.state == GroupState::PreparingRebalance)
        {
            return false;
        }
        let parked = running.iter().all(|&incarnation| {
            let mut consumers = self
                .consumers
                .values()
                .filter(|c| c.incarnation == incarnation)
                .peekable();
            consumers.peek().is_some() && consumers.all(|c| c.idle(self, progress))
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
        if let Some(progress) = progress {
            // Progress lives in the consumer's database: what nobody owns must be recorded
            // there up to its end.
            let owned: BTreeSet<&TopicPartition> = owned.into_iter().map(|(_, tp)| tp).collect();
            return progress
                .iter()
                .filter(|(tp, _)| !owned.contains(tp))
                .all(|(tp, next)| {
                    self.partition(tp).is_none_or(|p| {
                        p.settled_from(*next, config::IsolationLevel::ReadCommitted)
                    })
                });
        }
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
