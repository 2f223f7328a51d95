//! The producer on a real broker: librdkafka's `FutureProducer`, with the same interception
//! points as the simulated one.

use std::sync::Arc;

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, TopicPartitionList};

use super::backend::BrokerShared;
use super::native::{NativeClient, ProducerSlot, Slot};
use crate::client::txn_error::{TxnError, kafka_error};
use crate::client::{GroupMetadata, GroupMetadataRepr, foreign_group_metadata};
use crate::history::Operation;
use crate::history::{HistoryEvent, Incarnation};
use crate::history::{TopicPartition, key_text_of};
use crate::run::backend::{BoxFuture, ProducerClient};
use crate::run::client::OutgoingRecord;
use crate::run::core::{crashed, dead_error, unwind_crash};
use crate::run::fault_plan::Injection;

/// A producer of a real broker, behind [`Producer`](crate::Producer).
pub(crate) struct BrokerProducer {
    shared: Arc<BrokerShared>,
    incarnation: Incarnation,
    native: Arc<ProducerSlot>,
    /// Whether the broker drops a retried batch (`enable.idempotence` or a `transactional.id`).
    idempotent: bool,
    transactional_id: Option<String>,
}

impl BrokerProducer {
    pub(crate) fn create(
        shared: Arc<BrokerShared>,
        incarnation: Incarnation,
        config: &ClientConfig,
    ) -> KafkaResult<Self> {
        let session = &shared.session;
        if !shared.run.lock().alive(incarnation) {
            return Err(crashed(dead_error()));
        }
        let transactional_id = config.get("transactional.id").map(str::to_string);
        let idempotent =
            transactional_id.is_some() || config.get("enable.idempotence") == Some("true");
        let producer: FutureProducer = session.client_config(config).create()?;
        let native = Slot::new(producer);
        shared.register(incarnation, NativeClient::Producer(native.clone()));
        Ok(BrokerProducer {
            shared,
            incarnation,
            native,
            idempotent,
            transactional_id,
        })
    }

    fn alive(&self) -> bool {
        self.shared.run.lock().alive(self.incarnation)
    }

    fn check_alive(&self) {
        if !self.alive() {
            unwind_crash();
        }
    }

    fn intercept(&self, operation: Operation) -> Injection {
        self.shared
            .intercept(operation, self.incarnation, None)
            .unwrap_or_else(|_| unwind_crash())
    }

    /// Completes the interception step of the call `what`: unwinds when the instance crashed
    /// after it.
    fn complete(&self, injection: &Injection, what: &dyn std::fmt::Display) {
        if self
            .shared
            .complete(injection, self.incarnation, what)
            .is_err()
        {
            unwind_crash();
        }
    }

    fn record(&self, event: HistoryEvent) {
        self.shared.run.lock().record(Some(self.incarnation), event);
        self.shared.publish();
    }

    /// Hands one copy to librdkafka and waits for its delivery report.
    async fn deliver(&self, record: &OwnedMessage, retry: bool) -> OwnedDeliveryResult {
        let queued = {
            let slot = self.native.lock();
            let Some(producer) = slot.as_ref() else {
                drop(slot);
                unwind_crash();
            };
            let mut future = FutureRecord::<[u8], [u8]>::to(record.topic());
            if record.partition() >= 0 {
                future = future.partition(record.partition());
            }
            if let Some(key) = record.key() {
                future = future.key(key);
            }
            if let Some(payload) = record.payload() {
                future = future.payload(payload);
            }
            producer.send_result(future).map_err(|(e, _)| e)
        };
        let delivered = match queued {
            Err(e) => Err((e, record.clone())),
            Ok(delivery) => match delivery.await {
                Ok(result) => result,
                Err(_canceled) => Err((KafkaError::Canceled, record.clone())),
            },
        };
        self.check_alive();
        if let Ok(delivery) = &delivered {
            self.record(HistoryEvent::RecordProduced {
                position: TopicPartition::new(record.topic(), delivery.partition)
                    .at(delivery.offset),
                key: record.key().map(key_text_of),
                retry,
            });
        }
        delivered
    }

    async fn send_message(&self, record: OwnedMessage) -> OwnedDeliveryResult {
        let injection = self.intercept(Operation::Send);
        if let Some(stall) = injection.stall {
            tokio::time::sleep(stall).await;
            self.check_alive();
        }
        let tp = TopicPartition::new(record.topic(), record.partition());
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        if injection.fail {
            self.record(HistoryEvent::ProduceFailed {
                partition: tp,
                error: timed_out.to_string(),
                appended: false,
            });
            return Err((timed_out, record));
        }
        let mut result = self.deliver(&record, false).await;
        if injection.lose_ack && result.is_ok() && !self.idempotent {
            // librdkafka retries a batch whose acknowledgement was lost; without idempotence
            // the broker appends it again. (With it, the broker drops the retry: nothing to do.)
            result = self.deliver(&record, true).await;
        }
        if injection.ambiguous && result.is_ok() {
            self.record(HistoryEvent::ProduceFailed {
                partition: tp.clone(),
                error: timed_out.to_string(),
                appended: true,
            });
            result = Err((timed_out, record));
        }
        // Where the record landed, when the application did not pick the partition.
        let partition = match &result {
            Ok(delivery) => delivery.partition,
            Err(_) => tp.partition,
        };
        let send = Operation::Send;
        self.complete(
            &injection,
            &format_args!("{send} to {}[{partition}]", tp.topic),
        );
        result
    }

    /// A synchronous transactional call: an interception point around `call`.
    fn transactional_call(
        &self,
        operation: Operation,
        call: impl FnOnce(&FutureProducer, &Injection) -> KafkaResult<()>,
    ) -> KafkaResult<()> {
        let injection = self.intercept(operation);
        let result = {
            let slot = self.native.lock();
            match slot.as_ref() {
                Some(producer) => call(producer, &injection),
                None => {
                    drop(slot);
                    unwind_crash();
                }
            }
        };
        self.check_alive();
        if let Err(error) = &result {
            self.record(HistoryEvent::TransactionCallFailed {
                transactional_id: self.transactional_id.clone().unwrap_or_default(),
                call: operation.to_string(),
                error: error.to_string(),
            });
        }
        self.complete(&injection, &operation);
        result
    }
}

impl Drop for BrokerProducer {
    fn drop(&mut self) {
        // A clean exit flushes and closes as librdkafka does; a crashed instance's handle is
        // the run's to destroy.
        if self.alive() {
            let producer = self.native.lock().take();
            drop(producer);
        }
    }
}

impl ProducerClient for BrokerProducer {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'_, OwnedDeliveryResult> {
        let partition = record.partition.unwrap_or(-1);
        Box::pin(self.send_message(record.into_message(partition, 0)))
    }

    fn init_transactions(&self, timeout: Timeout) -> KafkaResult<()> {
        self.transactional_call(Operation::InitTransactions, |p, _| {
            p.init_transactions(timeout)
        })
    }

    fn begin_transaction(&self) -> KafkaResult<()> {
        self.transactional_call(Operation::BeginTransaction, |p, _| p.begin_transaction())
    }

    fn send_offsets_to_transaction(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: Timeout,
    ) -> KafkaResult<()> {
        let GroupMetadataRepr::Rdkafka(metadata) = &metadata.0 else {
            return Err(foreign_group_metadata());
        };
        self.transactional_call(Operation::SendOffsetsToTransaction, |p, _| {
            p.send_offsets_to_transaction(offsets, metadata, timeout)
        })
    }

    fn commit_transaction(&self, timeout: Timeout) -> KafkaResult<()> {
        self.transactional_call(Operation::CommitTransaction, |p, injection| {
            if injection.fail {
                return Err(kafka_error(TxnError::CommitTimedOut));
            }
            p.commit_transaction(timeout)?;
            if injection.ambiguous {
                return Err(kafka_error(TxnError::CommitTimedOut));
            }
            Ok(())
        })
    }

    fn abort_transaction(&self, timeout: Timeout) -> KafkaResult<()> {
        self.transactional_call(Operation::AbortTransaction, |p, _| {
            p.abort_transaction(timeout)
        })
    }
}
