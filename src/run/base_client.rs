//! The low-level producers an instance creates: [`BaseProducer`] (reports served by `poll`
//! and `flush`) and [`ThreadedProducer`] (served by a background task of the instance).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rdkafka::TopicPartitionList;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::ToBytes;
use rdkafka::producer::BaseRecord;
use rdkafka::util::Timeout;

use super::backend::{BaseProducerClient, Report};
use super::client::OutgoingRecord;
use crate::client::{DeliveryHandler, GroupMetadata, KafkaBaseProducer};

/// The producer and its callback, shared with a [`ThreadedProducer`]'s background task.
struct Inner<H: DeliveryHandler> {
    client: Box<dyn BaseProducerClient>,
    handler: H,
    /// Each accepted record's opaque, until its report is served.
    opaques: Mutex<BTreeMap<u64, H::DeliveryOpaque>>,
    next_token: AtomicU64,
}

impl<H: DeliveryHandler> Inner<H> {
    fn serve(&self, report: Report) {
        let opaque = self
            .opaques
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&report.token);
        if let Some(opaque) = opaque {
            self.handler.delivery(&report.result, opaque);
        }
    }

    fn poll(&self, timeout: Timeout) {
        self.client.poll(timeout, &mut |r| self.serve(r));
    }
}

/// The low-level producer an [`InstanceContext`](crate::InstanceContext) creates: the
/// simulator's, or librdkafka's `BaseProducer` on a real broker. It implements
/// [`KafkaBaseProducer`]; delivery reports go to its [`DeliveryHandler`] from inside `poll`
/// and `flush`, on the caller's task, and from its drop (what is still queued then is purged:
/// `PurgeQueue`).
///
/// `send` is an interception point ([`Operation::Send`](crate::Operation::Send)), `flush`
/// another ([`Operation::Flush`](crate::Operation::Flush)). A record still queued when its
/// instance crashes is lost with the process.
///
/// On the simulator a record is delivered (appended, and a lost acknowledgement's retry
/// resolved right after it) once the network latency passed in virtual time; its report then
/// waits for `poll` or `flush`. A synchronous `poll(timeout)` or `flush(timeout)` cannot let
/// virtual time pass: the deliveries that would complete within `timeout` complete inside the
/// call. librdkafka's retry of a lost acknowledgement waits `request.timeout.ms` first; the
/// simulator's lands at once, as the kit plays it on a real broker.
pub struct BaseProducer<H: DeliveryHandler = ()> {
    inner: Arc<Inner<H>>,
}

impl<H: DeliveryHandler> BaseProducer<H> {
    pub(crate) fn new(client: Box<dyn BaseProducerClient>, handler: H) -> Self {
        BaseProducer {
            inner: Arc::new(Inner {
                client,
                handler,
                opaques: Mutex::new(BTreeMap::new()),
                next_token: AtomicU64::new(0),
            }),
        }
    }

    /// The delivery handler.
    pub fn handler(&self) -> &H {
        &self.inner.handler
    }
}

impl<H: DeliveryHandler> std::fmt::Debug for BaseProducer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseProducer").finish_non_exhaustive()
    }
}

impl<H: DeliveryHandler> Drop for BaseProducer<H> {
    fn drop(&mut self) {
        let inner = &self.inner;
        inner.client.close(&mut |r| inner.serve(r));
    }
}

impl<H: DeliveryHandler> KafkaBaseProducer for BaseProducer<H> {
    type DeliveryOpaque = H::DeliveryOpaque;

    fn send<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, H::DeliveryOpaque>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, H::DeliveryOpaque>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let BaseRecord {
            topic,
            partition,
            payload,
            key,
            timestamp,
            headers,
            delivery_opaque,
        } = record;
        let outgoing = OutgoingRecord::from_parts(
            topic,
            partition,
            key.map(ToBytes::to_bytes),
            payload.map(ToBytes::to_bytes),
            timestamp,
            headers.as_ref(),
        );
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        // Held through the send: a background task serving this record's report waits for
        // its opaque.
        let mut opaques = self
            .inner
            .opaques
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match self.inner.client.send(&outgoing, token) {
            Ok(()) => {
                opaques.insert(token, delivery_opaque);
                Ok(())
            }
            Err(error) => Err((
                error,
                BaseRecord {
                    topic,
                    partition,
                    payload,
                    key,
                    timestamp,
                    headers,
                    delivery_opaque,
                },
            )),
        }
    }

    fn poll<T: Into<Timeout>>(&self, timeout: T) {
        self.inner.poll(timeout.into());
    }

    fn flush<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        let inner = &self.inner;
        inner.client.flush(timeout.into(), &mut |r| inner.serve(r))
    }

    fn in_flight_count(&self) -> i32 {
        self.inner.client.in_flight_count()
    }

    fn init_transactions<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.inner.client.init_transactions(timeout.into())
    }

    fn begin_transaction(&self) -> KafkaResult<()> {
        self.inner.client.begin_transaction()
    }

    /// Group metadata from a consumer of another backend is an `InvalidArgument` error.
    fn send_offsets_to_transaction<T: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: T,
    ) -> KafkaResult<()> {
        self.inner
            .client
            .send_offsets_to_transaction(offsets, metadata, timeout.into())
    }

    fn commit_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.inner.client.commit_transaction(timeout.into())
    }

    fn abort_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.inner.client.abort_transaction(timeout.into())
    }
}

/// A [`BaseProducer`] whose delivery reports are served by a background task of the
/// instance (librdkafka's `ThreadedProducer` polls on a thread of its own): the
/// [`DeliveryHandler`] runs there, not in the application's calls. The task freezes and dies
/// with the instance. `poll` and `flush` serve what the task has not served yet.
pub struct ThreadedProducer<H: DeliveryHandler = ()> {
    base: BaseProducer<H>,
    poller: tokio::task::JoinHandle<()>,
}

impl<H: DeliveryHandler> ThreadedProducer<H> {
    pub(crate) fn new(base: BaseProducer<H>, ctx: &super::InstanceContext) -> Self {
        let inner = base.inner.clone();
        let poller = ctx.spawn(async move {
            loop {
                inner.client.ready().await;
                inner.poll(Timeout::After(std::time::Duration::ZERO));
            }
        });
        ThreadedProducer { base, poller }
    }

    /// The delivery handler.
    pub fn handler(&self) -> &H {
        self.base.handler()
    }
}

impl<H: DeliveryHandler> std::fmt::Debug for ThreadedProducer<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadedProducer").finish_non_exhaustive()
    }
}

impl<H: DeliveryHandler> Drop for ThreadedProducer<H> {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl<H: DeliveryHandler> KafkaBaseProducer for ThreadedProducer<H> {
    type DeliveryOpaque = H::DeliveryOpaque;

    fn send<'a, K, P>(
        &self,
        record: BaseRecord<'a, K, P, H::DeliveryOpaque>,
    ) -> Result<(), (KafkaError, BaseRecord<'a, K, P, H::DeliveryOpaque>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.base.send(record)
    }

    fn poll<T: Into<Timeout>>(&self, timeout: T) {
        self.base.poll(timeout)
    }

    fn flush<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.base.flush(timeout)
    }

    fn in_flight_count(&self) -> i32 {
        self.base.in_flight_count()
    }

    fn init_transactions<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.base.init_transactions(timeout)
    }

    fn begin_transaction(&self) -> KafkaResult<()> {
        self.base.begin_transaction()
    }

    fn send_offsets_to_transaction<T: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: T,
    ) -> KafkaResult<()> {
        self.base
            .send_offsets_to_transaction(offsets, metadata, timeout)
    }

    fn commit_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.base.commit_transaction(timeout)
    }

    fn abort_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.base.abort_transaction(timeout)
    }
}
