//! The client API a consumer under test is written against.
//!
//! The traits follow rdkafka's method names and types, so one generic function runs on the
//! simulator in tests ([`Consumer`](crate::Consumer), [`Producer`](crate::Producer))
//! and on rdkafka's [`StreamConsumer`](rdkafka::consumer::StreamConsumer) and
//! [`FutureProducer`](rdkafka::producer::FutureProducer) in production. Messages implement
//! [`rdkafka::message::Message`]; errors are [`rdkafka::error::KafkaError`].
//!
//! Rebalance callbacks are written once as a [`RebalanceHandler`]; in production wrap it in a
//! [`RebalanceContext`] when creating the rdkafka consumer, in tests hand it to
//! [`InstanceContext::create_consumer_with_handler`](crate::InstanceContext::create_consumer_with_handler).

mod base_consumer;
mod base_producer;
pub(crate) mod partitioner;
mod rdkafka_impl;
pub(crate) mod txn_error;

use std::future::Future;
use std::sync::Arc;

use futures_core::Stream;
use rdkafka::consumer::{CommitMode, Rebalance, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Message, ToBytes};
use rdkafka::producer::{FutureRecord, future_producer::OwnedDeliveryResult};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

pub use base_consumer::KafkaBaseConsumer;
pub use base_producer::{DeliveryContext, DeliveryHandler, DeliveryReport, KafkaBaseProducer};
pub use rdkafka_impl::RebalanceContext;

/// The synchronous consumer operations: everything but receiving messages. This is what a
/// rebalance callback gets, like rdkafka hands `pre_rebalance` a `&BaseConsumer`.
///
/// Each method behaves as its namesake on [`rdkafka::consumer::Consumer`].
pub trait ConsumerHandle {
    /// Subscribes to `topics` (replacing any previous subscription); the group assigns
    /// partitions on the following polls.
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()>;
    /// Leaves the group and drops the subscription.
    fn unsubscribe(&self);
    /// The partitions currently assigned to this consumer.
    fn assignment(&self) -> KafkaResult<TopicPartitionList>;
    /// Replaces the assignment with `assignment`, outside any group rebalance: no group join,
    /// no rebalance callbacks. Each partition starts at its offset: `Offset::Offset(n)`,
    /// `Beginning`, `End`, `OffsetTail(n)`, or `Invalid`/`Stored` for the group's committed
    /// offset (else `auto.offset.reset`). Commits of a manually assigned consumer carry no
    /// member and generation -1: the coordinator accepts them only while the group has no
    /// active members.
    ///
    /// ```no_run
    /// # use effectively_once::ConsumerHandle;
    /// # use rdkafka::{Offset, TopicPartitionList};
    /// # fn f(consumer: &impl ConsumerHandle) -> rdkafka::error::KafkaResult<()> {
    /// let mut partitions = TopicPartitionList::new();
    /// partitions.add_partition_offset("orders", 0, Offset::Offset(42))?; // from my own database
    /// partitions.add_partition_offset("orders", 1, Offset::Beginning)?;
    /// consumer.assign(&partitions)?;
    /// # Ok(()) }
    /// ```
    fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()>;
    /// Drops the whole assignment (as `assign` with an empty list).
    fn unassign(&self) -> KafkaResult<()>;
    /// Adds partitions to the assignment, starting at their offsets as in
    /// [`assign`](Self::assign). Fails with `_STATE` on a member of an eager-protocol group.
    fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()>;
    /// Removes partitions from the assignment. Fails with `_STATE` on a member of an
    /// eager-protocol group.
    fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()>;
    /// Whether the current assignment was lost (the group removed this member before it could
    /// revoke its partitions); `assign`, `incremental_assign` and `incremental_unassign` reset
    /// it.
    fn assignment_lost(&self) -> bool;
    /// The group's rebalance protocol once the consumer joined: `Cooperative` under
    /// `cooperative-sticky`, `Eager` under `range`/`roundrobin`, `None` before the join and
    /// outside a group.
    fn rebalance_protocol(&self) -> RebalanceProtocol;
    /// The topics subscribed to, each with partition -1 (librdkafka's "unassigned").
    fn subscription(&self) -> KafkaResult<TopicPartitionList>;
    /// A partition's low and high watermarks (its first offset and the offset after its last
    /// record, transaction markers included), asked of the broker.
    fn fetch_watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Timeout,
    ) -> KafkaResult<(i64, i64)>;
    /// Commits explicit offsets (the next offset to consume, per partition).
    fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()>;
    /// Commits the stored offsets of the assigned partitions (`Err(NoOffset)` when there is
    /// nothing new to commit).
    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()>;
    /// Stores `offset + 1` for the next commit, as librdkafka's `rd_kafka_offset_store`.
    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()>;
    /// Stores the given offsets as they are; requires `enable.auto.offset.store=false`.
    fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()>;
    /// The position (next offset to hand to the application) of each assigned partition.
    fn position(&self) -> KafkaResult<TopicPartitionList>;
    /// The group's committed offsets for the assigned partitions.
    fn committed(&self, timeout: Timeout) -> KafkaResult<TopicPartitionList>;
    /// Moves an assigned partition's position to `offset` (absolute, `Beginning`, `End`,
    /// `OffsetTail(n)`): the next record handed out is the one there, and what was fetched
    /// but not handed out yet is dropped. The stored offset does not move.
    ///
    /// ```no_run
    /// # use effectively_once::ConsumerHandle;
    /// # use rdkafka::Offset;
    /// # use std::time::Duration;
    /// # fn rewind(consumer: &dyn ConsumerHandle) -> rdkafka::error::KafkaResult<()> {
    /// // After an aborted transaction: back to the group's committed offsets.
    /// for e in consumer.committed(Duration::from_secs(10).into())?.elements() {
    ///     if let Offset::Offset(o) = e.offset() {
    ///         consumer.seek(e.topic(), e.partition(), Offset::Offset(o), Duration::from_secs(10).into())?;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Timeout,
    ) -> KafkaResult<()>;
    /// [`seek`](Self::seek) for each partition of the list to its offset; each partition's
    /// own error is set in the returned list.
    fn seek_partitions(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList>;
    /// Stops handing out records of these partitions (those already fetched included) until
    /// they are [resumed](Self::resume); the others flow on.
    fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()>;
    /// Hands out records of paused partitions again, from where they stopped.
    fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()>;
    /// The group's committed offsets for the listed partitions, assigned or not
    /// (`Offset::Invalid` where none is committed).
    fn committed_offsets(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList>;
    /// The consumer's group metadata, for
    /// [`send_offsets_to_transaction`](KafkaProducer::send_offsets_to_transaction).
    fn group_metadata(&self) -> Option<GroupMetadata>;
}

/// A consumer's group metadata (group, generation, member), as rdkafka's
/// [`ConsumerGroupMetadata`](rdkafka::consumer::ConsumerGroupMetadata): what a transactional
/// producer hands the coordinator with the offsets, so that offsets from a consumer that lost
/// its partitions can be recognised.
pub struct GroupMetadata(pub(crate) GroupMetadataRepr);

pub(crate) enum GroupMetadataRepr {
    Simulated {
        group: String,
        generation: i32,
        member: Option<String>,
    },
    Rdkafka(rdkafka::consumer::ConsumerGroupMetadata),
}

impl std::fmt::Debug for GroupMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            GroupMetadataRepr::Simulated {
                group,
                generation,
                member,
            } => f
                .debug_struct("GroupMetadata")
                .field("group", group)
                .field("generation", generation)
                .field("member", member)
                .finish(),
            GroupMetadataRepr::Rdkafka(_) => f.write_str("GroupMetadata(rdkafka)"),
        }
    }
}

/// The error for group metadata of the other backend (a simulated consumer's metadata handed
/// to an rdkafka producer, or the reverse).
pub(crate) fn foreign_group_metadata() -> rdkafka::error::KafkaError {
    rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::InvalidArgument)
}

/// The offsets of a list handed to `commit`, as librdkafka takes them: `Offset::Invalid`
/// entries are left out, other logical offsets are an invalid argument, and an empty result
/// is `_NO_OFFSET`.
pub(crate) fn explicit_offsets(
    list: &TopicPartitionList,
) -> KafkaResult<Vec<(crate::history::TopicPartition, i64)>> {
    use rdkafka::Offset;
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode;
    let mut offsets = Vec::new();
    for e in list.elements() {
        match e.offset() {
            Offset::Offset(o) if o >= 0 => offsets.push((
                crate::history::TopicPartition::new(e.topic(), e.partition()),
                o,
            )),
            Offset::Invalid => {}
            _ => {
                return Err(KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::InvalidArgument,
                ));
            }
        }
    }
    if offsets.is_empty() {
        return Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset));
    }
    Ok(offsets)
}

/// A group consumer: rdkafka's `StreamConsumer` API.
pub trait KafkaConsumer: ConsumerHandle + Send + Sync {
    /// The message type `recv` yields: `BorrowedMessage` for rdkafka, `OwnedMessage` for the
    /// simulator. Both are `Debug`, so a generic consumer can log one
    /// (`warn!("skipping {message:?}")`).
    type Message<'a>: Message + std::fmt::Debug + Send + Sync
    where
        Self: 'a;

    /// Waits for the next message (polling the group: rebalances and their callbacks happen
    /// inside this call).
    fn recv(&self) -> impl Future<Output = KafkaResult<Self::Message<'_>>> + Send;

    /// The messages as an endless [`Stream`], as rdkafka's `StreamConsumer::stream`: each item
    /// is what the next [`recv`](Self::recv) would return, so `StreamExt` loops
    /// (`try_for_each`, `for_each_concurrent`, `chunks_timeout`) run unchanged. Dropping the
    /// stream, or a `next()` future of it, consumes nothing that was not handed out.
    ///
    /// ```no_run
    /// use effectively_once::KafkaConsumer;
    /// use futures::TryStreamExt;
    /// use rdkafka::consumer::CommitMode;
    /// use rdkafka::message::Message;
    ///
    /// async fn run<C: KafkaConsumer>(consumer: &C) -> rdkafka::error::KafkaResult<()> {
    ///     consumer.subscribe(&["task-events"])?;
    ///     consumer
    ///         .stream()
    ///         .try_for_each(|message| async move {
    ///             println!("{:?}", message.payload());
    ///             consumer.commit_message(&message, CommitMode::Async)
    ///         })
    ///         .await
    /// }
    /// ```
    fn stream(&self) -> impl Stream<Item = KafkaResult<Self::Message<'_>>> + Send + '_ {
        futures_util::stream::unfold(self, |consumer| async move {
            Some((consumer.recv().await, consumer))
        })
    }

    /// Commits `message.offset() + 1` for the message's partition.
    fn commit_message(&self, message: &Self::Message<'_>, mode: CommitMode) -> KafkaResult<()>;

    /// Stores `message.offset() + 1` for the next commit.
    fn store_offset_from_message(&self, message: &Self::Message<'_>) -> KafkaResult<()>;

    /// The queue [`split_partition_queue`](Self::split_partition_queue) hands out:
    /// rdkafka's `StreamPartitionQueue`, or the kit's [`PartitionQueue`](crate::clients::PartitionQueue).
    type PartitionQueue: KafkaPartitionQueue<Self> + 'static
    where
        Self: 'static;

    /// Splits a partition's records off into a queue of their own, as rdkafka's
    /// `StreamConsumer::split_partition_queue`: from then on the records of that partition
    /// come only from the queue's [`recv`](KafkaPartitionQueue::recv), in offset order, and
    /// [`recv`](Self::recv) hands out the others. The consumer must still be polled
    /// ([`recv`](Self::recv)): joins, rebalances and their callbacks happen there, and
    /// nothing is fetched before the group assigned the partition. Measured on librdkafka's
    /// mock cluster (`tests/brokers/partition_queues.rs`): a queue asked for before the
    /// partition is assigned (or for a partition that does not exist) is handed out and
    /// delivers once the partition is assigned; it stays the partition's across rebalances
    /// (revoked and assigned again, it delivers again); once every queue of the partition is
    /// dropped its records go nowhere (not back to `recv`) until the partition is split
    /// again. `None` only for a topic name librdkafka cannot take (one with a NUL byte).
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use effectively_once::KafkaConsumer;
    /// use effectively_once::clients::KafkaPartitionQueue;
    /// use rdkafka::consumer::CommitMode;
    ///
    /// async fn per_partition<C: KafkaConsumer + 'static>(consumer: Arc<C>, partition: i32) {
    ///     let Some(queue) = consumer.split_partition_queue("orders", partition) else {
    ///         return;
    ///     };
    ///     while let Ok(message) = queue.recv().await {
    ///         // process, then:
    ///         let _ = consumer.commit_message(&message, CommitMode::Sync);
    ///     }
    /// }
    /// ```
    fn split_partition_queue(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
    ) -> Option<Self::PartitionQueue>;
}

/// One partition's queue, split off a consumer `C` with
/// [`KafkaConsumer::split_partition_queue`]: rdkafka's `StreamPartitionQueue` API. It keeps the
/// consumer alive; its messages are the consumer's, committed and stored through it.
pub trait KafkaPartitionQueue<C: KafkaConsumer + ?Sized + 'static>: Send + Sync {
    /// Waits for the partition's next message. Cancel-safe: a dropped future consumes nothing.
    fn recv(&self) -> impl Future<Output = KafkaResult<C::Message<'_>>> + Send;

    /// The partition's messages as an endless [`Stream`], each item what the next
    /// [`recv`](Self::recv) would return.
    fn stream(&self) -> impl Stream<Item = KafkaResult<C::Message<'_>>> + Send + '_ {
        futures_util::stream::unfold(
            self,
            |queue| async move { Some((queue.recv().await, queue)) },
        )
    }
}

/// A producer: rdkafka's `FutureProducer` API.
pub trait KafkaProducer: Send + Sync {
    /// Sends a record and waits for its delivery report.
    fn send<K, P, T>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: T,
    ) -> impl Future<Output = OwnedDeliveryResult> + Send
    where
        K: ToBytes + ?Sized + Sync,
        P: ToBytes + ?Sized + Sync,
        T: Into<Timeout> + Send;

    /// Registers the `transactional.id` with the coordinator: fences older producers with the
    /// same id and aborts their open transaction. Call once, before the first transaction.
    fn init_transactions<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;
    /// Opens a transaction.
    fn begin_transaction(&self) -> KafkaResult<()>;
    /// Adds consumer offsets (the next offsets to consume) to the open transaction: they
    /// become the group's committed offsets if and only if the transaction commits.
    fn send_offsets_to_transaction<T: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: T,
    ) -> KafkaResult<()>;
    /// Commits the open transaction (flushing its records first).
    fn commit_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;
    /// Aborts the open transaction.
    fn abort_transaction<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()>;
}

/// Rebalance and commit callbacks, as rdkafka's `ConsumerContext` offers them.
///
/// Callbacks run inside `recv`, on the consumer's task, as librdkafka serves them from poll.
/// With the eager protocol a rebalance revokes every partition (`pre_rebalance` with
/// [`Rebalance::Revoke`], the place to commit what was processed), then assigns the new set.
pub trait RebalanceHandler: Send + Sync + 'static {
    /// Before the assignment changes.
    fn pre_rebalance(&self, consumer: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
        let _ = (consumer, rebalance);
    }

    /// After the assignment changed.
    fn post_rebalance(&self, consumer: &dyn ConsumerHandle, rebalance: &Rebalance<'_>) {
        let _ = (consumer, rebalance);
    }

    /// After one of librdkafka's automatic commits completed (`enable.auto.commit`). A
    /// manual asynchronous commit (`CommitMode::Async`) never gets here: rust-rdkafka 0.39
    /// sends it without a reply queue (fede1024/rust-rdkafka#856), and the kit behaves the
    /// same on every backend.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let _ = (result, offsets);
    }
}

impl<T: ConsumerHandle + ?Sized> ConsumerHandle for Arc<T> {
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        (**self).subscribe(topics)
    }
    fn unsubscribe(&self) {
        (**self).unsubscribe()
    }
    fn assignment(&self) -> KafkaResult<TopicPartitionList> {
        (**self).assignment()
    }
    fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        (**self).assign(assignment)
    }
    fn unassign(&self) -> KafkaResult<()> {
        (**self).unassign()
    }
    fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        (**self).incremental_assign(assignment)
    }
    fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        (**self).incremental_unassign(assignment)
    }
    fn assignment_lost(&self) -> bool {
        (**self).assignment_lost()
    }
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        (**self).rebalance_protocol()
    }
    fn subscription(&self) -> KafkaResult<TopicPartitionList> {
        (**self).subscription()
    }
    fn fetch_watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Timeout,
    ) -> KafkaResult<(i64, i64)> {
        (**self).fetch_watermarks(topic, partition, timeout)
    }
    fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        (**self).commit(offsets, mode)
    }
    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
        (**self).commit_consumer_state(mode)
    }
    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        (**self).store_offset(topic, partition, offset)
    }
    fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        (**self).store_offsets(offsets)
    }
    fn position(&self) -> KafkaResult<TopicPartitionList> {
        (**self).position()
    }
    fn committed(&self, timeout: Timeout) -> KafkaResult<TopicPartitionList> {
        (**self).committed(timeout)
    }
    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Timeout,
    ) -> KafkaResult<()> {
        (**self).seek(topic, partition, offset, timeout)
    }
    fn seek_partitions(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        (**self).seek_partitions(partitions, timeout)
    }
    fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        (**self).pause(partitions)
    }
    fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        (**self).resume(partitions)
    }
    fn committed_offsets(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        (**self).committed_offsets(partitions, timeout)
    }
    fn group_metadata(&self) -> Option<GroupMetadata> {
        (**self).group_metadata()
    }
}

impl<T: KafkaConsumer + 'static> KafkaConsumer for Arc<T> {
    type Message<'a>
        = T::Message<'a>
    where
        Self: 'a;

    fn recv(&self) -> impl Future<Output = KafkaResult<Self::Message<'_>>> + Send {
        (**self).recv()
    }
    fn stream(&self) -> impl Stream<Item = KafkaResult<Self::Message<'_>>> + Send + '_ {
        (**self).stream()
    }
    fn commit_message(&self, message: &Self::Message<'_>, mode: CommitMode) -> KafkaResult<()> {
        (**self).commit_message(message, mode)
    }
    fn store_offset_from_message(&self, message: &Self::Message<'_>) -> KafkaResult<()> {
        (**self).store_offset_from_message(message)
    }

    type PartitionQueue = ArcPartitionQueue<T>;

    fn split_partition_queue(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
    ) -> Option<Self::PartitionQueue> {
        (**self)
            .split_partition_queue(topic, partition)
            .map(ArcPartitionQueue)
    }
}

/// The partition queue of an `Arc<C>`: `C`'s own, yielding the same messages.
pub struct ArcPartitionQueue<C: KafkaConsumer + 'static>(C::PartitionQueue);

impl<C: KafkaConsumer + 'static> std::fmt::Debug for ArcPartitionQueue<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArcPartitionQueue").finish_non_exhaustive()
    }
}

impl<C: KafkaConsumer + 'static> KafkaPartitionQueue<Arc<C>> for ArcPartitionQueue<C> {
    fn recv(&self) -> impl Future<Output = KafkaResult<C::Message<'_>>> + Send {
        self.0.recv()
    }
    fn stream(&self) -> impl Stream<Item = KafkaResult<C::Message<'_>>> + Send + '_ {
        self.0.stream()
    }
}

impl<T: KafkaProducer> KafkaProducer for Arc<T> {
    fn send<K, P, Tm>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Tm,
    ) -> impl Future<Output = OwnedDeliveryResult> + Send
    where
        K: ToBytes + ?Sized + Sync,
        P: ToBytes + ?Sized + Sync,
        Tm: Into<Timeout> + Send,
    {
        (**self).send(record, queue_timeout)
    }
    fn init_transactions<Tm: Into<Timeout>>(&self, timeout: Tm) -> KafkaResult<()> {
        (**self).init_transactions(timeout)
    }
    fn begin_transaction(&self) -> KafkaResult<()> {
        (**self).begin_transaction()
    }
    fn send_offsets_to_transaction<Tm: Into<Timeout>>(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: Tm,
    ) -> KafkaResult<()> {
        (**self).send_offsets_to_transaction(offsets, metadata, timeout)
    }
    fn commit_transaction<Tm: Into<Timeout>>(&self, timeout: Tm) -> KafkaResult<()> {
        (**self).commit_transaction(timeout)
    }
    fn abort_transaction<Tm: Into<Timeout>>(&self, timeout: Tm) -> KafkaResult<()> {
        (**self).abort_transaction(timeout)
    }
}
