//! The low-level producer on a real broker: librdkafka's `BaseProducer`, with the interception
//! points and the lost-acknowledgement playback of the kit's `FutureProducer`
//! (`super::producer`).
//!
//! librdkafka serves each delivery report to a [`ReportContext`], which only collects it with
//! the token `send` gave; the reports reach the application's handler when `poll`, `flush` or
//! the drop hand them on, outside the handle's lock. A send that the fault schedule fails is
//! not handed to librdkafka: its report (`MessageTimedOut`) waits with the others. A lost
//! acknowledgement is played as librdkafka's retry would land: without idempotence a second
//! copy follows the first, whose report the application never sees.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};

use super::backend::BrokerShared;
use super::native::{BaseProducerSlot, NativeClient, Slot};
use crate::client::txn_error::{TxnError, kafka_error};
use crate::client::{DeliveryReport, GroupMetadata, GroupMetadataRepr, foreign_group_metadata};
use crate::history::{HistoryEvent, Incarnation, Operation, TopicPartition, key_text_of};
use crate::run::backend::{BaseProducerClient, BoxFuture, Report};
use crate::run::client::OutgoingRecord;
use crate::run::core::{crashed, dead_error, unwind_crash};
use crate::run::fault_plan::Injection;

/// `RD_KAFKA_OFFSET_INVALID`: the offset of a record that was not delivered.
const OFFSET_INVALID: i64 = -1001;

/// The first copy of a lost acknowledgement's pair: recorded, never served.
const HIDDEN: usize = 1;
/// librdkafka's retry of a batch whose acknowledgement was lost.
const RETRY: usize = 2;

/// Collects librdkafka's delivery reports with the opaque `send` gave: the token shifted left
/// by two, [`HIDDEN`] and [`RETRY`] in the low bits.
#[derive(Default)]
pub(crate) struct ReportContext {
    reports: Mutex<Vec<(usize, DeliveryReport)>>,
}

impl ReportContext {
    fn push(&self, opaque: usize, report: DeliveryReport) {
        self.reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((opaque, report));
    }

    fn take(&self) -> Vec<(usize, DeliveryReport)> {
        std::mem::take(&mut *self.reports.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ClientContext for ReportContext {}

impl ProducerContext for ReportContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let report = match result {
            Ok(m) => Ok(m.detach()),
            Err((e, m)) => Err((e.clone(), m.detach())),
        };
        self.push(opaque, report);
    }
}

/// A low-level producer of a real broker, behind [`BaseProducer`](crate::BaseProducer).
pub(crate) struct BrokerBaseProducer {
    shared: Arc<BrokerShared>,
    incarnation: Incarnation,
    native: Arc<BaseProducerSlot>,
    context: Arc<ReportContext>,
    /// Whether the broker drops a retried batch (`enable.idempotence` or a `transactional.id`).
    idempotent: bool,
    transactional_id: Option<String>,
    /// Tokens whose delivery the fault schedule made ambiguous (reported failed).
    ambiguous: Mutex<BTreeSet<u64>>,
}

impl BrokerBaseProducer {
    pub(crate) fn create(
        shared: Arc<BrokerShared>,
        incarnation: Incarnation,
        config: &ClientConfig,
    ) -> KafkaResult<Self> {
        if !shared.run.lock().alive(incarnation) {
            return Err(crashed(dead_error()));
        }
        let transactional_id = config.get("transactional.id").map(str::to_string);
        let idempotent =
            transactional_id.is_some() || config.get("enable.idempotence") == Some("true");
        let producer: BaseProducer<ReportContext> = shared
            .session
            .client_config(config)
            .create_with_context(ReportContext::default())?;
        // rdkafka owns the context it was given; reports are read back through it.
        let context = Producer::context(&producer).clone();
        let native = Slot::new(producer);
        shared.register(incarnation, NativeClient::BaseProducer(native.clone()));
        Ok(BrokerBaseProducer {
            shared,
            incarnation,
            native,
            context,
            idempotent,
            transactional_id,
            ambiguous: Mutex::new(BTreeSet::new()),
        })
    }

    fn alive(&self) -> bool {
        self.shared.run.lock().alive(self.incarnation)
    }

    fn intercept(&self, operation: Operation) -> Injection {
        self.shared
            .intercept(operation, self.incarnation, None)
            .unwrap_or_else(|_| unwind_crash())
    }

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

    fn ambiguous(&self) -> MutexGuard<'_, BTreeSet<u64>> {
        self.ambiguous
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the librdkafka handle; unwinds when the run destroyed it.
    fn with_native<T>(&self, f: impl FnOnce(&BaseProducer<ReportContext>) -> T) -> T {
        let slot = self.native.lock();
        match slot.as_ref() {
            Some(producer) => f(producer),
            None => {
                drop(slot);
                unwind_crash();
            }
        }
    }

    /// Hands one copy to librdkafka.
    fn enqueue(&self, record: &OutgoingRecord, opaque: usize) -> KafkaResult<()> {
        let headers = (!record.headers.is_empty()).then(|| {
            record
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |h, (k, v)| {
                    h.insert(rdkafka::message::Header {
                        key: k.as_str(),
                        value: v.as_deref(),
                    })
                })
        });
        self.with_native(|producer| {
            let mut base = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&record.topic, opaque);
            base.partition = record.partition;
            base.key = record.key.as_deref();
            base.payload = record.payload.as_deref();
            base.timestamp = record.timestamp;
            base.headers = headers;
            producer.send(base).map_err(|(e, _)| e)
        })
    }

    /// Records what librdkafka reported and hands the application its reports.
    fn serve_collected(&self, serve: &mut dyn FnMut(Report)) {
        for (opaque, report) in self.context.take() {
            let token = (opaque >> 2) as u64;
            let (hidden, retry) = (opaque & HIDDEN != 0, opaque & RETRY != 0);
            let mut report = report;
            match &report {
                Ok(m) => self.record(HistoryEvent::RecordProduced {
                    position: TopicPartition::new(m.topic(), m.partition()).at(m.offset()),
                    key: m.key().map(key_text_of),
                    retry,
                }),
                Err((e, m)) => self.record(HistoryEvent::ProduceFailed {
                    partition: TopicPartition::new(m.topic(), m.partition()),
                    error: e.to_string(),
                    appended: false,
                }),
            }
            if hidden {
                continue;
            }
            if self.ambiguous().remove(&token) {
                if let Ok(m) = &report {
                    let timed_out =
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
                    self.record(HistoryEvent::ProduceFailed {
                        partition: TopicPartition::new(m.topic(), m.partition()),
                        error: timed_out.to_string(),
                        appended: true,
                    });
                    report = Err((timed_out, m.clone()));
                }
            }
            serve(Report {
                token,
                result: report,
            });
        }
    }
}

impl BaseProducerClient for BrokerBaseProducer {
    fn send(&self, record: &OutgoingRecord, token: u64) -> KafkaResult<()> {
        let injection = self.intercept(Operation::Send);
        let opaque = (token as usize) << 2;
        let partition = record.partition.unwrap_or(-1);
        let what = format!("{} to {}[{partition}]", Operation::Send, record.topic);
        if injection.fail {
            let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
            let message = record.clone().into_message_at(partition, OFFSET_INVALID, 0);
            self.context.push(opaque, Err((timed_out, message)));
            self.complete(&injection, &what);
            return Ok(());
        }
        let lost_ack = injection.lose_ack && !self.idempotent;
        let first = if lost_ack { opaque | HIDDEN } else { opaque };
        let queued = self.enqueue(record, first);
        if queued.is_ok() && lost_ack {
            // librdkafka retries the batch whose acknowledgement was lost; without idempotence
            // the broker appends it again. (With it, the broker drops the retry.)
            self.enqueue(record, opaque | RETRY)?;
        }
        if queued.is_ok() && injection.ambiguous {
            self.ambiguous().insert(token);
        }
        self.complete(&injection, &what);
        queued
    }

    fn poll(&self, timeout: Timeout, serve: &mut dyn FnMut(Report)) {
        self.with_native(|p| p.poll(timeout));
        self.serve_collected(serve);
    }

    fn flush(&self, timeout: Timeout, serve: &mut dyn FnMut(Report)) -> KafkaResult<()> {
        let injection = self.intercept(Operation::Flush);
        let result = self.with_native(|p| p.flush(timeout));
        if !self.alive() {
            unwind_crash();
        }
        self.serve_collected(serve);
        self.complete(&injection, &Operation::Flush);
        result
    }

    fn in_flight_count(&self) -> i32 {
        let collected = self
            .context
            .reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        self.with_native(|p| p.in_flight_count()) + i32::try_from(collected).unwrap_or(i32::MAX)
    }

    fn ready(&self) -> BoxFuture<'_, ()> {
        // A background thread polls librdkafka every few milliseconds.
        Box::pin(tokio::time::sleep(Duration::from_millis(5)))
    }

    fn close(&self, serve: &mut dyn FnMut(Report)) {
        if !self.alive() {
            return;
        }
        // rdkafka's drop purges what is queued and serves the reports.
        let producer = self.native.lock().take();
        drop(producer);
        self.serve_collected(serve);
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

impl BrokerBaseProducer {
    /// A synchronous transactional call: an interception point around `call`.
    fn transactional_call(
        &self,
        operation: Operation,
        call: impl FnOnce(&BaseProducer<ReportContext>, &Injection) -> KafkaResult<()>,
    ) -> KafkaResult<()> {
        let injection = self.intercept(operation);
        let result = self.with_native(|p| call(p, &injection));
        if !self.alive() {
            unwind_crash();
        }
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
