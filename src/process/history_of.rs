//! A black-box run told in the history's vocabulary: the supervisor's lives, what the wire
//! proxy saw and the effect service's attempts, merged in time order, with the input as the
//! cluster's records at time zero. The invariants and the report read it as they read a
//! simulated run's.

use std::sync::Arc;
use std::time::Duration;

use super::black_box::committed_offsets;
use super::{BlackBoxCase, BlackBoxOutcome, Ended, Ending, WireEvent};
use crate::history::{
    AutoOffsetReset, CommitKind, Fault, History, HistoryEntry, HistoryEvent, Incarnation,
    InstanceId, Lag, Operation, PublishedEvent, RecordPosition, TopicPartition,
};
use crate::ledger::EffectRecord;

/// The events of `case` as published: where each landed.
pub(crate) fn published_of(case: &BlackBoxCase, outcome: &BlackBoxOutcome) -> Vec<PublishedEvent> {
    case.events
        .iter()
        .zip(&outcome.landed)
        .map(|(e, (partition, offset))| PublishedEvent {
            event_id: e.event_id.clone(),
            key: e.key.clone(),
            positions: vec![RecordPosition {
                topic: case.topic.as_str().into(),
                partition: *partition,
                offset: *offset,
            }],
            aborted: None,
            poison: false,
        })
        .collect()
}

/// The run's effect attempts, each with the generation its instance had joined last (from the
/// JoinGroup answers the proxy saw), as the simulator records it.
pub(crate) fn attempts_of(outcome: &BlackBoxOutcome) -> Vec<EffectRecord> {
    outcome
        .attempts
        .iter()
        .map(|a| {
            let generation = outcome
                .wire
                .iter()
                .filter_map(|e| match e {
                    WireEvent::Joined {
                        at,
                        instance,
                        generation,
                        error: 0,
                        ..
                    } if *instance == a.incarnation.instance && *at <= a.at => Some(*generation),
                    _ => None,
                })
                .next_back();
            EffectRecord {
                generation,
                ..a.clone()
            }
        })
        .collect()
}

/// The assignment of `partitions` to `instance` as the history has it: each partition with
/// where its consumption started, read from what the proxy saw next (`after`, up to the
/// instance's next assignment): the group's committed offset, or where `auto.offset.reset`
/// put it. Partitions whose start was never seen are left out; `None` when none was seen.
fn assignment(
    after: &[WireEvent],
    instance: InstanceId,
    partitions: &[(String, i32)],
    group: &str,
    generation: i32,
) -> Option<HistoryEvent> {
    let mut starts: Vec<(TopicPartition, i64)> = Vec::new();
    let mut resets: Vec<(TopicPartition, AutoOffsetReset)> = Vec::new();
    for e in after {
        match e {
            WireEvent::Assigned { instance: i, .. } if *i == instance => break,
            WireEvent::Positioned {
                instance: i,
                topic,
                partition,
                offset,
                reset,
                ..
            } if *i == instance && partitions.contains(&(topic.clone(), *partition)) => {
                let tp = TopicPartition::new(topic.as_str(), *partition);
                if starts.iter().any(|(seen, _)| *seen == tp) {
                    continue;
                }
                if let Some(how) = reset {
                    resets.push((tp.clone(), *how));
                }
                starts.push((tp, *offset));
            }
            _ => {}
        }
    }
    if starts.is_empty() {
        return None;
    }
    starts.sort();
    Some(HistoryEvent::PartitionsAssigned {
        group: group.to_string(),
        generation,
        partitions: starts,
        resets,
    })
}

/// The end of `transactional_id`'s transaction as the history has it: what it wrote and the
/// offsets it took, read from what the proxy saw `before` it since that id's previous end.
fn transaction_end(
    before: &[WireEvent],
    transactional_id: &str,
    committed: bool,
    error: i16,
) -> HistoryEvent {
    let call = if committed {
        "commit_transaction"
    } else {
        "abort_transaction"
    };
    if error != 0 {
        return HistoryEvent::TransactionCallFailed {
            transactional_id: transactional_id.to_string(),
            call: call.to_string(),
            error: format!("Kafka error code {error}"),
        };
    }
    let mut partitions: Vec<TopicPartition> = Vec::new();
    let mut offsets: Vec<(String, TopicPartition, i64)> = Vec::new();
    for e in before.iter().rev() {
        match e {
            // The previous end the broker accepted (a refused one left the transaction open).
            WireEvent::TxnEnded {
                transactional_id: t,
                error: 0,
                ..
            } if t == transactional_id => break,
            WireEvent::Produced {
                transactional_id: Some(t),
                topic,
                partition,
                ..
            } if t == transactional_id => {
                let tp = TopicPartition::new(topic.as_str(), *partition);
                if !partitions.contains(&tp) {
                    partitions.push(tp);
                }
            }
            WireEvent::TxnOffsets {
                transactional_id: t,
                group,
                offsets: taken,
                ..
            } if t == transactional_id => {
                for (topic, partition, offset) in taken {
                    let tp = TopicPartition::new(topic.as_str(), *partition);
                    // The latest offset sent for a partition is the one that counts.
                    if !offsets.iter().any(|(g, p, _)| g == group && *p == tp) {
                        offsets.push((group.clone(), tp, *offset));
                    }
                }
            }
            _ => {}
        }
    }
    partitions.sort();
    offsets.sort();
    if committed {
        HistoryEvent::TransactionCommitted {
            transactional_id: transactional_id.to_string(),
            partitions,
            offsets,
        }
    } else {
        HistoryEvent::TransactionAborted {
            transactional_id: transactional_id.to_string(),
            partitions,
            reason: "the application aborted".into(),
        }
    }
}

/// The history of the run `outcome` of `case`.
pub(crate) fn history_of(case: &BlackBoxCase, outcome: &BlackBoxOutcome) -> History {
    let mut entries: Vec<HistoryEntry> = Vec::new();
    let cluster = |event| HistoryEntry {
        at: Duration::ZERO,
        incarnation: None,
        event,
    };
    for (e, position) in case.events.iter().zip(published_of(case, outcome)) {
        entries.push(cluster(HistoryEvent::RecordProduced {
            position: position.positions[0].clone(),
            key: Some(Arc::from(e.key.as_str())),
            retry: false,
        }));
    }
    // The incarnation of an instance at a time: the latest one started by then.
    let incarnation_at = |instance: InstanceId, at: Duration| -> Incarnation {
        outcome
            .lives
            .iter()
            .filter(|l| l.incarnation.instance == instance && l.started <= at)
            .map(|l| l.incarnation)
            .next_back()
            .unwrap_or(Incarnation {
                instance,
                number: 1,
            })
    };
    let of = |instance: InstanceId, at: Duration, event| HistoryEntry {
        at,
        incarnation: Some(incarnation_at(instance, at)),
        event,
    };
    for life in &outcome.lives {
        entries.push(HistoryEntry {
            at: life.started,
            incarnation: Some(life.incarnation),
            event: HistoryEvent::InstanceStarted,
        });
        let (Some(ended), Some(at)) = (&life.ended, life.ended_at) else {
            continue;
        };
        let event = match ended {
            // The kit's own stop at the end of the run is not part of the story.
            Ended::Killed if at >= outcome.stopped_at => continue,
            Ended::Killed => HistoryEvent::InstanceCrashed {
                cause: "killed (SIGKILL) by the injected fault before it".into(),
            },
            Ended::Exited(Some(0)) => HistoryEvent::InstanceExited { error: None },
            Ended::Exited(code) => HistoryEvent::InstanceExited {
                error: Some(exit_error(*code, &life.output)),
            },
        };
        entries.push(HistoryEntry {
            at,
            incarnation: Some(life.incarnation),
            event,
        });
    }
    for (i, e) in outcome.wire.iter().enumerate() {
        let entry = match e {
            WireEvent::Request { .. } => continue,
            WireEvent::Fetched {
                at,
                instance,
                topic,
                partition,
                offset,
                key,
            } => of(
                *instance,
                *at,
                HistoryEvent::Fetched {
                    position: RecordPosition {
                        topic: topic.as_str().into(),
                        partition: *partition,
                        offset: *offset,
                    },
                    key: key
                        .as_ref()
                        .map(|k| Arc::from(String::from_utf8_lossy(k).as_ref())),
                },
            ),
            WireEvent::Committed {
                at,
                instance,
                group,
                generation,
                topic,
                partition,
                offset,
                error,
                ..
            } => {
                let offsets = vec![(TopicPartition::new(topic.as_str(), *partition), *offset)];
                let event = if *error == 0 {
                    HistoryEvent::OffsetsCommitted {
                        group: group.clone(),
                        generation: *generation,
                        offsets,
                        kind: CommitKind::Wire,
                    }
                } else {
                    HistoryEvent::CommitRejected {
                        group: group.clone(),
                        offsets,
                        kind: CommitKind::Wire,
                        error: format!("Kafka error code {error}"),
                    }
                };
                of(*instance, *at, event)
            }
            WireEvent::Joined {
                at,
                instance,
                member,
                error: 0,
                ..
            } => of(
                *instance,
                *at,
                HistoryEvent::MemberJoined {
                    group: case.group.clone(),
                    member: member.clone(),
                },
            ),
            WireEvent::Joined { .. }
            | WireEvent::Positioned { .. }
            | WireEvent::TxnOffsets { .. } => continue,
            WireEvent::Produced {
                at,
                instance,
                topic,
                partition,
                offset,
                key,
                ..
            } => of(
                *instance,
                *at,
                HistoryEvent::RecordProduced {
                    position: TopicPartition::new(topic.as_str(), *partition).at(*offset),
                    key: key
                        .as_ref()
                        .map(|k| Arc::from(String::from_utf8_lossy(k).as_ref())),
                    retry: false,
                },
            ),
            WireEvent::TxnEnded {
                at,
                instance,
                transactional_id,
                committed,
                error,
            } => of(
                *instance,
                *at,
                transaction_end(&outcome.wire[..i], transactional_id, *committed, *error),
            ),
            WireEvent::Assigned {
                at,
                instance,
                group,
                generation,
                partitions,
            } => {
                let Some(assigned) = assignment(
                    &outcome.wire[i + 1..],
                    *instance,
                    partitions,
                    group,
                    *generation,
                ) else {
                    continue;
                };
                of(*instance, *at, assigned)
            }
            WireEvent::Fault {
                at,
                instance,
                api,
                fault,
            } => of(*instance, *at, fault_injected(operation_of(api), *fault)),
        };
        entries.push(entry);
    }
    for f in &outcome.effect_faults_fired {
        entries.push(of(
            f.instance,
            f.at,
            fault_injected(Operation::Effect, f.fault),
        ));
    }
    for a in &outcome.attempts {
        entries.push(HistoryEntry {
            at: a.at,
            incarnation: Some(a.incarnation),
            event: HistoryEvent::Effect {
                sink: a.sink.clone(),
                event_id: a.event_id.clone(),
                idempotency_key: a.idempotency_key.clone(),
                outcome: a.outcome,
            },
        });
    }
    // Stable: at one instant, the order each source recorded.
    entries.sort_by_key(|e| e.at);
    let lag = lag_of(case, outcome);
    entries.push(HistoryEntry {
        at: outcome.stopped_at,
        incarnation: None,
        event: match outcome.ending {
            Ending::CaughtUp => HistoryEvent::Quiesced,
            Ending::AllEnded => HistoryEvent::AllInstancesStopped { lag },
            Ending::TimedOut => HistoryEvent::TimeLimitReached { lag },
        },
    });
    let mut history = History::default();
    for e in entries {
        history.push(e);
    }
    history
}

fn fault_injected(operation: Operation, fault: Fault) -> HistoryEvent {
    HistoryEvent::FaultInjected {
        operation,
        fault,
        record: None,
    }
}

/// The client call a request on the wire stands for.
fn operation_of(api: &str) -> Operation {
    match api {
        "OffsetCommit" => Operation::Commit,
        "TxnOffsetCommit" => Operation::SendOffsetsToTransaction,
        "EndTxn" => Operation::CommitTransaction,
        "Produce" => Operation::Send,
        _ => Operation::Recv,
    }
}

/// Why a process that exited by itself failed: its status and its last line of output.
fn exit_error(code: Option<i32>, output: &str) -> String {
    let status = match code {
        Some(c) => format!("exit status {c}"),
        None => "killed by a signal the kit did not send".into(),
    };
    match output.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(last) => format!("{status}; its last output: {}", last.trim()),
        None => status,
    }
}

/// The group's lag on each partition when the run stopped.
fn lag_of(case: &BlackBoxCase, outcome: &BlackBoxOutcome) -> Vec<Lag> {
    let committed = committed_offsets(&outcome.wire, &case.group, &case.topic);
    outcome
        .ends
        .iter()
        .map(|(p, end)| Lag {
            group: case.group.clone(),
            partition: TopicPartition::new(case.topic.as_str(), *p),
            committed: committed.get(p).copied(),
            end: *end,
        })
        .collect()
}
