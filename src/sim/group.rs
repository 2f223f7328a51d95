//! The group coordinator: members, generations, the eager rebalance protocol, committed offsets.
//!
//! Modelled on Kafka's classic group protocol with librdkafka clients:
//! - a join, a leave, a session timeout or a `max.poll.interval.ms` breach starts a rebalance
//!   (`PreparingRebalance`); every member must rejoin, which a librdkafka consumer does on its
//!   next poll, after revoking its partitions under an eager strategy, keeping them under
//!   `cooperative-sticky` (KIP-429: a partition that moves is withheld from its new owner until
//!   the old one revoked it and rejoined, which starts a follow-up rebalance);
//! - when every member has rejoined the coordinator bumps the generation and hands out a new
//!   assignment (JoinGroup and SyncGroup are collapsed into one step);
//! - an offset commit must carry a known member id and the current generation: otherwise
//!   `UNKNOWN_MEMBER_ID` or `ILLEGAL_GENERATION`, as Kafka answers. During `PreparingRebalance`
//!   the old generation is still current, so commits from a revoke callback are accepted;
//! - static members (`group.instance.id`, KIP-345): a member that joins with the instance id
//!   of a member the coordinator still holds (its process restarted within the session)
//!   replaces it under a new member id and takes over its assignment, without a rebalance
//!   unless its subscription or strategies changed (Kafka's `updateStaticMemberAndRebalance`);
//!   the replaced member id is fenced: its requests get `FENCED_INSTANCE_ID`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::types::RDKafkaErrorCode;
use tokio::time::Instant;

use super::assignor::{self, AssignmentStrategy};
use crate::history::TopicPartition;
use crate::history::{HistoryEvent, Incarnation, MemberRemoval};

/// History events a coordinator step produced, with the lane they belong to.
pub(crate) type Events = Vec<(Option<Incarnation>, HistoryEvent)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    Stable,
}

#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub incarnation: Incarnation,
    /// `group.instance.id`: a static member.
    pub instance_id: Option<String>,
    pub subscription: Vec<String>,
    pub strategies: Vec<AssignmentStrategy>,
    pub session_timeout: Duration,
    /// When the coordinator removes the member: set while its heartbeats are stopped (the
    /// process crashed or is frozen); `None` while it heartbeats.
    pub session_deadline: Option<Instant>,
    /// Whether it has (re)joined the rebalance in progress.
    pub joined: bool,
    /// Its partitions in the current generation.
    pub assignment: Vec<TopicPartition>,
    /// Its client closed while the broker was down: its LeaveGroup never arrived and no
    /// heartbeat will, so it stays until its session runs out.
    pub abandoned: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub id: String,
    pub generation: i32,
    pub state: GroupState,
    pub protocol: Option<AssignmentStrategy>,
    pub members: BTreeMap<String, Member>,
    pub committed: BTreeMap<TopicPartition, i64>,
    /// Every topic a member ever subscribed to: the group's input, even once every member is
    /// gone.
    pub consumed_topics: BTreeSet<String>,
}

impl Group {
    pub(crate) fn new(id: &str) -> Self {
        Group {
            id: id.to_string(),
            generation: 0,
            state: GroupState::Empty,
            protocol: None,
            members: BTreeMap::new(),
            committed: BTreeMap::new(),
            consumed_topics: BTreeSet::new(),
        }
    }

    /// A new member joins. Fails with `INCONSISTENT_GROUP_PROTOCOL` when it shares no
    /// assignment strategy with the current members.
    pub(crate) fn join(
        &mut self,
        member_id: &str,
        member: Member,
        out: &mut Events,
    ) -> Result<(), RDKafkaErrorCode> {
        let replaced = member
            .instance_id
            .as_deref()
            .and_then(|instance| self.static_member(instance))
            .map(str::to_string);
        if self
            .members
            .iter()
            .filter(|(id, _)| Some(*id) != replaced.as_ref())
            .any(|(_, m)| !m.strategies.iter().any(|s| member.strategies.contains(s)))
        {
            return Err(RDKafkaErrorCode::InconsistentGroupProtocol);
        }
        if let Some(replaced) = replaced {
            self.replace_static_member(&replaced, member_id, member, out);
            return Ok(());
        }
        let incarnation = member.incarnation;
        self.consumed_topics
            .extend(member.subscription.iter().cloned());
        self.begin_rebalance(out);
        self.members.insert(
            member_id.to_string(),
            Member {
                joined: true,
                ..member
            },
        );
        out.push((
            Some(incarnation),
            HistoryEvent::MemberJoined {
                group: self.id.clone(),
                member: member_id.to_string(),
            },
        ));
        Ok(())
    }

    /// The member id the coordinator holds for the static member `instance`, if any.
    pub(crate) fn static_member(&self, instance: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(_, m)| m.instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id.as_str())
    }

    /// Whether `member_id`, a member id of static member `instance`, was replaced by a newer
    /// member with the same instance id: the coordinator answers it `FENCED_INSTANCE_ID`.
    pub(crate) fn fenced(&self, member_id: &str, instance: &str) -> bool {
        self.static_member(instance)
            .is_some_and(|current| current != member_id)
    }

    /// KIP-345: `member_id` joins with the instance id of `replaced`, which it replaces. It
    /// takes over the assignment; the group rebalances only when the member's subscription or
    /// strategies changed (a rebalance already in progress goes on, with it joined).
    fn replace_static_member(
        &mut self,
        replaced: &str,
        member_id: &str,
        member: Member,
        out: &mut Events,
    ) {
        let old = self
            .members
            .remove(replaced)
            .expect("a member of the group");
        let changed =
            old.subscription != member.subscription || old.strategies != member.strategies;
        self.consumed_topics
            .extend(member.subscription.iter().cloned());
        out.push((
            Some(member.incarnation),
            HistoryEvent::StaticMemberReplaced {
                group: self.id.clone(),
                instance_id: member.instance_id.clone().unwrap_or_default(),
                member: member_id.to_string(),
                replaced: replaced.to_string(),
            },
        ));
        if changed {
            self.begin_rebalance(out);
        }
        self.members.insert(
            member_id.to_string(),
            Member {
                joined: true,
                assignment: old.assignment,
                ..member
            },
        );
    }

    /// An existing member rejoins the rebalance in progress.
    pub(crate) fn rejoin(&mut self, member_id: &str) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.joined = true;
        }
    }

    /// A cooperative member (re)joins owning `owned`, which it keeps through the rebalance
    /// (its JoinGroup lists its owned partitions), starting a rebalance if none is in progress
    /// (after it revoked partitions that moved: KIP-429's follow-up rebalance).
    pub(crate) fn rejoin_owning(
        &mut self,
        member_id: &str,
        owned: Vec<TopicPartition>,
        out: &mut Events,
    ) {
        if !self.members.contains_key(member_id) {
            return;
        }
        self.begin_rebalance(out);
        let m = self.members.get_mut(member_id).expect("checked above");
        m.joined = true;
        m.assignment = owned;
    }

    /// A member's subscription changed: as librdkafka's eager protocol, it revokes its
    /// assignment (even an empty one) on its next poll, then rejoins with the new metadata.
    pub(crate) fn resubscribe(&mut self, member_id: &str, topics: Vec<String>, out: &mut Events) {
        if self.members.contains_key(member_id) {
            self.begin_rebalance(out);
            self.consumed_topics.extend(topics.iter().cloned());
            let m = self.members.get_mut(member_id).expect("checked above");
            m.subscription = topics;
            m.joined = false;
        }
    }

    /// Removes a member (LeaveGroup, session timeout, max.poll.interval breach).
    pub(crate) fn remove(
        &mut self,
        member_id: &str,
        reason: MemberRemoval,
        out: &mut Events,
    ) -> bool {
        let Some(member) = self.members.remove(member_id) else {
            return false;
        };
        out.push((
            Some(member.incarnation),
            HistoryEvent::MemberRemoved {
                group: self.id.clone(),
                member: member_id.to_string(),
                reason,
            },
        ));
        self.begin_rebalance(out);
        true
    }

    fn begin_rebalance(&mut self, out: &mut Events) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        self.state = GroupState::PreparingRebalance;
        for m in self.members.values_mut() {
            m.joined = false;
        }
        out.push((
            None,
            HistoryEvent::RebalanceStarted {
                group: self.id.clone(),
                generation: self.generation,
            },
        ));
    }

    /// Completes the rebalance in progress once every member has rejoined. Returns whether a
    /// new generation started.
    pub(crate) fn try_complete(
        &mut self,
        partitions_of: impl Fn(&str) -> Option<i32>,
        out: &mut Events,
    ) -> bool {
        if self.state != GroupState::PreparingRebalance || !self.members.values().all(|m| m.joined)
        {
            return false;
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            out.push((
                None,
                HistoryEvent::GenerationStarted {
                    group: self.id.clone(),
                    generation: self.generation,
                    protocol: "none (group is empty)".into(),
                    assignment: Vec::new(),
                },
            ));
            return true;
        }
        let preferences: Vec<&[AssignmentStrategy]> = self
            .members
            .values()
            .map(|m| m.strategies.as_slice())
            .collect();
        // Joins are refused when they share no strategy, so a protocol always exists.
        let protocol = assignor::select_protocol(&preferences).unwrap_or(AssignmentStrategy::Range);
        let subscriptions: BTreeMap<String, Vec<String>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.subscription.clone()))
            .collect();
        let owned: BTreeMap<String, Vec<TopicPartition>> = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.assignment.clone()))
            .collect();
        let mut assignment = assignor::assign(protocol, &subscriptions, &owned, partitions_of);
        if protocol.is_cooperative() {
            // KIP-429: a partition that moves is withheld from its new owner until the old one
            // has revoked it and rejoined, which starts the follow-up rebalance.
            for (id, partitions) in assignment.iter_mut() {
                partitions.retain(|tp| {
                    owned
                        .iter()
                        .all(|(owner, theirs)| owner == id || !theirs.contains(tp))
                });
            }
        }
        for (id, partitions) in &assignment {
            if let Some(m) = self.members.get_mut(id) {
                m.assignment = partitions.clone();
            }
        }
        self.protocol = Some(protocol);
        self.state = GroupState::Stable;
        out.push((
            None,
            HistoryEvent::GenerationStarted {
                group: self.id.clone(),
                generation: self.generation,
                protocol: protocol.name().to_string(),
                assignment: assignment.into_iter().collect(),
            },
        ));
        true
    }

    /// Whether the coordinator accepts an offset commit from `member` in `generation`
    /// (Kafka's `handleCommitOffsets` checks, in its order).
    pub(crate) fn check_commit(
        &self,
        member: Option<&str>,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), RDKafkaErrorCode> {
        if let (Some(member), Some(instance)) = (member, instance) {
            if self.fenced(member, instance) {
                return Err(RDKafkaErrorCode::FencedInstanceId);
            }
        }
        match member {
            // A commit outside any generation is accepted only by an empty group.
            None if generation < 0 && self.state == GroupState::Empty => Ok(()),
            None => Err(RDKafkaErrorCode::UnknownMemberId),
            Some(id) if !self.members.contains_key(id) => Err(RDKafkaErrorCode::UnknownMemberId),
            Some(_) if generation != self.generation => Err(RDKafkaErrorCode::IllegalGeneration),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::InstanceId;

    fn member(strategies: Vec<AssignmentStrategy>) -> Member {
        Member {
            incarnation: Incarnation {
                instance: InstanceId(0),
                number: 1,
            },
            instance_id: None,
            subscription: vec!["t".into()],
            strategies,
            session_timeout: Duration::from_secs(10),
            session_deadline: None,
            joined: false,
            assignment: Vec::new(),
            abandoned: false,
        }
    }

    #[test]
    fn generation_advances_only_when_every_member_rejoined() {
        let mut g = Group::new("g");
        let mut out = Events::new();
        g.join("a", member(vec![AssignmentStrategy::Range]), &mut out)
            .unwrap();
        assert!(g.try_complete(|_| Some(4), &mut out));
        assert_eq!((g.generation, g.state), (1, GroupState::Stable));
        assert_eq!(g.members["a"].assignment.len(), 4);

        g.join("b", member(vec![AssignmentStrategy::Range]), &mut out)
            .unwrap();
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(!g.try_complete(|_| Some(4), &mut out), "a has not rejoined");
        assert_eq!(
            g.check_commit(Some("a"), None, 1),
            Ok(()),
            "old generation still current"
        );
        g.rejoin("a");
        assert!(g.try_complete(|_| Some(4), &mut out));
        assert_eq!(g.generation, 2);
        assert_eq!(
            g.check_commit(Some("a"), None, 1),
            Err(RDKafkaErrorCode::IllegalGeneration)
        );
        assert_eq!(
            g.check_commit(Some("zz"), None, 2),
            Err(RDKafkaErrorCode::UnknownMemberId)
        );
        assert_eq!(
            g.check_commit(None, None, -1),
            Err(RDKafkaErrorCode::UnknownMemberId)
        );
    }

    #[test]
    fn a_static_member_rejoining_takes_its_place_and_fences_the_old_member_id() {
        let mut g = Group::new("g");
        let mut out = Events::new();
        let static_member = |instance: &str, topics: &[&str]| Member {
            instance_id: Some(instance.to_string()),
            subscription: topics.iter().map(|t| t.to_string()).collect(),
            ..member(vec![AssignmentStrategy::Range])
        };
        g.join("a", static_member("pod-0", &["t"]), &mut out)
            .unwrap();
        g.join("b", static_member("pod-1", &["t"]), &mut out)
            .unwrap();
        assert!(g.try_complete(|_| Some(4), &mut out));
        let (generation, owned) = (g.generation, g.members["a"].assignment.clone());
        g.join("a2", static_member("pod-0", &["t"]), &mut out)
            .unwrap();
        assert_eq!(g.state, GroupState::Stable, "no rebalance");
        assert_eq!(g.generation, generation);
        assert_eq!(g.members["a2"].assignment, owned);
        assert!(!g.members.contains_key("a"));
        assert!(g.fenced("a", "pod-0") && !g.fenced("a2", "pod-0"));
        assert_eq!(
            g.check_commit(Some("a"), Some("pod-0"), generation),
            Err(RDKafkaErrorCode::FencedInstanceId)
        );
        assert_eq!(
            g.check_commit(Some("a2"), Some("pod-0"), generation),
            Ok(())
        );
        // With another subscription the replacement starts a rebalance.
        g.join("a3", static_member("pod-0", &["t", "u"]), &mut out)
            .unwrap();
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(g.members["a3"].joined && !g.members["b"].joined);
    }

    #[test]
    fn joins_without_a_common_strategy_are_refused() {
        let mut g = Group::new("g");
        let mut out = Events::new();
        g.join("a", member(vec![AssignmentStrategy::Range]), &mut out)
            .unwrap();
        assert_eq!(
            g.join("b", member(vec![AssignmentStrategy::RoundRobin]), &mut out),
            Err(RDKafkaErrorCode::InconsistentGroupProtocol)
        );
    }
}
