//! What a run needs of a backend: the cluster the consumers run against.
//!
//! Two backends implement [`Backend`]: the simulated cluster (`sim`, the reference semantics,
//! on virtual time) and librdkafka against a real broker (`broker`: the mock cluster, a
//! container or an external cluster, in real time). The run drives a backend through this
//! trait and nothing else; a backend reports to the run through its record
//! ([`Run`](super::core::Run)) and its one interception step, and knows nothing of the other
//! backends. The clients an instance creates are the backend's own, behind
//! [`ConsumerClient`] and [`ProducerClient`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaResult;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::util::Timeout;
use tokio::time::Instant;

use super::client::OutgoingRecord;
use super::store_progress::Progress;
use crate::client::{ConsumerHandle, GroupMetadata, RebalanceHandler};
use crate::error::Error;
use crate::history::{
    ClusterSnapshot, Incarnation, Lag, Operation, RecordPosition, TopicName, TopicPartition,
};

/// A future a backend hands out.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A future of the driver's own task (not sent anywhere).
pub(crate) type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One input record as a backend writes it.
#[derive(Clone, Debug)]
pub(crate) struct InputWrite {
    pub topic: TopicName,
    /// The partition: the record's own, or where the upstream producer's default partitioner
    /// (librdkafka's `consistent_random`, with the run's RNG) puts it.
    pub partition: i32,
    /// Shared with the simulation's input.
    pub key: Option<Arc<[u8]>>,
    pub payload: Option<Arc<[u8]>>,
    /// In a transaction of its own that commits (`true`) or aborts.
    pub transaction: Option<bool>,
}

/// The cluster a run drives.
pub(crate) trait Backend: Send + Sync {
    /// Carries out, at once, what the run did to its instances: a crashed or exited
    /// incarnation's clients vanish, a frozen one stops heartbeating, the broker restarts.
    fn react(&self);

    /// Writes input records, in order, and says where each landed.
    fn write_input<'a>(
        &'a self,
        records: Vec<InputWrite>,
    ) -> LocalBoxFuture<'a, Result<Vec<RecordPosition>, Error>>;

    /// Fires the cluster's timers that are due (sessions, auto-commits, the broker's return).
    fn fire_timers(&self);

    /// When the next timer of the cluster fires.
    fn next_timer(&self) -> Option<Instant>;

    /// While the broker is down: when it is back. Nothing settles meanwhile.
    fn broker_down(&self) -> Option<Instant>;

    /// Whether every running incarnation waits for records with nothing left to do. With
    /// `progress` (read from the durable store) a partition's progress is its offset there,
    /// not the group's committed offset.
    fn idle(&self, running: &[Incarnation], progress: Option<&Progress>) -> bool;

    /// How long nothing must happen before the run counts as quiesced.
    fn settle(&self, configured: Duration) -> Duration;

    /// How often the driver must look again although nothing changed (a real broker's
    /// progress is not reported to the run), if at all.
    fn check_interval(&self) -> Option<Duration>;

    /// Each group's committed offsets against the end offsets.
    fn lag(&self) -> Result<Vec<Lag>, Error>;

    /// Whether a quiet run (every running incarnation idle for the settle period) has
    /// consumed everything there is to consume: committed to the group, or with `progress`,
    /// recorded in the durable store.
    fn quiesced(&self, progress: Option<&Progress>) -> Result<bool, Error>;

    /// The end offset of each partition of `topics`.
    fn end_offsets(&self, topics: &[String]) -> Result<Vec<(TopicPartition, i64)>, Error>;

    /// Creates a consumer of the incarnation.
    fn create_consumer(
        &self,
        incarnation: Incarnation,
        config: &ClientConfig,
        handler: Option<Arc<dyn RebalanceHandler>>,
    ) -> KafkaResult<Box<dyn ConsumerClient>>;

    /// Creates a producer of the incarnation.
    fn create_producer(
        &self,
        incarnation: Incarnation,
        config: &ClientConfig,
    ) -> KafkaResult<Box<dyn ProducerClient>>;

    /// Creates a low-level producer (`BaseProducer`: `send` enqueues, reports come from `poll`
    /// and `flush`) of the incarnation.
    fn create_base_producer(
        &self,
        incarnation: Incarnation,
        config: &ClientConfig,
    ) -> KafkaResult<Box<dyn BaseProducerClient>>;

    /// The run is over and its runtime gone: what is left of the clients dies as a killed
    /// process would.
    fn finish(&self) {}

    /// The topics, their records and the committed offsets once the run stopped. Called once,
    /// after [`finish`](Self::finish): the simulator hands its logs over.
    fn snapshot(&self, topics: &[(String, i32)]) -> Result<ClusterSnapshot, Error>;
}

/// A backend's consumer, behind the public [`Consumer`](super::client::Consumer).
pub(crate) trait ConsumerClient: ConsumerHandle + Send + Sync {
    /// `recv`; a crash unwinds the calling task.
    fn recv(&self) -> BoxFuture<'_, KafkaResult<OwnedMessage>>;

    /// Commits `offsets` through the interception point `operation`, anchored on `anchor`
    /// (else on the record the instance handles).
    fn commit_intercepted(
        &self,
        operation: Operation,
        anchor: Option<RecordPosition>,
        offsets: Vec<(TopicPartition, i64)>,
        mode: CommitMode,
    ) -> KafkaResult<()>;

    /// `commit_message`: commits `message.offset() + 1`, anchored on the message.
    fn commit_message(&self, message: &OwnedMessage, mode: CommitMode) -> KafkaResult<()> {
        let tp = TopicPartition::new(message.topic(), message.partition());
        let anchor = tp.at(message.offset());
        let next = message.offset() + 1;
        self.commit_intercepted(
            Operation::CommitMessage,
            Some(anchor),
            vec![(tp, next)],
            mode,
        )
    }

    /// `store_offset_from_message`.
    fn store_offset_from_message(&self, message: &OwnedMessage) -> KafkaResult<()> {
        self.store_offset(message.topic(), message.partition(), message.offset())
    }

    /// `split_partition_queue`: from now on the partition's records are handed out by the
    /// queue only (`None`: a topic name librdkafka cannot take).
    fn split_partition_queue(
        &self,
        partition: TopicPartition,
    ) -> Option<Box<dyn PartitionQueueClient>>;
}

/// A backend's queue of one partition split off a consumer, behind the public
/// [`PartitionQueue`](super::client::PartitionQueue). Dropping it drops the queue: the
/// partition's records go nowhere until it is split again.
pub(crate) trait PartitionQueueClient: Send + Sync {
    /// The partition's next record, through the same interception as the consumer's `recv`;
    /// cancel-safe, and a crash unwinds the calling task.
    fn recv(&self) -> BoxFuture<'_, KafkaResult<OwnedMessage>>;
}

/// A backend's producer, behind the public [`Producer`](super::client::Producer).
pub(crate) trait ProducerClient: Send + Sync {
    /// Sends a record and waits for its delivery report.
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'_, OwnedDeliveryResult>;
    /// `init_transactions`.
    fn init_transactions(&self, timeout: Timeout) -> KafkaResult<()>;
    /// `begin_transaction`.
    fn begin_transaction(&self) -> KafkaResult<()>;
    /// `send_offsets_to_transaction`.
    fn send_offsets_to_transaction(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: Timeout,
    ) -> KafkaResult<()>;
    /// `commit_transaction`.
    fn commit_transaction(&self, timeout: Timeout) -> KafkaResult<()>;
    /// `abort_transaction`.
    fn abort_transaction(&self, timeout: Timeout) -> KafkaResult<()>;
}

/// One delivery report of a [`BaseProducerClient`], for the record `send` got with `token`.
pub(crate) struct Report {
    pub token: u64,
    pub result: crate::client::DeliveryReport,
}

/// A backend's low-level producer, behind the public
/// [`BaseProducer`](super::base_client::BaseProducer): reports are handed to `serve`, outside
/// any lock, from `poll`, `flush` and `close`.
pub(crate) trait BaseProducerClient: Send + Sync {
    /// Enqueues `record`; its report will carry `token`.
    fn send(&self, record: &OutgoingRecord, token: u64) -> KafkaResult<()>;
    /// Serves the reports that are ready, waiting up to `timeout` for some.
    fn poll(&self, timeout: Timeout, serve: &mut dyn FnMut(Report));
    /// `flush`, through the interception point `Operation::Flush`.
    fn flush(&self, timeout: Timeout, serve: &mut dyn FnMut(Report)) -> KafkaResult<()>;
    /// Records enqueued or in flight, and reports not served yet.
    fn in_flight_count(&self) -> i32;
    /// Resolves when reports may be ready (what a background polling thread waits for).
    fn ready(&self) -> BoxFuture<'_, ()>;
    /// The producer is dropped by a live instance: what is still queued is purged, and the
    /// reports served, as rdkafka's `BaseProducer` does on drop.
    fn close(&self, serve: &mut dyn FnMut(Report));
    /// `init_transactions`.
    fn init_transactions(&self, timeout: Timeout) -> KafkaResult<()>;
    /// `begin_transaction`.
    fn begin_transaction(&self) -> KafkaResult<()>;
    /// `send_offsets_to_transaction`.
    fn send_offsets_to_transaction(
        &self,
        offsets: &TopicPartitionList,
        metadata: &GroupMetadata,
        timeout: Timeout,
    ) -> KafkaResult<()>;
    /// `commit_transaction`.
    fn commit_transaction(&self, timeout: Timeout) -> KafkaResult<()>;
    /// `abort_transaction`.
    fn abort_transaction(&self, timeout: Timeout) -> KafkaResult<()>;
}
