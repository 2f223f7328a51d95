//! Where a simulated consumer reads: where newly assigned partitions start (the committed
//! offset or `auto.offset.reset`), `seek`, `seek_partitions`, `pause`, `resume` and
//! `committed_offsets`, with librdkafka's semantics as measured on its mock cluster
//! (`tests/brokers/seek_pause.rs`, the same cases as `tests/conformance/seek_pause.rs`).
//!
//! The simulator fetches nothing ahead: the next record of a partition is read at its
//! position when it is handed out, so what librdkafka prefetched and drops on a seek or a
//! pause never exists here.

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::config::OffsetReset;
use super::consumer::{ConsumerState, tpl_with_offsets};
use super::{ClientId, Crashed, World};
use crate::history::{AutoOffsetReset, HistoryEvent, Incarnation, Operation, TopicPartition};

/// librdkafka's text for an error code (`rd_kafka_err2str`), as rdkafka puts it in
/// `KafkaError::Seek`: `Local: Unknown partition`.
fn error_text(code: RDKafkaErrorCode) -> String {
    let text = code.to_string();
    match text.split_once(" (") {
        Some((_, description)) => description.trim_end_matches(')').to_string(),
        None => text,
    }
}

/// Sets the error of `tp`'s entry in `list`, as librdkafka reports a partition's own error
/// in the list (rdkafka 0.39 reads these errors but has no setter).
fn set_error(list: &mut TopicPartitionList, tp: &TopicPartition, code: RDKafkaErrorCode) {
    let (Ok(topic), Ok(err)) = (
        std::ffi::CString::new(tp.topic.as_str()),
        rdkafka::types::RDKafkaRespErr::try_from(code as i32),
    ) else {
        return;
    };
    // SAFETY: `list.ptr()` is the list's own valid pointer, which `&mut` lends exclusively;
    // librdkafka's find returns null or a pointer to one of its elements, valid while the
    // list is not resized (it is not, below).
    unsafe {
        let elem = rdkafka::bindings::rd_kafka_topic_partition_list_find(
            list.ptr(),
            topic.as_ptr(),
            tp.partition,
        );
        if let Some(elem) = elem.as_mut() {
            elem.err = err;
        }
    }
}

/// Where newly assigned partitions start ([`World::start_offsets`]).
#[derive(Default)]
pub(crate) struct Starts {
    /// Each partition with a start and its offset.
    pub positions: Vec<(TopicPartition, i64)>,
    /// The partitions without a committed offset, started by `auto.offset.reset`.
    pub resets: Vec<(TopicPartition, AutoOffsetReset)>,
    /// `auto.offset.reset=error` on a partition without a committed offset.
    pub errors: Vec<KafkaError>,
}

impl World {
    /// Where consumption of newly assigned `partitions` starts: the group's committed offset,
    /// else `auto.offset.reset` (with `error`: no start, an error for the application).
    pub(crate) fn start_offsets(&self, client: ClientId, partitions: &[TopicPartition]) -> Starts {
        let c = &self.consumers[&client];
        let reset = c.settings.auto_offset_reset;
        let group = self.groups.get(&c.settings.group_id);
        let mut starts = Starts::default();
        for tp in partitions {
            let (start, how) = match (group.and_then(|g| g.committed.get(tp)), reset) {
                (Some(&committed), _) => (Some(committed), None),
                (None, OffsetReset::Earliest) => (Some(0), Some(AutoOffsetReset::Earliest)),
                (None, OffsetReset::Latest) => (self.end_offset(tp), Some(AutoOffsetReset::Latest)),
                (None, OffsetReset::Error) => {
                    starts.errors.push(KafkaError::MessageConsumption(
                        RDKafkaErrorCode::AutoOffsetReset,
                    ));
                    (None, None)
                }
            };
            if let Some(start) = start {
                starts.positions.push((tp.clone(), start));
                if let Some(how) = how {
                    starts.resets.push((tp.clone(), how));
                }
            }
        }
        starts
    }

    /// `seek` of one partition, through the [`Operation::Seek`] interception point.
    pub(crate) fn seek(
        &mut self,
        c: &mut ConsumerState,
        incarnation: Incarnation,
        tp: TopicPartition,
        offset: Offset,
    ) -> Result<KafkaResult<()>, Crashed> {
        self.intercepted_seek(incarnation, |world| {
            world
                .seek_one(
                    c,
                    incarnation,
                    &tp,
                    offset,
                    RDKafkaErrorCode::UnknownPartition,
                )
                .map_err(|code| KafkaError::Seek(error_text(code)))
        })
    }

    /// `seek_partitions`: one interception point for the call; each partition's error is set
    /// in the list handed back.
    pub(crate) fn seek_partitions(
        &mut self,
        c: &mut ConsumerState,
        incarnation: Incarnation,
        mut partitions: TopicPartitionList,
    ) -> Result<KafkaResult<TopicPartitionList>, Crashed> {
        self.intercepted_seek(incarnation, |world| {
            let entries: Vec<(TopicPartition, Offset)> = partitions
                .elements()
                .iter()
                .map(|e| (TopicPartition::new(e.topic(), e.partition()), e.offset()))
                .collect();
            for (tp, offset) in entries {
                let unassigned = RDKafkaErrorCode::State;
                if let Err(code) = world.seek_one(c, incarnation, &tp, offset, unassigned) {
                    set_error(&mut partitions, &tp, code);
                }
            }
            Ok(partitions)
        })
    }

    fn intercepted_seek<T>(
        &mut self,
        incarnation: Incarnation,
        call: impl FnOnce(&mut World) -> KafkaResult<T>,
    ) -> Result<KafkaResult<T>, Crashed> {
        let seek = Operation::Seek;
        let anchor = self.current_record(incarnation);
        let injection = self.intercept_call(seek, incarnation, anchor.as_ref(), &seek)?;
        let result = call(self);
        self.complete_call(&injection, incarnation, &seek)?;
        Ok(result)
    }

    /// Moves `tp`'s position to `offset`, resolved against the log (`End` is where the
    /// consumer's isolation level lets it read up to). A partition not assigned is
    /// `unassigned` (measured: `seek` says `_UNKNOWN_PARTITION`, `seek_partitions` `_STATE`).
    /// As librdkafka, which treats a seek as a new assignment of the partition, the
    /// application's position is `Invalid` again until a record is handed out, and the
    /// stored offset stays where it was. An offset beyond the end is taken as it is: the
    /// next fetch finds it out of range ([`reset_out_of_range`](Self::reset_out_of_range)).
    fn seek_one(
        &mut self,
        c: &mut ConsumerState,
        incarnation: Incarnation,
        tp: &TopicPartition,
        offset: Offset,
        unassigned: RDKafkaErrorCode,
    ) -> Result<(), RDKafkaErrorCode> {
        if !c.assignment.contains(tp) {
            return Err(unassigned);
        }
        let end = self
            .fetch_limit(tp, c.settings.isolation_level)
            .ok_or(unassigned)?;
        let resolved = match offset {
            Offset::Offset(o) if o >= 0 => o,
            Offset::Beginning => 0,
            Offset::End => end,
            Offset::OffsetTail(n) => (end - n).max(0),
            _ => return Err(RDKafkaErrorCode::InvalidArgument),
        };
        c.positions.insert(tp.clone(), resolved);
        c.starts.insert(tp.clone(), resolved);
        c.eof_reported.remove(tp);
        self.record(
            Some(incarnation),
            HistoryEvent::Seeked {
                partition: tp.clone(),
                offset: resolved,
            },
        );
        self.touch();
        Ok(())
    }

    /// `pause` (`paused`) or `resume` of the listed partitions.
    pub(crate) fn pause(
        &mut self,
        c: &mut ConsumerState,
        incarnation: Incarnation,
        partitions: &TopicPartitionList,
        paused: bool,
    ) -> KafkaResult<()> {
        let tps: Vec<TopicPartition> = partitions
            .elements()
            .iter()
            .map(|e| TopicPartition::new(e.topic(), e.partition()))
            .collect();
        for tp in &tps {
            if paused {
                c.paused.insert(tp.clone());
            } else {
                c.paused.remove(tp);
            }
        }
        self.record(
            Some(incarnation),
            HistoryEvent::PartitionsPaused {
                partitions: tps,
                paused,
            },
        );
        self.touch();
        Ok(())
    }

    /// Applies `auto.offset.reset` to the positions of `client` beyond their partition's end
    /// (after a seek there): the fetch is out of range. Measured: `earliest` starts over from
    /// the beginning, `latest` from the end, both silently; `error` stops the partition and
    /// the poll reports `AutoOffsetReset` (the error returned).
    pub(crate) fn reset_out_of_range(&mut self, client: ClientId) -> Option<KafkaError> {
        let c = self.consumers.get(&client)?;
        // Every poll asks: look before building the list.
        let out_of_range =
            |(tp, &pos): (&TopicPartition, &i64)| self.end_offset(tp).is_some_and(|end| pos > end);
        if !c.positions.iter().any(out_of_range) {
            return None;
        }
        let beyond: Vec<(TopicPartition, i64)> = c
            .positions
            .iter()
            .filter_map(|(tp, &pos)| {
                let end = self.end_offset(tp)?;
                (pos > end).then(|| (tp.clone(), end))
            })
            .collect();
        if beyond.is_empty() {
            return None;
        }
        let c = self.consumers.get_mut(&client)?;
        let mut error = None;
        for (tp, end) in beyond {
            let reset = match c.settings.auto_offset_reset {
                OffsetReset::Earliest => 0,
                OffsetReset::Latest => end,
                OffsetReset::Error => {
                    c.positions.remove(&tp);
                    error = Some(KafkaError::MessageConsumption(
                        RDKafkaErrorCode::AutoOffsetReset,
                    ));
                    continue;
                }
            };
            c.positions.insert(tp.clone(), reset);
            c.starts.insert(tp, reset);
        }
        error
    }

    /// The group's committed offsets for the listed partitions, assigned or not.
    pub(crate) fn committed_offsets(
        &self,
        c: &ConsumerState,
        partitions: TopicPartitionList,
    ) -> KafkaResult<TopicPartitionList> {
        let group = self.groups.get(&c.settings.group_id);
        tpl_with_offsets(partitions.elements().iter().map(|e| {
            let tp = TopicPartition::new(e.topic(), e.partition());
            let committed = group.and_then(|g| g.committed.get(&tp).copied());
            (tp, committed)
        }))
    }
}
