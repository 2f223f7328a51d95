//! The librdkafka handles of an instance's clients, and how they die.
//!
//! A crashed process sends nothing more: no LeaveGroup, no final commit, no EndTxn. librdkafka
//! can do that in-process: `rd_kafka_destroy_flags` with `RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE`
//! tears the handle down without the consumer close, so the group only notices the member is
//! gone when its session times out, as it would after a SIGKILL. The Rust wrapper is then
//! forgotten (its own `Drop` would close the consumer and destroy the handle a second time).
//! Every message is detached (copied) as it is polled, so no message keeps the handle alive:
//! a live message makes librdkafka's destroy block forever.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::producer::{BaseProducer, FutureProducer, Producer};

use super::base_producer::ReportContext;
use super::consumer::BrokerContext;

/// A librdkafka handle shared by the client wrapper the consumer code holds and the run,
/// which takes it out to destroy it when the instance crashes.
pub(crate) struct Slot<T>(Mutex<Option<T>>);

impl<T> Slot<T> {
    pub(crate) fn new(value: T) -> Arc<Self> {
        Arc::new(Slot(Mutex::new(Some(value))))
    }

    /// The handle, `None` once it was destroyed.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<T>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the handle out unless its holder is using it right now (a crash fired inside a
    /// callback of that very call): `Err(())` then, and the caller retries later.
    fn try_take(&self) -> Result<Option<T>, ()> {
        match self.0.try_lock() {
            Ok(mut guard) => Ok(guard.take()),
            Err(TryLockError::Poisoned(p)) => Ok(p.into_inner().take()),
            Err(TryLockError::WouldBlock) => Err(()),
        }
    }
}

/// A consumer's librdkafka handle, with the partition queues split off it (rdkafka's
/// `split_partition_queue` wants the consumer in an `Arc`, and each queue holds a clone).
pub(crate) struct NativeConsumer {
    pub consumer: Arc<BaseConsumer<BrokerContext>>,
    /// The partition queues the application holds, by the id its handle knows them by;
    /// destroyed before the consumer, as librdkafka requires.
    pub queues: BTreeMap<u64, PartitionQueue<BrokerContext>>,
    pub next_queue: u64,
}

impl NativeConsumer {
    pub(crate) fn new(consumer: BaseConsumer<BrokerContext>) -> Self {
        NativeConsumer {
            consumer: Arc::new(consumer),
            queues: BTreeMap::new(),
            next_queue: 0,
        }
    }

    /// The consumer alone, once its queues are destroyed (`None`, with a warning, if a clone
    /// of it is still somewhere: it is then left as it is).
    pub(crate) fn into_consumer(mut self) -> Option<BaseConsumer<BrokerContext>> {
        self.queues.clear();
        match Arc::try_unwrap(self.consumer) {
            Ok(consumer) => Some(consumer),
            Err(shared) => {
                tracing::warn!("effectively-once: a consumer handle is still shared; left alive");
                std::mem::forget(shared);
                None
            }
        }
    }
}

pub(crate) type ConsumerSlot = Slot<NativeConsumer>;
pub(crate) type ProducerSlot = Slot<FutureProducer>;
pub(crate) type BaseProducerSlot = Slot<BaseProducer<ReportContext>>;

/// One client of a crashed instance, waiting to be destroyed.
#[derive(Clone)]
pub(crate) enum NativeClient {
    Consumer(Arc<ConsumerSlot>),
    Producer(Arc<ProducerSlot>),
    BaseProducer(Arc<BaseProducerSlot>),
}

impl NativeClient {
    /// Destroys the handle the way a killed process leaves it; `false` when its holder is
    /// inside a call on it (try again after that call returns).
    pub(crate) fn kill(&self) -> bool {
        match self {
            NativeClient::Consumer(slot) => match slot.try_take() {
                Err(()) => false,
                Ok(None) => true,
                Ok(Some(native)) => {
                    if let Some(consumer) = native.into_consumer() {
                        abandon(consumer);
                    }
                    true
                }
            },
            NativeClient::Producer(slot) => match slot.try_take() {
                Err(()) => false,
                Ok(None) => true,
                Ok(Some(producer)) => {
                    // A producer sends nothing on destroy but what is already in flight (no
                    // EndTxn: an open transaction stays open until it is fenced or times
                    // out). Purge what is queued so that dropping does not wait for it.
                    std::thread::spawn(move || {
                        producer.purge(rdkafka::producer::PurgeConfig::default().queue());
                        drop(producer);
                    });
                    true
                }
            },
            NativeClient::BaseProducer(slot) => match slot.try_take() {
                Err(()) => false,
                Ok(None) => true,
                Ok(Some(producer)) => {
                    // As a FutureProducer's: what is queued dies with the process (its reports
                    // go to a context nobody polls any more).
                    std::thread::spawn(move || {
                        producer.purge(rdkafka::producer::PurgeConfig::default().queue());
                        drop(producer);
                    });
                    true
                }
            },
        }
    }
}

/// Destroys `consumer` the way a killed process leaves it (no LeaveGroup, no final commit), on
/// a thread of its own: destroying waits for librdkafka's threads. No message of it may be
/// alive (a live message makes the destroy block forever).
pub(crate) fn abandon<C: ConsumerContext + 'static>(consumer: BaseConsumer<C>) {
    std::thread::spawn(move || {
        let native = Consumer::client(&consumer).native_ptr();
        // SAFETY: the handle is valid (the wrapper is alive and owned here), no message of it
        // is alive (the caller's promise), and the wrapper is forgotten right after, so
        // nothing uses or destroys the handle again.
        unsafe {
            rdkafka::bindings::rd_kafka_destroy_flags(
                native,
                rdkafka::bindings::RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE,
            );
        }
        std::mem::forget(consumer);
    });
}
