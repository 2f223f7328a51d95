//! The simulated `BaseProducer`: `send` enqueues, the record is delivered once the network
//! latency passed (virtual time), and its report waits for `poll` or `flush`.
//!
//! A synchronous `poll(timeout)` or `flush(timeout)` cannot let virtual time pass, so the
//! deliveries due within its timeout happen inside the call. A lost acknowledgement's retry
//! lands right after the original (librdkafka waits `request.timeout.ms` first). Records
//! still queued when the instance crashes are lost with it; those queued when a live
//! instance drops the producer are purged (`PurgeQueue`), as rdkafka's drop does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::config::Acks;
use super::producer::{Prepared, SimProducer};
use super::txn::SendRefused;
use super::{ClientId, Shared, World};
use crate::client::GroupMetadata;
use crate::history::{HistoryEvent, Incarnation, Operation, TopicPartition};
use crate::run::backend::{BaseProducerClient, BoxFuture, ProducerClient, Report};
use crate::run::client::OutgoingRecord;
use crate::run::core::unwind_crash;

/// `RD_KAFKA_OFFSET_INVALID`: the offset of a record that was not delivered.
const OFFSET_INVALID: i64 = -1001;

/// A record librdkafka holds: due for delivery at `due`.
struct Queued {
    token: u64,
    record: OutgoingRecord,
    prepared: Prepared,
    due: Instant,
}

#[derive(Default)]
struct Queues {
    /// Not delivered yet, in send order.
    queued: VecDeque<Queued>,
    /// Delivered or failed, the report not served yet.
    reports: VecDeque<Report>,
}

/// The simulator's low-level producer.
pub(crate) struct SimBaseProducer {
    producer: SimProducer,
    max_queued: usize,
    queues: Arc<Mutex<Queues>>,
    ready: Arc<Notify>,
}

impl World {
    /// Delivers one record: the append (and a lost acknowledgement's retry), or the failure.
    /// `None` when the instance is gone (the record died with the process).
    fn deliver_queued(
        &mut self,
        client: ClientId,
        incarnation: Incarnation,
        record: &OutgoingRecord,
        prepared: &Prepared,
    ) -> Option<Result<i64, KafkaError>> {
        if !self.alive(incarnation) {
            return None;
        }
        let injection = &prepared.injection;
        let tp = TopicPartition::new(record.topic.clone(), prepared.partition);
        let failed = |world: &mut World, error: KafkaError, appended: bool| {
            world.record(
                Some(incarnation),
                HistoryEvent::ProduceFailed {
                    partition: tp.clone(),
                    error: error.to_string(),
                    appended,
                },
            );
            Some(Err(error))
        };
        if let Err(refused) = self.txn_may_send(client) {
            let code = match refused {
                SendRefused::State => RDKafkaErrorCode::State,
                SendRefused::Fenced => RDKafkaErrorCode::Fenced,
                SendRefused::Fatal => RDKafkaErrorCode::Fatal,
            };
            return failed(self, KafkaError::MessageProduction(code), false);
        }
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        if injection.fail {
            return match prepared.acks {
                Acks::None => Some(Ok(OFFSET_INVALID)),
                _ => failed(self, timed_out, false),
            };
        }
        let mut offset = self.append_sent(client, record, prepared, false);
        if injection.lose_ack && prepared.acks != Acks::None {
            match prepared.retry_after {
                Some(_) => offset = self.append_sent(client, record, prepared, true),
                None => return failed(self, timed_out, offset.is_some()),
            }
        }
        if injection.ambiguous && prepared.acks != Acks::None {
            return failed(self, timed_out, offset.is_some());
        }
        Some(Ok(match prepared.acks {
            Acks::None => OFFSET_INVALID,
            _ => offset.unwrap_or(OFFSET_INVALID),
        }))
    }
}

impl SimBaseProducer {
    pub(crate) fn create(
        shared: Arc<Shared>,
        incarnation: Incarnation,
        config: &ClientConfig,
    ) -> KafkaResult<Self> {
        let producer = SimProducer::create(shared, incarnation, config)?;
        let max_queued = producer
            .shared
            .lock()
            .producers
            .get(&producer.client)
            .map_or(100_000, |p| p.settings.max_queued);
        Ok(SimBaseProducer {
            producer,
            max_queued,
            queues: Arc::new(Mutex::new(Queues::default())),
            ready: Arc::new(Notify::new()),
        })
    }

    fn queues(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Delivers, in send order, the queued records due by `horizon`.
    fn deliver_due(&self, horizon: Option<Instant>) {
        deliver_due(
            &self.producer.shared,
            self.producer.client,
            self.producer.incarnation,
            &self.queues,
            &self.ready,
            horizon,
        );
    }

    /// Hands the reports ready to `serve`, outside the locks.
    fn serve_reports(&self, serve: &mut dyn FnMut(Report)) {
        loop {
            let next = self.queues().reports.pop_front();
            match next {
                Some(report) => serve(report),
                None => return,
            }
        }
    }

    fn alive(&self) -> bool {
        self.producer.shared.lock().alive(self.producer.incarnation)
    }
}

/// The horizon a synchronous call of `timeout` reaches (`None`: everything).
fn horizon(timeout: Timeout) -> Option<Instant> {
    match timeout {
        Timeout::After(d) => Some(Instant::now() + d),
        Timeout::Never => None,
    }
}

fn deliver_due(
    shared: &Shared,
    client: ClientId,
    incarnation: Incarnation,
    queues: &Mutex<Queues>,
    ready: &Notify,
    horizon: Option<Instant>,
) {
    let mut delivered = false;
    loop {
        let mut q = queues.lock().unwrap_or_else(PoisonError::into_inner);
        let due = q
            .queued
            .front()
            .is_some_and(|r| horizon.is_none_or(|h| r.due <= h));
        if !due {
            break;
        }
        let Some(queued) = q.queued.pop_front() else {
            break;
        };
        let outcome =
            shared
                .lock()
                .deliver_queued(client, incarnation, &queued.record, &queued.prepared);
        let Some(outcome) = outcome else {
            q.queued.clear();
            break;
        };
        let (partition, timestamp) = (queued.prepared.partition, queued.prepared.timestamp);
        let result = match outcome {
            Ok(offset) => Ok(queued.record.into_message_at(partition, offset, timestamp)),
            Err(e) => Err((
                e,
                queued
                    .record
                    .into_message_at(partition, OFFSET_INVALID, timestamp),
            )),
        };
        q.reports.push_back(Report {
            token: queued.token,
            result,
        });
        delivered = true;
    }
    if delivered {
        shared.publish();
        ready.notify_one();
    }
}

impl BaseProducerClient for SimBaseProducer {
    fn send(&self, record: &OutgoingRecord, token: u64) -> KafkaResult<()> {
        let held = {
            let q = self.queues();
            q.queued.len() + q.reports.len()
        };
        if held >= self.max_queued {
            return Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull));
        }
        let p = &self.producer;
        let prepared = p.shared.lock().prepare_send(p.client, record);
        p.shared.publish();
        let prepared = match prepared {
            Err(()) => unwind_crash(),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(prepared)) => prepared,
        };
        let due = Instant::now() + prepared.wait;
        let send = Operation::Send;
        let what = format!("{send} to {}[{}]", record.topic, prepared.partition);
        let injection = prepared.injection;
        self.queues().queued.push_back(Queued {
            token,
            record: record.clone(),
            prepared,
            due,
        });
        // librdkafka's threads deliver it in the background once the latency passed.
        let (shared, queues, ready) = (p.shared.clone(), self.queues.clone(), self.ready.clone());
        let (client, incarnation) = (p.client, p.incarnation);
        tokio::task::spawn_local(async move {
            tokio::time::sleep_until(due).await;
            // A frozen process sends nothing until the thaw.
            shared.thawed(incarnation).await;
            deliver_due(
                &shared,
                client,
                incarnation,
                &queues,
                &ready,
                Some(Instant::now()),
            );
        });
        let completed = p
            .shared
            .lock()
            .complete_call(&injection, incarnation, &what);
        if completed.is_err() {
            p.shared.publish();
            unwind_crash();
        }
        Ok(())
    }

    fn poll(&self, timeout: Timeout, serve: &mut dyn FnMut(Report)) {
        if !self.alive() {
            unwind_crash();
        }
        self.deliver_due(horizon(timeout));
        self.serve_reports(serve);
    }

    fn flush(&self, timeout: Timeout, serve: &mut dyn FnMut(Report)) -> KafkaResult<()> {
        let p = &self.producer;
        let flush = Operation::Flush;
        let injection = {
            let mut world = p.shared.lock();
            let anchor = world.current_record(p.incarnation);
            world.intercept_call(flush, p.incarnation, anchor.as_ref(), &flush)
        };
        let Ok(injection) = injection else {
            p.shared.publish();
            unwind_crash();
        };
        self.deliver_due(horizon(timeout));
        self.serve_reports(serve);
        let left = !self.queues().queued.is_empty();
        let completed = p
            .shared
            .lock()
            .complete_call(&injection, p.incarnation, &flush);
        p.shared.publish();
        if completed.is_err() {
            unwind_crash();
        }
        match left {
            true => Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)),
            false => Ok(()),
        }
    }

    fn in_flight_count(&self) -> i32 {
        let q = self.queues();
        i32::try_from(q.queued.len() + q.reports.len()).unwrap_or(i32::MAX)
    }

    fn ready(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            loop {
                let notified = self.ready.notified();
                if !self.queues().reports.is_empty() {
                    return;
                }
                notified.await;
            }
        })
    }

    fn close(&self, serve: &mut dyn FnMut(Report)) {
        if !self.alive() {
            return;
        }
        {
            let mut q = self.queues();
            let purged: Vec<Queued> = q.queued.drain(..).collect();
            for r in purged {
                let error = KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue);
                let (partition, timestamp) = (r.prepared.partition, r.prepared.timestamp);
                let message = r
                    .record
                    .into_message_at(partition, OFFSET_INVALID, timestamp);
                q.reports.push_back(Report {
                    token: r.token,
                    result: Err((error, message)),
                });
            }
        }
        self.serve_reports(serve);
    }

    fn init_transactions(&self, timeout: Timeout) -> KafkaResult<()> {
        self.producer.init_transactions(timeout)
    }

    fn begin_transaction(&self) -> KafkaResult<()> {
        self.producer.begin_transaction()
    }

    fn send_offsets_to_transaction(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: Timeout,
    ) -> KafkaResult<()> {
        self.producer
            .send_offsets_to_transaction(offsets, metadata, timeout)
    }

    fn commit_transaction(&self, timeout: Timeout) -> KafkaResult<()> {
        // librdkafka flushes the transaction's records before it commits.
        self.deliver_due(None);
        self.producer.commit_transaction(timeout)
    }

    fn abort_transaction(&self, timeout: Timeout) -> KafkaResult<()> {
        self.producer.abort_transaction(timeout)
    }
}
