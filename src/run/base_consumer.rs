//! The synchronous consumer a program run with
//! [`InstanceContext::run_blocking`](super::InstanceContext::run_blocking) creates: the
//! instance's [`Consumer`], each call made on the run from the program's thread.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::OwnedMessage;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::blocking::{Bridge, crashed_or};
use super::client::Consumer;
use super::context::InstanceContext;
use super::core::dead_error;
use crate::client::{ConsumerHandle, GroupMetadata, KafkaBaseConsumer, KafkaConsumer};

/// The shortest a `poll` that returns nothing waits, in virtual time: a `poll(0)` loop lets
/// the run's clock move, as time passes between librdkafka's polls.
const MIN_EMPTY_POLL: Duration = Duration::from_millis(1);

/// The synchronous consumer a [`BlockingContext`](crate::clients::BlockingContext) creates,
/// as rdkafka's `BaseConsumer`: it implements [`KafkaBaseConsumer`]; messages are
/// [`OwnedMessage`]s.
///
/// It is the instance's [`Consumer`] (the simulator's, or librdkafka's on a real broker),
/// with the same semantics and interception points; each call runs on the run while the
/// program's thread waits. `poll(timeout)` is the consumer's `recv` with a timeout in the
/// run's time (virtual on the simulator): `None` when no message came in time. A `poll` that
/// returns nothing waits at least 1 ms, so that a `poll(0)` loop lets time pass. Dropping it
/// closes the consumer, as librdkafka's close. It belongs to the program's thread (neither
/// `Send` nor `Sync`).
pub struct BaseConsumer {
    /// Taken by the drop, which hands it to the run to close.
    consumer: Option<Consumer>,
    bridge: Rc<Bridge>,
}

impl std::fmt::Debug for BaseConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseConsumer").finish_non_exhaustive()
    }
}

impl BaseConsumer {
    pub(crate) fn new(consumer: Consumer, bridge: Rc<Bridge>) -> Self {
        BaseConsumer {
            consumer: Some(consumer),
            bridge,
        }
    }

    fn consumer(&self) -> &Consumer {
        self.consumer.as_ref().expect("present until dropped")
    }

    /// Runs `make`'s future on the run; a crash of the instance unwinds this thread, unless it
    /// is unwinding already: then `fallback`.
    fn on_run<R, Fut>(
        &self,
        fallback: impl FnOnce() -> R,
        make: impl FnOnce(InstanceContext) -> Fut + Send,
    ) -> R
    where
        Fut: Future<Output = R>,
        R: Send,
    {
        self.bridge
            .try_call(make)
            .unwrap_or_else(|payload| crashed_or(payload, fallback))
    }

    /// A synchronous call of the consumer, made on the run.
    fn sync<R: Send>(
        &self,
        fallback: impl FnOnce() -> R,
        call: impl FnOnce(&Consumer) -> R + Send,
    ) -> R {
        let consumer = self.consumer();
        self.on_run(fallback, move |_| std::future::ready(call(consumer)))
    }
}

impl Drop for BaseConsumer {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            self.bridge.release(consumer);
        }
    }
}

impl KafkaBaseConsumer for BaseConsumer {
    type Message<'a> = OwnedMessage;

    fn poll<T: Into<Timeout>>(&self, timeout: T) -> Option<KafkaResult<OwnedMessage>> {
        let timeout = timeout.into();
        let consumer = self.consumer();
        self.on_run(
            || None,
            move |_| async move {
                match timeout {
                    Timeout::Never => Some(consumer.recv().await),
                    Timeout::After(t) => {
                        tokio::time::timeout(t.max(MIN_EMPTY_POLL), consumer.recv())
                            .await
                            .ok()
                    }
                }
            },
        )
    }

    fn commit_message(&self, message: &OwnedMessage, mode: CommitMode) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.commit_message(message, mode))
    }

    fn store_offset_from_message(&self, message: &OwnedMessage) -> KafkaResult<()> {
        self.sync(
            || Err(dead_error()),
            |c| c.store_offset_from_message(message),
        )
    }
}

impl ConsumerHandle for BaseConsumer {
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.subscribe(topics))
    }
    fn unsubscribe(&self) {
        self.sync(|| (), |c| c.unsubscribe())
    }
    fn assignment(&self) -> KafkaResult<TopicPartitionList> {
        self.sync(|| Err(dead_error()), |c| c.assignment())
    }
    fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.assign(assignment))
    }
    fn unassign(&self) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.unassign())
    }
    fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.incremental_assign(assignment))
    }
    fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.incremental_unassign(assignment))
    }
    fn assignment_lost(&self) -> bool {
        self.sync(|| false, |c| c.assignment_lost())
    }
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.sync(|| RebalanceProtocol::None, |c| c.rebalance_protocol())
    }
    fn subscription(&self) -> KafkaResult<TopicPartitionList> {
        self.sync(|| Err(dead_error()), |c| c.subscription())
    }
    fn fetch_watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Timeout,
    ) -> KafkaResult<(i64, i64)> {
        self.sync(
            || Err(dead_error()),
            |c| c.fetch_watermarks(topic, partition, timeout),
        )
    }
    fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.commit(offsets, mode))
    }
    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.commit_consumer_state(mode))
    }
    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        self.sync(
            || Err(dead_error()),
            |c| c.store_offset(topic, partition, offset),
        )
    }
    fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.store_offsets(offsets))
    }
    fn position(&self) -> KafkaResult<TopicPartitionList> {
        self.sync(|| Err(dead_error()), |c| c.position())
    }
    fn committed(&self, timeout: Timeout) -> KafkaResult<TopicPartitionList> {
        self.sync(|| Err(dead_error()), |c| c.committed(timeout))
    }
    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Timeout,
    ) -> KafkaResult<()> {
        self.sync(
            || Err(dead_error()),
            |c| c.seek(topic, partition, offset, timeout),
        )
    }
    fn seek_partitions(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        self.sync(
            || Err(dead_error()),
            |c| c.seek_partitions(partitions, timeout),
        )
    }
    fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.pause(partitions))
    }
    fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        self.sync(|| Err(dead_error()), |c| c.resume(partitions))
    }
    fn committed_offsets(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        self.sync(
            || Err(dead_error()),
            |c| c.committed_offsets(partitions, timeout),
        )
    }
    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.sync(|| None, |c| c.group_metadata())
    }
}
