//! Offset commits at the coordinator: applied, rejected, or held while the broker is down.

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use tokio::time::Instant;

use super::*;

/// Who a commit comes from, as the coordinator sees it: the member id (`None` outside the
/// group), the static member's instance id, and the generation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Committer<'a> {
    pub member: Option<&'a str>,
    pub instance: Option<&'a str>,
    pub generation: i32,
}

impl World {
    // ----- commits -----

    /// Applies a commit at the coordinator and records the outcome. As Kafka's coordinator
    /// (and librdkafka's mock cluster) answers: a group error refuses every partition;
    /// otherwise the partitions that exist are committed and the others fail with
    /// `UNKNOWN_TOPIC_OR_PART`, which librdkafka hands the application as the commit's error.
    pub(crate) fn apply_commit(
        &mut self,
        incarnation: Incarnation,
        group: &str,
        committer: Committer<'_>,
        offsets: &[(TopicPartition, i64)],
        kind: CommitKind,
    ) -> Result<(), RDKafkaErrorCode> {
        let generation = committer.generation;
        let (known, unknown): (Vec<_>, Vec<_>) = offsets
            .iter()
            .cloned()
            .partition(|(tp, _)| self.partition(tp).is_some());
        let any_unknown = !unknown.is_empty();
        let g = self.group_mut(group);
        let result = g.check_commit(committer.member, committer.instance, generation);
        let rejected = |offsets: Vec<(TopicPartition, i64)>, code| HistoryEvent::CommitRejected {
            group: group.to_string(),
            offsets,
            kind,
            error: KafkaError::ConsumerCommit(code).to_string(),
        };
        let mut events = Vec::new();
        match result {
            Ok(()) => {
                for (tp, offset) in &known {
                    g.committed.insert(tp.clone(), *offset);
                }
                if !known.is_empty() || !any_unknown {
                    events.push(HistoryEvent::OffsetsCommitted {
                        group: group.to_string(),
                        generation,
                        offsets: known,
                        kind,
                    });
                }
                if any_unknown {
                    events.push(rejected(unknown, RDKafkaErrorCode::UnknownTopicOrPartition));
                }
            }
            Err(code) => events.push(rejected(offsets.to_vec(), code)),
        }
        for event in events {
            self.record(Some(incarnation), event);
        }
        match result {
            Ok(()) if any_unknown => Err(RDKafkaErrorCode::UnknownTopicOrPartition),
            other => other,
        }
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
    /// interception point `operation`. `Err(Crashed)`: the instance crashed.
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
        let (instance, fatal) = (c.settings.group_instance_id.clone(), c.fatal);
        let injection = self.intercept_call(operation, incarnation, anchor.as_ref(), &operation)?;
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
        let result = if fatal {
            // librdkafka sends no commit once a fatal error was raised.
            reject(
                self,
                "the consumer was fenced (a fatal error): nothing is sent",
                RDKafkaErrorCode::Fatal,
            )
        } else if injection.fail && kind != CommitKind::Async {
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
                instance,
                refused: injection.fail,
            });
            self.touch();
            // The call only sends the request; its outcome reaches the application nowhere:
            // rust-rdkafka 0.39 gives a manual asynchronous commit no reply queue, so the
            // commit callback never hears of it (fede1024/rust-rdkafka#856, measured in
            // `tests/brokers/commit_errors.rs`).
            Ok(())
        } else {
            let committer = Committer {
                member: member.as_deref(),
                instance: instance.as_deref(),
                generation,
            };
            match self.apply_commit(incarnation, &group, committer, &offsets, kind) {
                Ok(()) if injection.ambiguous => {
                    Err(KafkaError::ConsumerCommit(fault::COMMIT_TIMED_OUT))
                }
                Ok(()) => Ok(()),
                Err(code) => {
                    if code == RDKafkaErrorCode::FencedInstanceId {
                        self.fence(client);
                    }
                    Err(KafkaError::ConsumerCommit(code))
                }
            }
        };
        self.complete_call(&injection, incarnation, &operation)?;
        Ok(result)
    }
}
