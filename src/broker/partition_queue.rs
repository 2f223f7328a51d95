//! librdkafka's partition queues on a real broker: rdkafka's own `split_partition_queue`,
//! polled without blocking as the consumer is, each message through the same `recv`
//! interception and hand-over as the consumer's `recv` ([`Handout`]).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::Offset;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;

use super::consumer::{CALLBACK_TIMEOUT, MAX_POLL_PAUSE, Owner};
use super::native::{ConsumerSlot, NativeConsumer};
use crate::history::{HistoryEvent, Operation, TopicPartition, key_text_of};
use crate::run::backend::{BoxFuture, PartitionQueueClient};
use crate::run::core::unwind_crash;
use crate::run::fault_plan::Injection;

/// A message polled but not handed over yet (a stalled `recv` whose future was dropped).
pub(super) type Stalled = Mutex<Option<(OwnedMessage, Injection)>>;

/// How a message librdkafka handed out reaches the application: through the `recv`
/// interception point, recorded as delivered, auto-stored as librdkafka stores it.
#[derive(Clone)]
pub(super) struct Handout {
    pub owner: Owner,
    pub native: Arc<ConsumerSlot>,
    pub read_committed: bool,
}

impl Handout {
    /// Runs `f` on the handle; unwinds when the instance is dead.
    pub(super) fn with_native<T>(&self, f: impl FnOnce(&mut NativeConsumer) -> T) -> T {
        let result = {
            let mut slot = self.native.lock();
            match slot.as_mut() {
                Some(native) if self.owner.alive() => Some(f(native)),
                _ => None,
            }
        };
        self.owner.shared.publish();
        match result {
            Some(value) if self.owner.alive() => value,
            _ => unwind_crash(),
        }
    }

    /// Intercepts the `recv` of `message` and hands it over; `None` when a stall ended with
    /// the message handed over by another `recv` of the same source.
    pub(super) async fn deliver(
        &self,
        message: OwnedMessage,
        stalled: &Stalled,
    ) -> Option<KafkaResult<OwnedMessage>> {
        let position =
            TopicPartition::new(message.topic(), message.partition()).at(message.offset());
        let Ok(injection) = self
            .owner
            .intercept(Operation::Recv, Some(position.clone()))
        else {
            unwind_crash()
        };
        if injection.fail || injection.broker_restart.is_some() {
            // Not handed out (a failed fetch, or the broker went down before answering it):
            // the next poll returns it again.
            let _ = self.with_native(|c| {
                Consumer::seek(
                    &*c.consumer,
                    message.topic(),
                    message.partition(),
                    Offset::Offset(message.offset()),
                    CALLBACK_TIMEOUT,
                )
            });
            return Some(Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure,
            )));
        }
        if let Some(stall) = injection.stall {
            // The call takes this long before the message reaches the application; a future
            // dropped meanwhile leaves it for the next `recv`.
            *stalled.lock().unwrap_or_else(PoisonError::into_inner) = Some((message, injection));
            tokio::time::sleep(stall).await;
            if !self.owner.alive() {
                unwind_crash();
            }
            let stalled = stalled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            // Another `recv` of the same source may have handed it over meanwhile.
            return stalled.map(|(message, injection)| Ok(self.hand_over(message, &injection)));
        }
        Some(Ok(self.hand_over(message, &injection)))
    }

    /// Hands `message` to the application: recorded as delivered, then the crash after the
    /// `recv`, if one fired.
    pub(super) fn hand_over(&self, message: OwnedMessage, injection: &Injection) -> OwnedMessage {
        let position =
            TopicPartition::new(message.topic(), message.partition()).at(message.offset());
        if self.owner.auto_store {
            self.owner
                .stored
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(position.topic_partition(), position.offset + 1);
        }
        {
            let mut run = self.owner.shared.run.lock();
            run.set_current_record(self.owner.incarnation, &position);
            run.record(
                Some(self.owner.incarnation),
                HistoryEvent::Delivered {
                    position,
                    key: message.key().map(key_text_of),
                    read_committed: self.read_committed,
                },
            );
        }
        self.owner.shared.publish();
        if self.owner.complete(injection, Operation::Recv).is_err() {
            unwind_crash();
        }
        message
    }
}

/// A partition queue split off a [`BrokerConsumer`](super::consumer::BrokerConsumer):
/// rdkafka's `PartitionQueue`, kept in the consumer's slot (destroyed with it when the
/// instance crashes) under `id`.
pub(crate) struct BrokerPartitionQueue {
    handout: Handout,
    id: u64,
    stalled: Stalled,
}

impl BrokerPartitionQueue {
    /// rdkafka's `split_partition_queue`; unwinds when the instance is dead.
    pub(super) fn split(handout: Handout, partition: &TopicPartition) -> Option<Self> {
        let id = handout.with_native(|native| {
            let queue = native
                .consumer
                .split_partition_queue(&partition.topic, partition.partition)?;
            let id = native.next_queue;
            native.next_queue += 1;
            native.queues.insert(id, queue);
            Some(id)
        })?;
        Some(BrokerPartitionQueue {
            handout,
            id,
            stalled: Mutex::new(None),
        })
    }

    async fn recv_message(&self) -> KafkaResult<OwnedMessage> {
        let stalled = self
            .stalled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((message, injection)) = stalled {
            return Ok(self.handout.hand_over(message, &injection));
        }
        let mut pause = Duration::from_millis(1);
        loop {
            let polled = self.handout.with_native(|native| {
                native
                    .queues
                    .get(&self.id)
                    .and_then(|q| q.poll(Duration::ZERO).map(|m| m.map(|m| m.detach())))
            });
            match polled {
                None => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_POLL_PAUSE);
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(message)) => {
                    if let Some(delivered) = self.handout.deliver(message, &self.stalled).await {
                        return delivered;
                    }
                }
            }
        }
    }
}

impl Drop for BrokerPartitionQueue {
    /// Destroys rdkafka's queue (the partition's records then go nowhere, as librdkafka
    /// leaves them); a crashed instance's queues went with its consumer.
    fn drop(&mut self) {
        if let Some(native) = self.handout.native.lock().as_mut() {
            native.queues.remove(&self.id);
        }
    }
}

impl PartitionQueueClient for BrokerPartitionQueue {
    fn recv(&self) -> BoxFuture<'_, KafkaResult<OwnedMessage>> {
        Box::pin(self.recv_message())
    }
}
