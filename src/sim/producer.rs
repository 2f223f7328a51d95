//! The simulated producer: acks, librdkafka's internal retries, the idempotent producer.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::error::KafkaResult;
use rdkafka::message::Timestamp;
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::config::{Acks, ProducerSettings};
use super::log::{Append, RecordKind, StoredRecord};
use super::txn::{SendRefused, TxnClient};
use super::{ClientId, Shared, World};
use crate::client::txn_error::{TxnError, kafka_error};
use crate::client::{GroupMetadata, GroupMetadataRepr, foreign_group_metadata};
use crate::history::Operation;
use crate::history::TopicPartition;
use crate::history::{HistoryEvent, Incarnation};
use crate::run::backend::{BoxFuture, ProducerClient};
use crate::run::client::OutgoingRecord;
use crate::run::core::{Crashed, crashed, dead_error, unwind_crash};
use crate::run::fault_plan::Injection;

/// `RD_KAFKA_OFFSET_INVALID`.
const OFFSET_INVALID: i64 = -1001;

/// One producer client's state.
#[derive(Debug)]
pub(crate) struct ProducerState {
    pub incarnation: Incarnation,
    pub settings: ProducerSettings,
    /// (producer id, epoch) when `enable.idempotence=true`.
    pub identity: Option<(i64, i16)>,
    /// Next sequence number per partition (idempotent producer).
    pub sequences: BTreeMap<TopicPartition, i32>,
    /// The transactional state, with `transactional.id`.
    pub txn: Option<TxnClient>,
}

/// What the first, synchronous part of a send decided.
pub(super) struct Prepared {
    pub(super) partition: i32,
    pub(super) timestamp: i64,
    pub(super) injection: Injection,
    pub(super) wait: Duration,
    /// After a lost acknowledgement: `Some(wait)` before librdkafka's retry (the request
    /// timeout, then the retry backoff), `None` when the message times out first.
    pub(super) retry_after: Option<Duration>,
    message_timeout: Duration,
    pub(super) acks: Acks,
}

impl World {
    pub(super) fn prepare_send(
        &mut self,
        client: ClientId,
        record: &OutgoingRecord,
    ) -> Result<Result<Prepared, KafkaError>, ()> {
        let Some(p) = self.producers.get(&client) else {
            return Err(());
        };
        let incarnation = p.incarnation;
        if !self.alive(incarnation) {
            return Err(());
        }
        let settings = &p.settings;
        let (partitioner, acks, message_timeout) = (
            settings.partitioner,
            settings.acks,
            settings.message_timeout,
        );
        let retry_wait = settings.request_timeout + settings.retry_backoff;
        let retry_after =
            (message_timeout.is_zero() || retry_wait < message_timeout).then_some(retry_wait);
        let Some(partitions) = self.partitions_of(&record.topic) else {
            return Ok(Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::UnknownTopicOrPartition,
            )));
        };
        let partition = match record.partition {
            Some(p) if (0..partitions).contains(&p) => p,
            Some(_) => {
                return Ok(Err(KafkaError::MessageProduction(
                    RDKafkaErrorCode::UnknownPartition,
                )));
            }
            None => partitioner.partition(record.key.as_deref(), partitions, |n| {
                self.run.lock().rng.below(n)
            }),
        };
        let anchor = self.current_record(incarnation);
        let send = Operation::Send;
        let what = format_args!("{send} to {}[{partition}]", record.topic);
        let injection = self
            .intercept_call(send, incarnation, anchor.as_ref(), &what)
            .map_err(|_: Crashed| ())?;
        if let Some(freeze) = injection.freeze {
            // The process freezes right here: the request goes out after the thaw.
            self.freeze(incarnation, freeze);
        }
        // While the broker is down, librdkafka holds the request until it is back.
        let outage = self.broker_down().map_or(Duration::ZERO, |back| {
            back.saturating_duration_since(tokio::time::Instant::now())
        });
        let wait = injection.stall.unwrap_or_default() + outage + self.latency();
        let timestamp = record
            .timestamp
            .unwrap_or_else(|| self.elapsed().as_millis() as i64);
        Ok(Ok(Prepared {
            partition,
            timestamp,
            injection,
            wait,
            retry_after,
            message_timeout,
            acks,
        }))
    }

    /// Appends one copy of the record; `retry` marks librdkafka's internal retry.
    pub(super) fn append_sent(
        &mut self,
        client: ClientId,
        record: &OutgoingRecord,
        prepared: &Prepared,
        retry: bool,
    ) -> Option<i64> {
        let p = self.producers.get_mut(&client)?;
        let incarnation = p.incarnation;
        let tp = TopicPartition::new(record.topic.clone(), prepared.partition);
        let sequence = p.identity.map(|(pid, epoch)| {
            let next = p.sequences.entry(tp.clone()).or_insert(0);
            // A retry resends the same batch, with the same sequence number.
            if retry {
                (pid, epoch, *next - 1)
            } else {
                *next += 1;
                (pid, epoch, *next - 1)
            }
        });
        let transaction = if p.txn.is_some() {
            self.txn_note_write(client, &tp)
        } else {
            None
        };
        let stored = StoredRecord {
            kind: RecordKind::Data,
            transaction,
            key: record.key.as_deref().map(Arc::from),
            payload: record.payload.as_deref().map(Arc::from),
            headers: record.headers.as_slice().into(),
            timestamp: prepared.timestamp,
        };
        let key = stored.key_text();
        let log = &mut self.topics.get_mut(&tp.topic)?.partitions[tp.partition as usize];
        let appended = match sequence {
            Some((pid, epoch, seq)) => log.append_idempotent(pid, epoch, seq, stored),
            None => Append::Appended(log.append(stored)),
        };
        if let (Some(pid), Append::Appended(offset)) = (transaction, appended) {
            log.note_transactional_write(pid, offset);
        }
        let event = match (appended, sequence) {
            (Append::Appended(offset), _) => HistoryEvent::RecordProduced {
                position: tp.at(offset),
                key,
                retry,
            },
            (Append::Duplicate(offset), Some((producer_id, _, sequence))) => {
                HistoryEvent::DuplicateDropped {
                    original: tp.at(offset),
                    producer_id,
                    sequence,
                }
            }
            (Append::Duplicate(_), None) => unreachable!("only idempotent appends deduplicate"),
        };
        self.record(Some(incarnation), event);
        Some(match appended {
            Append::Appended(o) | Append::Duplicate(o) => o,
        })
    }
}

/// A producer of the simulated cluster (see [`Producer`](crate::Producer), the handle users
/// hold): acks, librdkafka's retries, the idempotent and the transactional producer.
pub(crate) struct SimProducer {
    pub(super) shared: Arc<Shared>,
    pub(super) client: ClientId,
    pub(super) incarnation: Incarnation,
}

impl std::fmt::Debug for SimProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimProducer")
            .field("incarnation", &self.incarnation)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl SimProducer {
    pub(crate) fn create(
        shared: Arc<Shared>,
        incarnation: Incarnation,
        config: &ClientConfig,
    ) -> rdkafka::error::KafkaResult<Self> {
        let settings = ProducerSettings::from_config(config)?;
        let client = {
            let mut world = shared.lock();
            if !world.alive(incarnation) {
                drop(world);
                return Err(crashed(dead_error()));
            }
            // A transactional producer gets its identity from `init_transactions`.
            let txn = settings.transactional_id.clone().map(TxnClient::new);
            let identity = (settings.enable_idempotence && txn.is_none())
                .then(|| (world.next_producer_id(), 0));
            let client = world.next_client_id();
            world.producers.insert(
                client,
                ProducerState {
                    incarnation,
                    settings,
                    identity,
                    sequences: BTreeMap::new(),
                    txn,
                },
            );
            client
        };
        Ok(SimProducer {
            shared,
            client,
            incarnation,
        })
    }

    async fn send_outgoing(&self, record: OutgoingRecord) -> OwnedDeliveryResult {
        // A frozen process sends nothing (this call comes from a task outside the freeze gate).
        self.shared.thawed(self.incarnation).await;
        let prepared = self.shared.lock().prepare_send(self.client, &record);
        self.shared.publish();
        let prepared = match prepared {
            Err(()) => unwind_crash(),
            Ok(Err(e)) => {
                let partition = record.partition.unwrap_or(-1);
                return Err((e, record.into_message(partition, 0)));
            }
            Ok(Ok(p)) => p,
        };
        // From here on the record is librdkafka's: dropping the delivery future does not take it
        // back (rdkafka's `FutureProducer`), so a dropped future leaves its delivery running.
        let delivery = InFlight {
            shared: self.shared.clone(),
            client: self.client,
            incarnation: self.incarnation,
        };
        Detached {
            shared: self.shared.clone(),
            incarnation: self.incarnation,
            rest: Some(Box::pin(delivery.deliver(record, prepared))),
        }
        .await
    }
}

/// A delivery that, dropped before it completes while its instance is alive, goes on as a
/// task of its own.
struct Detached<F: Future<Output = OwnedDeliveryResult> + 'static> {
    shared: Arc<Shared>,
    incarnation: Incarnation,
    rest: Option<Pin<Box<F>>>,
}

impl<F: Future<Output = OwnedDeliveryResult> + 'static> Future for Detached<F> {
    type Output = OwnedDeliveryResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<OwnedDeliveryResult> {
        let rest = self.rest.as_mut().expect("polled after completion");
        let result = rest.as_mut().poll(cx);
        if result.is_ready() {
            self.rest = None;
        }
        result
    }
}

impl<F: Future<Output = OwnedDeliveryResult> + 'static> Drop for Detached<F> {
    fn drop(&mut self) {
        let Some(rest) = self.rest.take() else {
            return;
        };
        if self.shared.lock().alive(self.incarnation) {
            // Its outcome goes nowhere (a crash after the send still crashes the instance).
            tokio::task::spawn_local(rest);
        }
    }
}

/// The part of a send that happens after librdkafka took the record: the produce request,
/// the acknowledgement, librdkafka's retry.
struct InFlight {
    shared: Arc<Shared>,
    client: ClientId,
    incarnation: Incarnation,
}

impl InFlight {
    fn check_alive(&self) {
        if !self.shared.lock().alive(self.incarnation) {
            unwind_crash();
        }
    }

    async fn deliver(self, record: OutgoingRecord, prepared: Prepared) -> OwnedDeliveryResult {
        // A freeze that fired on the send holds it up until the thaw.
        self.shared.thawed(self.incarnation).await;
        tokio::time::sleep(prepared.wait).await;
        self.check_alive();
        let injection = prepared.injection;
        let tp = TopicPartition::new(record.topic.clone(), prepared.partition);
        let refused = self.shared.lock().txn_may_send(self.client);
        if let Err(refused) = refused {
            let code = match refused {
                SendRefused::State => RDKafkaErrorCode::State,
                SendRefused::Fenced => RDKafkaErrorCode::Fenced,
                SendRefused::Fatal => RDKafkaErrorCode::Fatal,
            };
            let error = KafkaError::MessageProduction(code);
            self.shared.lock().record(
                Some(self.incarnation),
                HistoryEvent::ProduceFailed {
                    partition: tp,
                    error: error.to_string(),
                    appended: false,
                },
            );
            self.shared.publish();
            return Err((
                error,
                record.into_message(prepared.partition, prepared.timestamp),
            ));
        }
        let mut offset = None;
        if !injection.fail {
            offset = self
                .shared
                .lock()
                .append_sent(self.client, &record, &prepared, false);
            self.shared.publish();
        }
        let mut timed_out = false;
        if injection.lose_ack && !injection.fail && prepared.acks != Acks::None {
            // The broker appended the batch but the response never arrived: librdkafka waits
            // out `request.timeout.ms`, then retries after `retry.backoff.ms`, unless
            // `message.timeout.ms` expires first.
            match prepared.retry_after {
                Some(wait) => {
                    tokio::time::sleep(wait).await;
                    self.check_alive();
                    offset = self
                        .shared
                        .lock()
                        .append_sent(self.client, &record, &prepared, true);
                    self.shared.publish();
                }
                None => {
                    tokio::time::sleep(prepared.message_timeout).await;
                    self.check_alive();
                    timed_out = true;
                }
            }
        }
        let failure = match prepared.acks {
            // Nobody waits for an answer: a lost record goes unnoticed.
            Acks::None => None,
            _ if injection.fail || injection.ambiguous || timed_out => Some(
                KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            ),
            _ => None,
        };
        if let Some(error) = &failure {
            let mut world = self.shared.lock();
            world.record(
                Some(self.incarnation),
                HistoryEvent::ProduceFailed {
                    partition: tp.clone(),
                    error: error.to_string(),
                    appended: offset.is_some(),
                },
            );
            drop(world);
            self.shared.publish();
        }
        let send = Operation::Send;
        let completed = self.shared.lock().complete_call(
            &injection,
            self.incarnation,
            &format_args!("{send} to {tp}"),
        );
        if completed.is_err() {
            self.shared.publish();
            unwind_crash();
        }
        match failure {
            Some(error) => Err((
                error,
                record.into_message(prepared.partition, prepared.timestamp),
            )),
            None => Ok(Delivery {
                partition: prepared.partition,
                offset: match prepared.acks {
                    // librdkafka reports RD_KAFKA_OFFSET_INVALID without acknowledgements.
                    Acks::None => OFFSET_INVALID,
                    _ => offset.unwrap_or(OFFSET_INVALID),
                },
                timestamp: Timestamp::CreateTime(prepared.timestamp),
            }),
        }
    }
}

impl SimProducer {
    /// A synchronous transactional call: an interception point around `apply`.
    fn transactional_call(
        &self,
        operation: Operation,
        apply: impl FnOnce(&mut World, ClientId, &Injection) -> Result<(), TxnError>,
    ) -> KafkaResult<()> {
        let mut world = self.shared.lock();
        let anchor = world.current_record(self.incarnation);
        let Ok(injection) =
            world.intercept_call(operation, self.incarnation, anchor.as_ref(), &operation)
        else {
            drop(world);
            self.shared.publish();
            unwind_crash();
        };
        let result = apply(&mut world, self.client, &injection);
        let id = world
            .producers
            .get(&self.client)
            .and_then(|p| p.txn.as_ref())
            .map(|t| t.id.clone());
        drop(world);
        if let Err(error) = &result {
            self.shared.lock().record(
                Some(self.incarnation),
                HistoryEvent::TransactionCallFailed {
                    transactional_id: id.unwrap_or_default(),
                    call: operation.to_string(),
                    error: error.to_string(),
                },
            );
        }
        let result = result.map_err(kafka_error);
        let completed = self
            .shared
            .lock()
            .complete_call(&injection, self.incarnation, &operation);
        if completed.is_err() {
            self.shared.publish();
            unwind_crash();
        }
        self.shared.publish();
        result
    }
}

impl ProducerClient for SimProducer {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'_, OwnedDeliveryResult> {
        Box::pin(self.send_outgoing(record))
    }

    fn init_transactions(&self, _timeout: Timeout) -> KafkaResult<()> {
        self.transactional_call(Operation::InitTransactions, |world, client, _| {
            world.txn_init(client)
        })
    }

    fn begin_transaction(&self) -> KafkaResult<()> {
        self.transactional_call(Operation::BeginTransaction, |world, client, _| {
            world.txn_begin(client)
        })
    }

    /// Group metadata from an rdkafka consumer is an `InvalidArgument` error.
    fn send_offsets_to_transaction(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        _timeout: Timeout,
    ) -> KafkaResult<()> {
        let GroupMetadataRepr::Simulated {
            group,
            generation,
            member,
        } = &metadata.0
        else {
            return Err(foreign_group_metadata());
        };
        let mut list = Vec::new();
        for e in offsets.elements() {
            match e.offset() {
                Offset::Offset(o) => list.push((TopicPartition::new(e.topic(), e.partition()), o)),
                _ => {
                    return Err(KafkaError::MessageProduction(
                        RDKafkaErrorCode::InvalidArgument,
                    ));
                }
            }
        }
        self.transactional_call(Operation::SendOffsetsToTransaction, |world, client, _| {
            world.txn_send_offsets(client, group, (member.as_deref(), *generation), &list)
        })
    }

    fn commit_transaction(&self, _timeout: Timeout) -> KafkaResult<()> {
        self.transactional_call(Operation::CommitTransaction, |world, client, injection| {
            world.txn_commit(client, injection)
        })
    }

    fn abort_transaction(&self, _timeout: Timeout) -> KafkaResult<()> {
        self.transactional_call(Operation::AbortTransaction, |world, client, _| {
            world.txn_abort(client)
        })
    }
}

impl Drop for SimProducer {
    fn drop(&mut self) {
        let mut world = self.shared.lock();
        if world.alive(self.incarnation) {
            world.producers.remove(&self.client);
        }
    }
}
