//! `seek`, `seek_partitions`, `pause` and `resume` on librdkafka's consumer, through the run's
//! interception step, recorded in the history as the simulator records them.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::consumer::{BrokerContext, Owner, partitions};
use crate::history::{HistoryEvent, Operation, TopicPartition};

/// How long resolving a logical offset for the history may take.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `seek` through the [`Operation::Seek`] interception point. `Err(())`: the instance crashed
/// before or after it.
pub(super) fn seek(
    owner: &Owner,
    consumer: &BaseConsumer<BrokerContext>,
    tp: &TopicPartition,
    offset: Offset,
    timeout: Timeout,
) -> Result<KafkaResult<()>, ()> {
    intercepted(owner, || {
        let result = Consumer::seek(consumer, &tp.topic, tp.partition, offset, timeout);
        if result.is_ok() {
            record_seek(owner, consumer, tp, offset);
        }
        result
    })
}

/// `seek_partitions` through one [`Operation::Seek`] interception point; the partitions
/// without an error are recorded as seeked.
pub(super) fn seek_partitions(
    owner: &Owner,
    consumer: &BaseConsumer<BrokerContext>,
    list: TopicPartitionList,
    timeout: Timeout,
) -> Result<KafkaResult<TopicPartitionList>, ()> {
    intercepted(owner, || {
        let result = Consumer::seek_partitions(consumer, list, timeout);
        if let Ok(list) = &result {
            for e in list.elements() {
                if e.error().is_ok() {
                    let tp = TopicPartition::new(e.topic(), e.partition());
                    record_seek(owner, consumer, &tp, e.offset());
                }
            }
        }
        result
    })
}

/// `pause` (`paused`) or `resume`, recorded when librdkafka accepts it.
pub(super) fn pause(
    owner: &Owner,
    consumer: &BaseConsumer<BrokerContext>,
    list: &TopicPartitionList,
    paused: bool,
) -> KafkaResult<()> {
    let result = if paused {
        Consumer::pause(consumer, list)
    } else {
        Consumer::resume(consumer, list)
    };
    if result.is_ok() {
        owner.record(HistoryEvent::PartitionsPaused {
            partitions: partitions(list),
            paused,
        });
    }
    result
}

fn intercepted<T>(owner: &Owner, call: impl FnOnce() -> T) -> Result<T, ()> {
    let injection = owner.intercept(Operation::Seek, None)?;
    let result = call();
    owner.complete(&injection, Operation::Seek)?;
    Ok(result)
}

fn record_seek(
    owner: &Owner,
    consumer: &BaseConsumer<BrokerContext>,
    tp: &TopicPartition,
    offset: Offset,
) {
    let watermarks =
        || Consumer::fetch_watermarks(consumer, &tp.topic, tp.partition, RESOLVE_TIMEOUT).ok();
    let resolved = match offset {
        Offset::Offset(o) => Some(o),
        Offset::Beginning => watermarks().map(|(low, _)| low),
        Offset::End => watermarks().map(|(_, high)| high),
        Offset::OffsetTail(n) => watermarks().map(|(low, high)| (high - n).max(low)),
        _ => None,
    };
    if let Some(offset) = resolved {
        owner.record(HistoryEvent::Seeked {
            partition: tp.clone(),
            offset,
        });
    }
}
