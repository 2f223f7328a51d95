//! The consumer's side of the cooperative (incremental) rebalance protocol, KIP-429 as
//! librdkafka implements it for `partition.assignment.strategy=cooperative-sticky`: a member
//! keeps consuming what it owns through a rebalance; when the new generation's assignment
//! drops partitions, it revokes only those (the rebalance callback's `Revoke` lists them),
//! takes the added ones (`Assign` lists only them), and rejoins, which starts the follow-up
//! rebalance that hands the revoked partitions to their new owner.

use super::ClientId;
use super::World;
use super::group::Events;
use super::poll::PollStep;
use super::positioning::Starts;
use crate::history::{CommitKind, HistoryEvent, TopicPartition};
use crate::run::core::Crashed;

impl World {
    /// Whether the client's consumer rebalances incrementally.
    pub(crate) fn cooperative(&self, client: ClientId) -> bool {
        self.consumers
            .get(&client)
            .is_some_and(|c| c.settings.strategies.iter().any(|s| s.is_cooperative()))
    }

    /// A rebalance is in progress and the member has not rejoined it: it rejoins at once,
    /// owning what it owns (nothing is revoked).
    pub(crate) fn cooperative_rejoin(&mut self, client: ClientId, member: &str) {
        let c = &self.consumers[&client];
        let (group, owned) = (c.settings.group_id.clone(), c.assignment.clone());
        let mut out = Events::new();
        self.group_mut(&group)
            .rejoin_owning(member, owned, &mut out);
        self.record_all(out);
        self.touch();
        self.complete_rebalance(&group);
    }

    /// The group is stable in a generation the consumer has not taken up: first revoke what
    /// the new assignment dropped, then take what it added (the callback is served even when
    /// nothing was added, as librdkafka does).
    pub(crate) fn cooperative_sync(
        &self,
        client: ClientId,
        generation: i32,
        assignment: &[TopicPartition],
    ) -> PollStep {
        let c = &self.consumers[&client];
        let revoked: Vec<TopicPartition> = c
            .assignment
            .iter()
            .filter(|tp| !assignment.contains(tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            return PollStep::RevokeIncremental {
                partitions: revoked,
            };
        }
        let added = assignment
            .iter()
            .filter(|tp| !c.assignment.contains(tp))
            .cloned()
            .collect();
        PollStep::AssignIncremental {
            generation,
            partitions: added,
        }
    }

    /// After the `Revoke` callback of an incremental revocation: the stored offsets of the
    /// revoked partitions are auto-committed (with `enable.auto.commit`), the partitions are
    /// dropped, and the member will rejoin once it took up the new generation.
    pub(crate) fn finish_incremental_revoke(
        &mut self,
        client: ClientId,
        partitions: &[TopicPartition],
    ) -> Result<(), Crashed> {
        let c = self.consumers.get(&client).ok_or(Crashed)?;
        if !self.alive(c.incarnation) {
            return Err(Crashed);
        }
        if c.settings.enable_auto_commit {
            self.auto_commit_of(client, CommitKind::Revoke, Some(partitions))?;
        }
        let c = self.consumers.get_mut(&client).ok_or(Crashed)?;
        c.assignment.retain(|tp| !partitions.contains(tp));
        for tp in partitions {
            c.positions.remove(tp);
            c.starts.remove(tp);
            c.stored.remove(tp);
            c.eof_reported.remove(tp);
        }
        c.rejoin_after_sync = true;
        let (incarnation, group) = (c.incarnation, c.settings.group_id.clone());
        self.record(
            Some(incarnation),
            HistoryEvent::PartitionsRevoked {
                group,
                partitions: partitions.to_vec(),
                lost: false,
            },
        );
        Ok(())
    }

    /// After the `Assign` callback of an incremental assignment: the added partitions start at
    /// their committed offsets (else `auto.offset.reset`), the others carry on; then the member
    /// rejoins if it revoked partitions for this generation.
    pub(crate) fn finish_incremental_assign(
        &mut self,
        client: ClientId,
        generation: i32,
        added: &[TopicPartition],
    ) {
        let Some(c) = self.consumers.get(&client) else {
            return;
        };
        let group_id = c.settings.group_id.clone();
        let stable = self
            .groups
            .get(&group_id)
            .is_some_and(|g| g.generation == generation);
        if !stable {
            return;
        }
        let Starts {
            positions: starts,
            resets,
            errors,
        } = self.start_offsets(client, added);
        let c = self.consumers.get_mut(&client).expect("checked");
        c.generation = generation;
        c.assigned = true;
        c.assignment.extend(added.iter().cloned());
        c.assignment.sort();
        for (tp, start) in &starts {
            c.positions.insert(tp.clone(), *start);
            c.starts.insert(tp.clone(), *start);
            c.stored.remove(tp);
        }
        c.errors.extend(errors);
        let incarnation = c.incarnation;
        let rejoin = std::mem::take(&mut c.rejoin_after_sync);
        let member = c.member.clone();
        self.record(
            Some(incarnation),
            HistoryEvent::PartitionsAssigned {
                group: group_id,
                generation,
                partitions: starts,
                resets,
            },
        );
        if let (true, Some(member)) = (rejoin, member) {
            self.cooperative_rejoin(client, &member);
        }
    }
}
