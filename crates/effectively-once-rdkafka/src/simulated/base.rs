//! `BaseConsumer`: the consumer a rebalance callback gets.
//!
//! The kit hands its rebalance handler a `&dyn ConsumerHandle` that is valid for the
//! callback only (on a real broker it borrows librdkafka's consumer; at close it is the consumer
//! being dropped), while rdkafka's callbacks take a `&BaseConsumer<Self>`, a type without a
//! lifetime. Rather than keep an owning reference to the consumer (a cycle through its own
//! handler that would leak it, and could not reach it while it is dropped) or erase the
//! borrow's lifetime (`unsafe`), [`lend`] runs the user's callback on a scoped thread with a
//! `BaseConsumer` that sends each call back to the calling thread, which runs it on the
//! borrowed handle and answers. The calling thread serves nothing else meanwhile, so the
//! callback is as synchronous as librdkafka's; every call runs where it would have (the
//! instance's task, its tokio context, the kit's crash unwinding), and a panic on either side
//! resumes on the calling thread once the callback is over.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::mpsc;

use effectively_once::ConsumerHandle;
use rdkafka::consumer::{CommitMode, DefaultConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::ConsumerGroupMetadata;
use super::context::ConsumerContext;
use super::message::BorrowedMessage;
use super::traits::Consumer;

/// A call to run on the borrowed handle, on the thread that lent it.
type Request = Box<dyn FnOnce(&dyn ConsumerHandle) + Send>;

/// The consumer a [`ConsumerContext`] callback gets, in place of rdkafka's `BaseConsumer`:
/// every [`Consumer`] call on it reaches the consumer being rebalanced (a commit in
/// `pre_rebalance(Revoke)` commits before the partitions go, also at the consumer's close).
///
/// Only callbacks get one: the simulated clients are [`StreamConsumer`](super::StreamConsumer)s
/// (a `BaseConsumer`'s blocking `poll` has no place on the kit's virtual clock).
pub struct BaseConsumer<C = DefaultConsumerContext>
where
    C: ConsumerContext,
{
    context: Arc<C>,
    link: mpsc::Sender<Request>,
}

impl<C: ConsumerContext> BaseConsumer<C> {
    /// Runs `call` on the lent handle. When the call crashed the instance (the kit unwinds the
    /// lending thread), the callback stops here too: a crashed process runs nothing more.
    fn call<R: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn ConsumerHandle) -> R + Send + 'static,
    ) -> R {
        let (reply, answer) = mpsc::sync_channel(1);
        let request: Request = Box::new(move |handle| {
            let _ = reply.send(call(handle));
        });
        // The lending thread stops serving only when a call unwound it.
        match self
            .link
            .send(request)
            .ok()
            .and_then(|()| answer.recv().ok())
        {
            Some(answer) => answer,
            None => resume_unwind(Box::new(Crashed)),
        }
    }
}

/// The payload that stops a callback whose instance crashed under it.
struct Crashed;

impl<C: ConsumerContext> std::fmt::Debug for BaseConsumer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseConsumer").finish_non_exhaustive()
    }
}

/// Runs `callback` with a [`BaseConsumer`] over `handle` (see the module's docs).
pub(crate) fn lend<C: ConsumerContext>(
    context: &Arc<C>,
    handle: &dyn ConsumerHandle,
    callback: impl FnOnce(&C, &BaseConsumer<C>) + Send,
) {
    let (link, requests) = mpsc::channel::<Request>();
    let base = BaseConsumer {
        context: context.clone(),
        link,
    };
    // The callback logs where the instance logs, and may use the instance's runtime.
    let dispatch = tracing::dispatcher::get_default(tracing::Dispatch::clone);
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("rebalance-callback".into())
            .spawn_scoped(scope, move || {
                let _runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
                tracing::dispatcher::with_default(&dispatch, || callback(&base.context, &base));
            });
        let worker = match worker {
            Ok(worker) => worker,
            Err(error) => {
                tracing::error!(
                    "effectively-once-rdkafka: the rebalance callback did not run: no thread \
                     for it ({error})"
                );
                return;
            }
        };
        // Serve the callback's calls until it returns (and drops its consumer).
        let mut crash = None;
        for request in &requests {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| request(handle))) {
                crash = Some(payload);
                break;
            }
        }
        drop(requests);
        let finished = worker.join();
        if let Some(payload) = crash {
            resume_unwind(payload);
        }
        if let Err(payload) = finished {
            resume_unwind(payload);
        }
    });
}

impl<C: ConsumerContext> Consumer<C> for BaseConsumer<C> {
    fn context(&self) -> &Arc<C> {
        &self.context
    }
    fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.call(|c| c.group_metadata())
    }
    fn subscribe(&self, topics: &[&str]) -> KafkaResult<()> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        self.call(move |c| c.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>()))
    }
    fn unsubscribe(&self) {
        self.call(|c| c.unsubscribe());
    }
    fn commit(&self, offsets: &TopicPartitionList, mode: CommitMode) -> KafkaResult<()> {
        let offsets = offsets.clone();
        self.call(move |c| c.commit(&offsets, mode))
    }
    fn commit_consumer_state(&self, mode: CommitMode) -> KafkaResult<()> {
        self.call(move |c| c.commit_consumer_state(mode))
    }
    fn commit_message(&self, message: &BorrowedMessage<'_>, mode: CommitMode) -> KafkaResult<()> {
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(
            message.topic(),
            message.partition(),
            rdkafka::Offset::Offset(message.offset() + 1),
        )?;
        self.commit(&offsets, mode)
    }
    fn store_offset(&self, topic: &str, partition: i32, offset: i64) -> KafkaResult<()> {
        let topic = topic.to_string();
        self.call(move |c| c.store_offset(&topic, partition, offset))
    }
    fn store_offset_from_message(&self, message: &BorrowedMessage<'_>) -> KafkaResult<()> {
        self.store_offset(message.topic(), message.partition(), message.offset())
    }
    fn store_offsets(&self, offsets: &TopicPartitionList) -> KafkaResult<()> {
        let offsets = offsets.clone();
        self.call(move |c| c.store_offsets(&offsets))
    }
    fn subscription(&self) -> KafkaResult<TopicPartitionList> {
        self.call(|c| c.subscription())
    }
    fn assignment(&self) -> KafkaResult<TopicPartitionList> {
        self.call(|c| c.assignment())
    }
    fn committed<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<TopicPartitionList> {
        let timeout = timeout.into();
        self.call(move |c| c.committed(timeout))
    }
    fn position(&self) -> KafkaResult<TopicPartitionList> {
        self.call(|c| c.position())
    }
    fn fetch_watermarks<T: Into<Timeout>>(
        &self,
        topic: &str,
        partition: i32,
        timeout: T,
    ) -> KafkaResult<(i64, i64)> {
        let (topic, timeout) = (topic.to_string(), timeout.into());
        self.call(move |c| c.fetch_watermarks(&topic, partition, timeout))
    }

    fn seek<T: Into<Timeout>>(
        &self,
        topic: &str,
        partition: i32,
        offset: Offset,
        timeout: T,
    ) -> KafkaResult<()> {
        let (topic, timeout) = (topic.to_string(), timeout.into());
        self.call(move |c| c.seek(&topic, partition, offset, timeout))
    }

    fn seek_partitions<T: Into<Timeout>>(
        &self,
        topic_partition_list: TopicPartitionList,
        timeout: T,
    ) -> KafkaResult<TopicPartitionList> {
        let timeout = timeout.into();
        self.call(move |c| c.seek_partitions(topic_partition_list, timeout))
    }

    fn committed_offsets<T: Into<Timeout>>(
        &self,
        tpl: TopicPartitionList,
        timeout: T,
    ) -> KafkaResult<TopicPartitionList> {
        let timeout = timeout.into();
        self.call(move |c| c.committed_offsets(tpl, timeout))
    }

    fn pause(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        let partitions = partitions.clone();
        self.call(move |c| c.pause(&partitions))
    }

    fn assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        let assignment = assignment.clone();
        self.call(move |c| c.assign(&assignment))
    }

    fn unassign(&self) -> KafkaResult<()> {
        self.call(move |c| c.unassign())
    }

    fn incremental_assign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        let assignment = assignment.clone();
        self.call(move |c| c.incremental_assign(&assignment))
    }

    fn incremental_unassign(&self, assignment: &TopicPartitionList) -> KafkaResult<()> {
        let assignment = assignment.clone();
        self.call(move |c| c.incremental_unassign(&assignment))
    }

    fn assignment_lost(&self) -> bool {
        self.call(move |c| c.assignment_lost())
    }

    fn rebalance_protocol(&self) -> RebalanceProtocol {
        self.call(move |c| c.rebalance_protocol())
    }

    fn resume(&self, partitions: &TopicPartitionList) -> KafkaResult<()> {
        let partitions = partitions.clone();
        self.call(move |c| c.resume(&partitions))
    }
}
