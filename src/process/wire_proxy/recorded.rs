//! What the proxy records from the messages it relays: fetched records, commits and their
//! answers (and the refusal it answers for the broker), assignments, where consumption starts.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchResponse, RequestHeader, ResponseHeader,
    SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::messages::{
    EndTxnRequest, EndTxnResponse, ProduceRequest, ProduceResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::records::RecordBatchDecoder;

use super::{REBALANCE_IN_PROGRESS, Route, WireEvent, reencode};
use crate::history::AutoOffsetReset;
use crate::process::lock;

/// A request's body, its header skipped; `None` when it does not decode (the answer is then
/// passed on unrecorded: these records are for the timeline and the run's progress only).
fn request_of<T: Decodable>(key: ApiKey, version: i16, request: &Bytes) -> Option<T> {
    let mut body = request.clone();
    RequestHeader::decode(&mut body, key.request_header_version(version)).ok()?;
    T::decode(&mut body, version).ok()
}

impl Route {
    /// Records the records a Produce answer says were appended (acks=0 gets no answer, and a
    /// compressed batch, which the proxy cannot read, is left out).
    pub(super) fn produced(&self, version: i16, request: &Bytes, answer: &ProduceResponse) {
        let Some(asked) = request_of::<ProduceRequest>(ApiKey::Produce, version, request) else {
            return;
        };
        let transactional_id = asked.transactional_id.as_ref().map(|t| t.0.to_string());
        for topic in &asked.topic_data {
            let name = self.topic_name(&topic.name.0, topic.topic_id.as_bytes());
            for p in &topic.partition_data {
                let appended = answer
                    .responses
                    .iter()
                    .filter(|t| t.name == topic.name && t.topic_id == topic.topic_id)
                    .flat_map(|t| &t.partition_responses)
                    .find(|r| r.index == p.index && r.error_code == 0);
                let (Some(appended), Some(records)) = (appended, &p.records) else {
                    continue;
                };
                let mut offset = appended.base_offset;
                for batch in whole_batches(records.clone()) {
                    let mut batch = batch;
                    let Ok(set) = RecordBatchDecoder::decode(&mut batch) else {
                        break;
                    };
                    for r in &set.records {
                        self.record(WireEvent::Produced {
                            at: self.at(),
                            instance: self.instance,
                            topic: name.clone(),
                            partition: p.index,
                            offset,
                            key: r.key.as_ref().map(|k| k.to_vec()),
                            transactional_id: transactional_id.clone(),
                        });
                        offset += 1;
                    }
                }
            }
        }
    }

    /// Records the consumer offsets a TxnOffsetCommit answer took into a transaction.
    pub(super) fn txn_offsets(
        &self,
        version: i16,
        request: &Bytes,
        answer: &TxnOffsetCommitResponse,
    ) {
        let key = ApiKey::TxnOffsetCommit;
        let Some(asked) = request_of::<TxnOffsetCommitRequest>(key, version, request) else {
            return;
        };
        let mut offsets = Vec::new();
        for topic in &asked.topics {
            for p in &topic.partitions {
                let taken = answer
                    .topics
                    .iter()
                    .filter(|t| t.name == topic.name)
                    .flat_map(|t| &t.partitions)
                    .any(|r| r.partition_index == p.partition_index && r.error_code == 0);
                if taken {
                    offsets.push((
                        topic.name.0.to_string(),
                        p.partition_index,
                        p.committed_offset,
                    ));
                }
            }
        }
        self.record(WireEvent::TxnOffsets {
            at: self.at(),
            instance: self.instance,
            transactional_id: asked.transactional_id.0.to_string(),
            group: asked.group_id.0.to_string(),
            offsets,
        });
    }

    /// Records how an EndTxn (a commit or an abort) was answered.
    pub(super) fn txn_ended(&self, version: i16, request: &Bytes, answer: &EndTxnResponse) {
        let Some(asked) = request_of::<EndTxnRequest>(ApiKey::EndTxn, version, request) else {
            return;
        };
        self.record(WireEvent::TxnEnded {
            at: self.at(),
            instance: self.instance,
            transactional_id: asked.transactional_id.0.to_string(),
            committed: asked.committed,
            error: answer.error_code,
        });
    }
    pub(super) fn topic_name(&self, name: &str, id: &[u8; 16]) -> String {
        if !name.is_empty() {
            return name.to_string();
        }
        lock(&self.shared.topics)
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("topic id {}", hex(id)))
    }

    pub(super) fn fetched(&self, response: &FetchResponse) {
        for topic in &response.responses {
            let name = self.topic_name(&topic.topic.0, topic.topic_id.as_bytes());
            for p in &topic.partitions {
                let Some(records) = &p.records else { continue };
                for batch in whole_batches(records.clone()) {
                    let mut batch = batch;
                    match RecordBatchDecoder::decode(&mut batch) {
                        Ok(set) => {
                            for r in set.records.iter().filter(|r| !r.control) {
                                self.record(WireEvent::Fetched {
                                    at: self.at(),
                                    instance: self.instance,
                                    topic: name.clone(),
                                    partition: p.partition_index,
                                    offset: r.offset,
                                    key: r.key.as_ref().map(|k| k.to_vec()),
                                });
                            }
                        }
                        Err(e) => lock(&self.shared.problems).push(format!(
                            "{}: a fetched batch of {name}[{}] could not be decoded: {e}",
                            self.instance, p.partition_index
                        )),
                    }
                }
            }
        }
    }

    /// The answer the broker would give refusing `frame`, an OffsetCommit request, because
    /// the group is rebalancing (recorded as the commit's answer).
    pub(super) fn refused_commit(&self, version: i16, frame: &Bytes) -> Result<Bytes, String> {
        let key = ApiKey::OffsetCommit;
        let mut body = frame.clone();
        let header = RequestHeader::decode(&mut body, key.request_header_version(version))
            .map_err(|e| format!("OffsetCommit v{version}: undecodable request header: {e}"))?;
        let asked = OffsetCommitRequest::decode(&mut body, version)
            .map_err(|e| format!("OffsetCommit v{version}: undecodable request: {e}"))?;
        let mut answer = OffsetCommitResponse::default();
        for topic in &asked.topics {
            let mut refused = OffsetCommitResponseTopic::default();
            refused.name = topic.name.clone();
            refused.topic_id = topic.topic_id;
            for p in &topic.partitions {
                let mut partition = OffsetCommitResponsePartition::default();
                partition.partition_index = p.partition_index;
                partition.error_code = REBALANCE_IN_PROGRESS;
                refused.partitions.push(partition);
            }
            answer.topics.push(refused);
        }
        self.committed(key, version, frame, &answer)?;
        let mut response = ResponseHeader::default();
        response.correlation_id = header.correlation_id;
        reencode(
            &response,
            key.response_header_version(version),
            &answer,
            version,
        )
    }

    /// Records the partitions a SyncGroup answer gave the instance. Only the timeline and
    /// the diagnoses read them: an assignment that does not decode as the consumer
    /// protocol's (another protocol type) is not recorded.
    pub(super) fn assigned(&self, version: i16, request: &Bytes, answer: &SyncGroupResponse) {
        if answer.error_code != 0 || answer.assignment.len() < 2 {
            return;
        }
        let Some(asked) = request_of::<SyncGroupRequest>(ApiKey::SyncGroup, version, request)
        else {
            return;
        };
        // The consumer protocol's assignment: its version, then the assignment at it.
        let mut bytes = answer.assignment.clone();
        let at_version = bytes.get_i16();
        let Ok(assignment) = ConsumerProtocolAssignment::decode(&mut bytes, at_version) else {
            return;
        };
        let partitions = assignment
            .assigned_partitions
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p)))
            .collect();
        self.record(WireEvent::Assigned {
            at: self.at(),
            instance: self.instance,
            group: asked.group_id.0.to_string(),
            generation: asked.generation_id,
            partitions,
        });
    }

    /// Records the committed offsets an OffsetFetch answer read (where consumption resumes).
    pub(super) fn committed_read(&self, answer: &OffsetFetchResponse) {
        let mut read: Vec<(String, i32, i64)> = Vec::new();
        for t in &answer.topics {
            for p in t.partitions.iter().filter(|p| p.error_code == 0) {
                read.push((t.name.0.to_string(), p.partition_index, p.committed_offset));
            }
        }
        for g in answer.groups.iter().filter(|g| g.error_code == 0) {
            for t in &g.topics {
                let name = self.topic_name(&t.name.0, t.topic_id.as_bytes());
                for p in t.partitions.iter().filter(|p| p.error_code == 0) {
                    read.push((name.clone(), p.partition_index, p.committed_offset));
                }
            }
        }
        for (topic, partition, offset) in read {
            if offset >= 0 {
                self.record(WireEvent::Positioned {
                    at: self.at(),
                    instance: self.instance,
                    topic,
                    partition,
                    offset,
                    reset: None,
                });
            }
        }
    }

    /// Records where a ListOffsets answer for the earliest or latest offset put the
    /// instance's consumption (an `auto.offset.reset`); for the timeline and the diagnoses
    /// only, so a request that does not decode is not recorded.
    pub(super) fn reset(&self, version: i16, request: &Bytes, answer: &ListOffsetsResponse) {
        let key = ApiKey::ListOffsets;
        let Some(asked) = request_of::<ListOffsetsRequest>(key, version, request) else {
            return;
        };
        for topic in &asked.topics {
            for p in &topic.partitions {
                // Kafka's timestamps for the latest (-1) and the earliest (-2) offset.
                let reset = match p.timestamp {
                    -1 => AutoOffsetReset::Latest,
                    -2 => AutoOffsetReset::Earliest,
                    _ => continue,
                };
                let found = answer
                    .topics
                    .iter()
                    .filter(|t| t.name == topic.name)
                    .flat_map(|t| &t.partitions)
                    .find(|r| r.partition_index == p.partition_index && r.error_code == 0);
                if let Some(r) = found {
                    self.record(WireEvent::Positioned {
                        at: self.at(),
                        instance: self.instance,
                        topic: topic.name.0.to_string(),
                        partition: p.partition_index,
                        offset: r.offset,
                        reset: Some(reset),
                    });
                }
            }
        }
    }

    pub(super) fn committed(
        &self,
        key: ApiKey,
        version: i16,
        request: &Bytes,
        answer: &OffsetCommitResponse,
    ) -> Result<(), String> {
        let mut body = request.clone();
        RequestHeader::decode(&mut body, key.request_header_version(version))
            .map_err(|e| format!("OffsetCommit v{version}: undecodable request header: {e}"))?;
        let asked = OffsetCommitRequest::decode(&mut body, version)
            .map_err(|e| format!("OffsetCommit v{version}: undecodable request: {e}"))?;
        for topic in &asked.topics {
            let name = self.topic_name(&topic.name.0, topic.topic_id.as_bytes());
            for p in &topic.partitions {
                let error = answer
                    .topics
                    .iter()
                    .filter(|t| t.name == topic.name && t.topic_id == topic.topic_id)
                    .flat_map(|t| &t.partitions)
                    .find(|r| r.partition_index == p.partition_index)
                    .map_or(-1, |r| r.error_code);
                self.record(WireEvent::Committed {
                    at: self.at(),
                    instance: self.instance,
                    group: asked.group_id.0.to_string(),
                    generation: asked.generation_id_or_member_epoch,
                    member: asked.member_id.to_string(),
                    topic: name.clone(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    error,
                });
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The complete record batches in a fetched partition's records (a fetch may end with part of
/// a batch, which the client discards too).
fn whole_batches(mut records: Bytes) -> Vec<Bytes> {
    let mut batches = Vec::new();
    // A batch starts with its base offset (8 bytes) and the length of the rest (4 bytes).
    while records.len() >= 12 {
        let length = i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
        let Ok(rest) = usize::try_from(length) else {
            break;
        };
        if records.len() < 12 + rest {
            break;
        }
        batches.push(records.split_to(12 + rest));
    }
    batches
}
