//! librdkafka's partition queues over the simulated cluster (`split_partition_queue`): a
//! partition split off is handed out by its queues only, never by the consumer's `recv`.
//!
//! As measured on librdkafka's mock cluster (`tests/brokers/partition_queues.rs`): the split
//! is the partition's for the consumer's lifetime, across rebalances (librdkafka keeps the
//! partition's fetch queue unforwarded), so dropping every queue of it leaves its records
//! undelivered until it is split again; a queue fetches only what the group assigned, and
//! only the consumer's `recv` joins the group and serves rebalances. A queue's `recv` picks
//! its record as the consumer's does (`poll_fetch`), through the same `recv` interception
//! point, held up by stalls and freezes without consuming anything (cancel-safe).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::OwnedMessage;
use rdkafka::types::RDKafkaErrorCode;

use super::poll::PollStep;
use super::{ClientId, Shared, World};
use crate::history::TopicPartition;
use crate::run::backend::{BoxFuture, PartitionQueueClient};
use crate::run::core::{crashed, dead_error};

impl World {
    /// What the queue of `partition` must do next (see [`poll_step`](Self::poll_step) for the
    /// consumer's `recv`): no group work and no callbacks, only the partition's records.
    pub(crate) fn queue_step(
        &mut self,
        client: ClientId,
        partition: &TopicPartition,
        may_return: bool,
    ) -> PollStep {
        let now = tokio::time::Instant::now();
        let Some((incarnation, frozen_until)) = self.polling_instance(client, now) else {
            return PollStep::Dead;
        };
        if let Some(until) = frozen_until {
            return PollStep::Sleep(until - now);
        }
        if self.broker_down().is_some() {
            return PollStep::Wait; // nothing is fetched while the broker is down
        }
        let latency = self.latency();
        self.poll_fetch(client, incarnation, may_return, latency, Some(partition))
    }

    /// Whether the consumer, having joined its group (and so read the cluster's metadata),
    /// knows that `partition` does not exist: librdkafka then reports `UnknownPartition` on
    /// the partition's queue (measured on the mock cluster).
    fn unknown_partition(&self, client: ClientId, partition: &TopicPartition) -> bool {
        let joined = self
            .consumers
            .get(&client)
            .is_some_and(|c| c.member.is_some() || c.assigned);
        joined
            && self
                .partitions_of(&partition.topic)
                .is_some_and(|n| partition.partition >= n)
    }
}

/// A queue of one partition of a [`SimConsumer`](super::consumer::SimConsumer).
pub(crate) struct SimPartitionQueue {
    shared: Arc<Shared>,
    client: ClientId,
    partition: TopicPartition,
    /// The queue reported that its partition does not exist (once, as librdkafka does).
    reported_unknown: AtomicBool,
}

impl SimPartitionQueue {
    /// Splits `partition` off the consumer's `recv`; `None` when the consumer is gone (its
    /// instance crashed: using the queue would unwind anyway).
    pub(crate) fn split(
        shared: Arc<Shared>,
        client: ClientId,
        partition: TopicPartition,
    ) -> Option<Self> {
        {
            let mut world = shared.lock();
            let c = world.consumers.get_mut(&client)?;
            c.split.insert(partition.clone());
            world.touch();
        }
        shared.publish();
        Some(SimPartitionQueue {
            shared,
            client,
            partition,
            reported_unknown: AtomicBool::new(false),
        })
    }

    async fn recv_message(&self) -> KafkaResult<OwnedMessage> {
        let mut may_return = false;
        // A record picked but held up (a stall, a freeze): dropping this future drops it
        // unconsumed.
        let mut held = None;
        loop {
            let step = {
                let mut world = self.shared.lock();
                if !self.reported_unknown.load(Ordering::Relaxed)
                    && world.unknown_partition(self.client, &self.partition)
                {
                    self.reported_unknown.store(true, Ordering::Relaxed);
                    return Err(KafkaError::MessageConsumption(
                        RDKafkaErrorCode::UnknownPartition,
                    ));
                }
                match held.take() {
                    Some(h) => world.resume(self.client, h),
                    None => world.queue_step(self.client, &self.partition, may_return),
                }
            };
            self.shared.publish();
            match step {
                PollStep::Dead => return Err(crashed(dead_error())),
                PollStep::Error(e) => return Err(e),
                PollStep::Sleep(d) => {
                    tokio::time::sleep(d).await;
                    may_return = true;
                }
                PollStep::Hold { held: h, delay } => {
                    held = Some(h);
                    tokio::time::sleep(delay).await;
                }
                PollStep::Deliver(message) => return Ok(message),
                // Group work and callbacks are the consumer's `recv`'s, never a queue's.
                PollStep::Wait
                | PollStep::Revoke { .. }
                | PollStep::Assign { .. }
                | PollStep::RevokeIncremental { .. }
                | PollStep::AssignIncremental { .. }
                | PollStep::CommitCallback(..) => self.shared.changed().await,
            }
        }
    }
}

impl PartitionQueueClient for SimPartitionQueue {
    fn recv(&self) -> BoxFuture<'_, KafkaResult<OwnedMessage>> {
        Box::pin(self.recv_message())
    }
}
