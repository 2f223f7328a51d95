//! The consumer on a real broker: librdkafka's own consumer, with the same interception points
//! as the simulated one.
//!
//! A `BaseConsumer` polled without blocking from an async `recv`, so that the run can take the
//! handle away between two polls when the instance crashes. Rebalance and commit callbacks run
//! inside the poll, as librdkafka serves them; the handle they get intercepts calls too, but
//! never unwinds (an unwind through librdkafka's C frames would abort the process): a crash
//! there returns an error and the poll's caller unwinds once the poll has returned.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::backend::BrokerShared;
use super::callback_handle::CallbackHandle;
use super::manual_assign::Change;
use super::native::{ConsumerSlot, NativeClient, NativeConsumer, Slot};
use super::partition_queue::{BrokerPartitionQueue, Handout};
use super::positioning;
use super::session::BrokerSession;
use crate::client::{
    ConsumerHandle, GroupMetadata, GroupMetadataRepr, RebalanceHandler, explicit_offsets,
};
use crate::history::Operation;
use crate::history::{AutoOffsetReset, CommitKind, HistoryEvent, Incarnation};
use crate::history::{RecordPosition, TopicPartition};
use crate::run::backend::{BoxFuture, ConsumerClient, PartitionQueueClient};
use crate::run::core::{crashed, dead_error, unwind_crash};
use crate::run::fault_plan::Injection;

/// How long an idle `recv` sleeps between two polls, at most.
pub(super) const MAX_POLL_PAUSE: Duration = Duration::from_millis(10);
/// The timeout of the calls a callback makes to read committed offsets.
pub(super) const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a clean exit waits for librdkafka to close the consumer.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The consumer's identity in the run, shared by the wrapper and its callbacks.
#[derive(Clone)]
pub(crate) struct Owner {
    pub shared: Arc<BrokerShared>,
    pub incarnation: Incarnation,
    pub group: String,
    /// `enable.auto.offset.store` (librdkafka's default: true).
    pub(super) auto_store: bool,
    /// `auto.offset.reset` is latest (librdkafka's default) rather than earliest.
    pub(super) reset_latest: bool,
    /// The offsets stored explicitly (`store_offset`), which librdkafka keeps to itself.
    pub(super) stored: Arc<Mutex<BTreeMap<TopicPartition, i64>>>,
    /// The committed offsets as this client knows them, as librdkafka keeps its own: read
    /// when partitions are assigned, moved by every commit it makes. `commit_consumer_state`
    /// compares with them, with no request to the broker (a request from a callback during
    /// the consumer's close never gets its answer).
    committed: Arc<Mutex<BTreeMap<TopicPartition, i64>>>,
}

impl Owner {
    pub(super) fn alive(&self) -> bool {
        self.shared.run.lock().alive(self.incarnation)
    }

    pub(super) fn record(&self, event: HistoryEvent) {
        self.shared.run.lock().record(Some(self.incarnation), event);
        self.shared.publish();
    }

    /// Counts the call against the fault schedule. `Err(())`: the instance crashed before it.
    pub(super) fn intercept(
        &self,
        operation: Operation,
        anchor: Option<RecordPosition>,
    ) -> Result<Injection, ()> {
        self.shared
            .intercept(operation, self.incarnation, anchor)
            .map_err(|_| ())
    }

    /// The offsets `commit_consumer_state` commits: the stored offsets of the assignment that
    /// are ahead of the committed ones, as librdkafka commits only a stored offset newer than
    /// the one it knows committed (it answers `_NO_OFFSET` when there are none).
    /// With `enable.auto.offset.store` librdkafka stores each message's offset + 1 as it hands
    /// it out (noted at the hand-over: the position would not do, a seek makes it `Invalid`
    /// while the stored offset stays, measured in `tests/brokers/seek_pause.rs`); without it,
    /// what the application stored.
    pub(super) fn stored_offsets(
        &self,
        consumer: &BaseConsumer<BrokerContext>,
    ) -> KafkaResult<Vec<(TopicPartition, i64)>> {
        let candidates: Vec<(TopicPartition, i64)> = {
            let assigned = partitions(&Consumer::assignment(consumer)?);
            let stored = self.stored.lock().unwrap_or_else(PoisonError::into_inner);
            assigned
                .into_iter()
                .filter_map(|tp| stored.get(&tp).map(|o| (tp, *o)))
                .collect()
        };
        let committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let offsets: Vec<(TopicPartition, i64)> = candidates
            .into_iter()
            .filter(|(tp, o)| committed.get(tp).is_none_or(|c| o > c))
            .collect();
        if offsets.is_empty() {
            return Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset));
        }
        Ok(offsets)
    }

    /// Notes offsets the group now has committed.
    pub(super) fn note_committed(&self, offsets: &[(TopicPartition, i64)]) {
        let mut committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (tp, offset) in offsets {
            committed.insert(tp.clone(), *offset);
        }
    }

    /// Completes the interception step of `operation`: `Err(())` when the instance crashed
    /// after the call.
    pub(super) fn complete(&self, injection: &Injection, operation: Operation) -> Result<(), ()> {
        self.shared
            .complete(injection, self.incarnation, &operation)
            .map_err(|_| ())
    }

    /// A commit through an interception point, on `consumer`. `Err(())`: the instance crashed.
    pub(super) fn commit(
        &self,
        consumer: &BaseConsumer<BrokerContext>,
        operation: Operation,
        anchor: Option<RecordPosition>,
        offsets: Vec<(TopicPartition, i64)>,
        mode: CommitMode,
    ) -> Result<KafkaResult<()>, ()> {
        let injection = self.intercept(operation, anchor)?;
        let kind = match mode {
            CommitMode::Sync => CommitKind::Sync,
            CommitMode::Async => CommitKind::Async,
        };
        let result = if injection.fail {
            Err(KafkaError::ConsumerCommit(
                crate::run::fault_plan::COMMIT_FAILED,
            ))
        } else {
            // An asynchronous commit is made synchronously here: rust-rdkafka 0.39 reports a
            // manual asynchronous commit's outcome nowhere (no commit callback,
            // fede1024/rust-rdkafka#856), and the history needs it. The application still
            // gets what the asynchronous call gives it (below).
            tpl(offsets.iter().map(|(tp, o)| (tp, Offset::Offset(*o))))
                .and_then(|list| Consumer::commit(consumer, &list, CommitMode::Sync))
        };
        if result.is_ok() {
            self.note_committed(&offsets);
        }
        let event = match &result {
            Ok(()) => HistoryEvent::OffsetsCommitted {
                group: self.group.clone(),
                generation: -1,
                offsets: offsets.clone(),
                kind,
            },
            Err(e) => HistoryEvent::CommitRejected {
                group: self.group.clone(),
                offsets: offsets.clone(),
                kind,
                error: if injection.fail {
                    "injected failure: group rebalance in progress (not applied)".into()
                } else {
                    e.to_string()
                },
            },
        };
        self.record(event);
        let result = match result {
            // The call only sent the request.
            _ if kind == CommitKind::Async => Ok(()),
            Ok(()) if injection.ambiguous => Err(KafkaError::ConsumerCommit(
                crate::run::fault_plan::COMMIT_TIMED_OUT,
            )),
            other => other,
        };
        self.complete(&injection, operation)?;
        Ok(result)
    }
}

/// The consumer context: records assignments and hands the callbacks to the user's handler.
pub(crate) struct BrokerContext {
    pub(super) owner: Owner,
    handler: Option<Arc<dyn RebalanceHandler>>,
}

impl ClientContext for BrokerContext {}

impl ConsumerContext for BrokerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            self.owner.record(HistoryEvent::PartitionsRevoked {
                group: self.owner.group.clone(),
                partitions: partitions(list),
                lost: false,
            });
        }
        if let Some(handler) = &self.handler {
            handler.pre_rebalance(&CallbackHandle { consumer }, rebalance);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            self.owner.shared.session.joined(self.owner.incarnation);
            // librdkafka forgets the stored offsets of the partitions it is assigned.
            let mut stored = self
                .owner
                .stored
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for tp in partitions(list) {
                stored.remove(&tp);
            }
            drop(stored);
            let committed =
                Consumer::committed_offsets(consumer, (*list).clone(), CALLBACK_TIMEOUT);
            let mut resets = Vec::new();
            let starts = partitions(list)
                .into_iter()
                .map(|tp| {
                    let start = committed
                        .as_ref()
                        .ok()
                        .and_then(|c| c.find_partition(&tp.topic, tp.partition))
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        });
                    // Read and not committed: librdkafka starts where auto.offset.reset says.
                    if start.is_none() && committed.is_ok() {
                        let how = if self.owner.reset_latest {
                            AutoOffsetReset::Latest
                        } else {
                            AutoOffsetReset::Earliest
                        };
                        resets.push((tp.clone(), how));
                    }
                    (tp, start.unwrap_or(0))
                })
                .collect::<Vec<_>>();
            if let Ok(committed) = &committed {
                self.owner.note_committed(&offsets_in(committed));
            }
            self.owner.record(HistoryEvent::PartitionsAssigned {
                group: self.owner.group.clone(),
                generation: -1,
                partitions: starts,
                resets,
            });
        }
        if let Some(handler) = &self.handler {
            handler.post_rebalance(&CallbackHandle { consumer }, rebalance);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if result.is_ok() {
            // librdkafka's own commits (auto-commit, close) move what it knows committed.
            self.owner.note_committed(&offsets_in(offsets));
        }
        if let Some(handler) = &self.handler {
            handler.commit_callback(result, offsets);
        }
    }
}

pub(super) fn partitions(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements()
        .iter()
        .map(|e| TopicPartition::new(e.topic(), e.partition()))
        .collect()
}

/// The partitions of `list` that carry an offset, with it.
pub(super) fn offsets_in(list: &TopicPartitionList) -> Vec<(TopicPartition, i64)> {
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((TopicPartition::new(e.topic(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

fn tpl<'a>(
    offsets: impl IntoIterator<Item = (&'a TopicPartition, Offset)>,
) -> KafkaResult<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for (tp, offset) in offsets {
        list.add_partition_offset(&tp.topic, tp.partition, offset)?;
    }
    Ok(list)
}

/// A consumer of a real broker, behind [`Consumer`](crate::Consumer).
pub(crate) struct BrokerConsumer {
    owner: Owner,
    native: Arc<ConsumerSlot>,
    session: Arc<BrokerSession>,
    /// How a polled message reaches the application (shared with the partition queues).
    handout: Handout,
    /// A message librdkafka handed out that a stalled `recv` had not handed over yet when its
    /// future was dropped: the next `recv` hands it over (`recv` is cancel-safe).
    stalled: Mutex<Option<(OwnedMessage, Injection)>>,
}

impl BrokerConsumer {
    pub(crate) fn create(
        shared: Arc<BrokerShared>,
        incarnation: Incarnation,
        config: &ClientConfig,
        handler: Option<Arc<dyn RebalanceHandler>>,
    ) -> KafkaResult<Self> {
        let session = shared.session.clone();
        if !shared.run.lock().alive(incarnation) {
            return Err(crashed(dead_error()));
        }
        let group = config.get("group.id").unwrap_or_default().to_string();
        if group.is_empty() {
            return Err(KafkaError::ClientCreation(
                "effectively-once: the consumer needs a group.id".into(),
            ));
        }
        let static_member = config
            .get("group.instance.id")
            .is_some_and(|i| !i.is_empty());
        if let (true, Some(shortfall)) = (static_member, &shared.static_members_shortfall) {
            return Err(KafkaError::ClientCreation(format!(
                "effectively-once: this broker cannot play static group membership \
                 (group.instance.id), its self-check found it {shortfall}; run the consumer \
                 on the simulator or on a broker that keeps static members (Apache Kafka)"
            )));
        }
        let read_committed = config
            .get("isolation.level")
            .is_none_or(|l| l == "read_committed");
        let config = session.client_config(config);
        let owner = Owner {
            shared: shared.clone(),
            incarnation,
            group,
            auto_store: config.get("enable.auto.offset.store") != Some("false"),
            reset_latest: !matches!(
                config.get("auto.offset.reset"),
                Some("earliest" | "smallest" | "beginning")
            ),
            stored: Arc::default(),
            committed: Arc::default(),
        };
        let context = BrokerContext {
            owner: owner.clone(),
            handler,
        };
        let consumer: BaseConsumer<BrokerContext> = config.create_with_context(context)?;
        let native = Slot::new(NativeConsumer::new(consumer));
        shared.register(incarnation, NativeClient::Consumer(native.clone()));
        Ok(BrokerConsumer {
            handout: Handout {
                owner: owner.clone(),
                native: native.clone(),
                read_committed,
            },
            owner,
            native,
            session,
            stalled: Mutex::new(None),
        })
    }

    /// Runs `f` on the handle; unwinds when the instance is dead.
    fn with_native<T>(&self, f: impl FnOnce(&BaseConsumer<BrokerContext>) -> T) -> T {
        self.handout.with_native(|native| f(&native.consumer))
    }

    async fn recv_message(&self) -> KafkaResult<OwnedMessage> {
        let _polling = self.session.polling(self.owner.incarnation);
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
            let polled =
                self.with_native(|c| c.poll(Duration::ZERO).map(|m| m.map(|m| m.detach())));
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

    /// A seek drops the message a stalled `recv` had not handed over yet, if it is of one of
    /// these partitions (librdkafka discards what it fetched before the seek).
    fn drop_stalled(&self, seeked: &[TopicPartition]) {
        let mut stalled = self.stalled.lock().unwrap_or_else(PoisonError::into_inner);
        if stalled
            .as_ref()
            .is_some_and(|(m, _)| seeked.contains(&TopicPartition::new(m.topic(), m.partition())))
        {
            *stalled = None;
        }
    }

    fn store(
        &self,
        anchor: RecordPosition,
        store: impl FnOnce(&BaseConsumer<BrokerContext>) -> KafkaResult<()>,
    ) -> KafkaResult<()> {
        let Ok(injection) = self
            .owner
            .intercept(Operation::StoreOffset, Some(anchor.clone()))
        else {
            unwind_crash()
        };
        let result = if injection.fail {
            Err(KafkaError::StoreOffset(RDKafkaErrorCode::Fail))
        } else {
            let result = self.with_native(store);
            if result.is_ok() {
                self.owner
                    .stored
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(anchor.topic_partition(), anchor.offset + 1);
                self.owner.record(HistoryEvent::OffsetStored {
                    partition: anchor.topic_partition(),
                    offset: anchor.offset + 1,
                });
            }
            result
        };
        if self
            .owner
            .complete(&injection, Operation::StoreOffset)
            .is_err()
        {
            unwind_crash();
        }
        result
    }
}

impl Drop for BrokerConsumer {
    fn drop(&mut self) {
        // A clean exit closes the consumer as librdkafka does (final commit with
        // auto-commit, LeaveGroup); a crashed instance's handle is the run's to destroy.
        if self.owner.alive() {
            let Some(consumer) = self
                .native
                .lock()
                .take()
                .and_then(NativeConsumer::into_consumer)
            else {
                return;
            };
            // librdkafka's close has no deadline, and a broker that never answers makes it wait
            // forever (seen on Tansu in the self-check): close on a thread of its own, and let
            // the run go on if it does not finish in time.
            let (done, closed) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                drop(consumer);
                let _ = done.send(());
            });
            if closed.recv_timeout(CLOSE_TIMEOUT).is_err() {
                tracing::warn!(
                    instance = %self.owner.incarnation,
                    "the consumer's close did not finish within {CLOSE_TIMEOUT:?}; left running"
                );
            }
        }
    }
}

impl ConsumerHandle for BrokerConsumer {
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        self.session
            .subscribed(self.owner.incarnation, &self.owner.group, topics);
        self.with_native(|c| Consumer::subscribe(c, topics))
    }
    fn unsubscribe(&self) {
        self.session.joined(self.owner.incarnation);
        self.with_native(Consumer::unsubscribe)
    }
    fn assignment(&self) -> KafkaResult<TopicPartitionList> {
        self.with_native(Consumer::assignment)
    }
    fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        let change = Change::Assign(assignment);
        self.with_native(|c| self.owner.change_assignment(c, change))
    }
    fn unassign(&self) -> KafkaResult<()> {
        self.with_native(|c| self.owner.change_assignment(c, Change::Unassign))
    }
    fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        let change = Change::Add(assignment);
        self.with_native(|c| self.owner.change_assignment(c, change))
    }
    fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        let change = Change::Remove(assignment);
        self.with_native(|c| self.owner.change_assignment(c, change))
    }
    fn assignment_lost(&self) -> bool {
        self.with_native(Consumer::assignment_lost)
    }
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.with_native(Consumer::rebalance_protocol)
    }
    fn subscription(&self) -> KafkaResult<TopicPartitionList> {
        self.with_native(Consumer::subscription)
    }
    fn fetch_watermarks(
        &self,
        topic: &str,
        partition: i32,
        timeout: Timeout,
    ) -> KafkaResult<(i64, i64)> {
        self.with_native(|c| Consumer::fetch_watermarks(c, topic, partition, timeout))
    }
    fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        self.commit_intercepted(Operation::Commit, None, explicit_offsets(offsets)?, mode)
    }
    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
        let offsets = self.with_native(|c| self.owner.stored_offsets(c))?;
        self.commit_intercepted(Operation::Commit, None, offsets, mode)
    }
    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        let anchor = TopicPartition::new(topic, partition).at(offset);
        self.store(anchor, |c| {
            Consumer::store_offset(c, topic, partition, offset)
        })
    }
    fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        let anchor = offsets.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(o) => Some(TopicPartition::new(e.topic(), e.partition()).at(o - 1)),
            _ => None,
        });
        let Some(anchor) = anchor else {
            return Err(KafkaError::StoreOffset(RDKafkaErrorCode::InvalidArgument));
        };
        self.store(anchor, |c| Consumer::store_offsets(c, offsets))?;
        let mut stored = self
            .owner
            .stored
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for e in offsets.elements() {
            if let Offset::Offset(o) = e.offset() {
                stored.insert(TopicPartition::new(e.topic(), e.partition()), o);
            }
        }
        Ok(())
    }
    fn position(&self) -> KafkaResult<TopicPartitionList> {
        self.with_native(Consumer::position)
    }
    fn committed(&self, timeout: Timeout) -> KafkaResult<TopicPartitionList> {
        self.with_native(|c| Consumer::committed(c, timeout))
    }
    fn seek(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: Timeout,
    ) -> KafkaResult<()> {
        let tp = TopicPartition::new(topic, partition);
        self.drop_stalled(std::slice::from_ref(&tp));
        let seeked = self.with_native(|c| positioning::seek(&self.owner, c, &tp, offset, timeout));
        seeked.unwrap_or_else(|()| unwind_crash())
    }
    fn seek_partitions(
        &self,
        list: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        self.drop_stalled(&partitions(&list));
        let seeked =
            self.with_native(|c| positioning::seek_partitions(&self.owner, c, list, timeout));
        seeked.unwrap_or_else(|()| unwind_crash())
    }
    fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        self.with_native(|c| positioning::pause(&self.owner, c, partitions, true))
    }
    fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        self.with_native(|c| positioning::pause(&self.owner, c, partitions, false))
    }
    fn committed_offsets(
        &self,
        partitions: TopicPartitionList,
        timeout: Timeout,
    ) -> KafkaResult<TopicPartitionList> {
        self.with_native(|c| Consumer::committed_offsets(c, partitions, timeout))
    }
    fn group_metadata(&self) -> Option<GroupMetadata> {
        self.with_native(Consumer::group_metadata)
            .map(|m| GroupMetadata(GroupMetadataRepr::Rdkafka(m)))
    }
}

impl ConsumerClient for BrokerConsumer {
    fn recv(&self) -> BoxFuture<'_, KafkaResult<OwnedMessage>> {
        Box::pin(self.recv_message())
    }

    fn split_partition_queue(
        &self,
        partition: TopicPartition,
    ) -> Option<Box<dyn PartitionQueueClient>> {
        let queue = BrokerPartitionQueue::split(self.handout.clone(), &partition)?;
        Some(Box::new(queue))
    }

    fn commit_intercepted(
        &self,
        operation: Operation,
        anchor: Option<RecordPosition>,
        offsets: Vec<(TopicPartition, i64)>,
        mode: CommitMode,
    ) -> KafkaResult<()> {
        match self.with_native(|c| self.owner.commit(c, operation, anchor, offsets, mode)) {
            Ok(result) => result,
            Err(()) => unwind_crash(),
        }
    }
}
