//! What can happen in a run: the events of a history and the values they carry.

use std::fmt;
use std::sync::Arc;

use super::operation::{Fault, Operation};
use super::position::{RecordPosition, TopicPartition};
use super::store_rows::{StoreRows, write_rows};

/// How an effect-sink call turned out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EffectOutcome {
    /// The effect happened and the caller was told so.
    Performed,
    /// The effect did not happen and the caller got an error.
    Failed,
    /// The effect happened but the caller got an error (a timeout after the work was done).
    PerformedReportedFailed,
    /// The idempotency key had been seen before: nothing new happened, the caller was told
    /// it succeeded.
    Deduplicated,
}

impl EffectOutcome {
    /// Whether the outside world changed (the email went out, the card was charged).
    pub fn took_effect(self) -> bool {
        matches!(
            self,
            EffectOutcome::Performed | EffectOutcome::PerformedReportedFailed
        )
    }
}

impl fmt::Display for EffectOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EffectOutcome::Performed => "performed",
            EffectOutcome::Failed => "failed",
            EffectOutcome::PerformedReportedFailed => "performed but reported failed",
            EffectOutcome::Deduplicated => "deduplicated by idempotency key",
        })
    }
}

/// What made a consumer commit offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CommitKind {
    /// `commit`, `commit_message` or `commit_consumer_state` with `CommitMode::Sync`.
    Sync,
    /// The same calls with `CommitMode::Async`, applied when the request reached the broker.
    Async,
    /// librdkafka's periodic auto-commit (`auto.commit.interval.ms`).
    Auto,
    /// The auto-commit librdkafka performs when partitions are revoked.
    Revoke,
    /// The auto-commit librdkafka performs when a consumer is closed (dropped).
    Close,
    /// A commit seen on the wire from a consumer process: which call made it is not known.
    Wire,
}

impl fmt::Display for CommitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommitKind::Sync => "sync",
            CommitKind::Async => "async",
            CommitKind::Auto => "auto",
            CommitKind::Revoke => "on revoke",
            CommitKind::Close => "on close",
            CommitKind::Wire => "seen on the wire",
        })
    }
}

/// Where an assigned partition that had no committed offset started: librdkafka's
/// `auto.offset.reset` (`latest` by default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AutoOffsetReset {
    /// At the partition's first offset.
    Earliest,
    /// At the partition's end: records produced before the assignment are skipped.
    Latest,
}

impl fmt::Display for AutoOffsetReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AutoOffsetReset::Earliest => "earliest",
            AutoOffsetReset::Latest => "latest",
        })
    }
}

/// Why a member left its consumer group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberRemoval {
    /// The consumer closed and sent LeaveGroup.
    Left,
    /// No heartbeat for `session.timeout.ms` (a crash or a frozen process).
    SessionTimeout,
    /// The application did not poll within `max.poll.interval.ms`; librdkafka left the group.
    MaxPollIntervalExceeded,
}

impl fmt::Display for MemberRemoval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberRemoval::Left => "left the group",
            MemberRemoval::SessionTimeout => "session timed out",
            MemberRemoval::MaxPollIntervalExceeded => "exceeded max.poll.interval.ms",
        })
    }
}

/// How far a group's committed offset trails the end of a partition when a run stops.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lag {
    /// The consumer group.
    pub group: String,
    /// The partition.
    pub partition: TopicPartition,
    /// The group's committed offset, if any.
    pub committed: Option<i64>,
    /// The partition's end offset (high watermark).
    pub end: i64,
}

impl Lag {
    /// The `group` of a lag read from the consumer's durable store rather than a consumer
    /// group's committed offsets (`Verifier::progress_from_store`).
    pub const DATABASE: &'static str = "the consumer's database";
}

impl fmt::Display for Lag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.committed {
            Some(c) => write!(
                f,
                "{} {}: committed {c}, end {} (behind by {})",
                self.group,
                self.partition,
                self.end,
                self.end - c
            ),
            None => write!(
                f,
                "{} {}: nothing committed, end {}",
                self.group, self.partition, self.end
            ),
        }
    }
}

/// ` (group "g" generation n)`; a real broker's generation is not known to the kit (-1).
fn write_group(f: &mut fmt::Formatter<'_>, group: &str, generation: i32) -> fmt::Result {
    if generation < 0 {
        write!(f, " (group {group:?})")
    } else {
        write!(f, " (group {group:?} generation {generation})")
    }
}

/// One thing that happened during a run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryEvent {
    /// The instance's factory was called: a process started.
    InstanceStarted,
    /// The instance crashed: its in-memory state is gone and it sends nothing more.
    InstanceCrashed {
        /// What crashed it (the injected fault and where).
        cause: String,
    },
    /// The consumer itself panicked (a bug in the code under test, not an injected crash).
    InstancePanicked {
        /// The panic message.
        message: String,
    },
    /// The consumer's future returned.
    InstanceExited {
        /// The error it returned, if it returned one.
        error: Option<String>,
    },
    /// The instance crashed or failed too often and is not restarted again.
    RestartsExhausted {
        /// How many restarts it had.
        restarts: u32,
    },
    /// A record was appended to a partition.
    RecordProduced {
        /// Where it landed.
        position: RecordPosition,
        /// Its key, lossily decoded as UTF-8 (shared with the record's key when it is valid
        /// UTF-8).
        key: Option<Arc<str>>,
        /// True when this append is librdkafka's internal retry of a send whose acknowledgement
        /// was lost.
        retry: bool,
    },
    /// The broker dropped a retried batch it had already appended (idempotent producer).
    DuplicateDropped {
        /// The copy that was kept.
        original: RecordPosition,
        /// The idempotent producer's id.
        producer_id: i64,
        /// The batch's sequence number.
        sequence: i32,
    },
    /// A produce request returned an error to the application.
    ProduceFailed {
        /// The target partition.
        partition: TopicPartition,
        /// The error the application saw.
        error: String,
        /// Whether the record was appended anyway (an ambiguous failure).
        appended: bool,
    },
    /// `init_transactions`: the coordinator gave the `transactional.id` a producer id and a new
    /// epoch, fencing older instances and aborting their open transaction.
    TransactionsInitialized {
        /// The `transactional.id`.
        transactional_id: String,
        /// Its producer id (stable across instances).
        producer_id: i64,
        /// The new epoch.
        epoch: i16,
    },
    /// A transaction committed: its records became visible to `read_committed` consumers and
    /// its offsets became the groups' committed offsets.
    TransactionCommitted {
        /// The `transactional.id`.
        transactional_id: String,
        /// The partitions it wrote to (each got a commit marker).
        partitions: Vec<TopicPartition>,
        /// The consumer offsets it committed: group, partition, offset.
        offsets: Vec<(String, TopicPartition, i64)>,
    },
    /// A transaction was aborted: its records stay in the log, hidden from `read_committed`
    /// consumers; its offsets were discarded.
    TransactionAborted {
        /// The `transactional.id`.
        transactional_id: String,
        /// The partitions it wrote to (each got an abort marker).
        partitions: Vec<TopicPartition>,
        /// Why: the application aborted, a newer instance fenced it, or it timed out.
        reason: String,
    },
    /// A transactional call returned an error to the application.
    TransactionCallFailed {
        /// The `transactional.id`.
        transactional_id: String,
        /// The call (`commit_transaction`, ...).
        call: String,
        /// The error the application saw.
        error: String,
    },
    /// A consumer joined a group (JoinGroup as a new member).
    MemberJoined {
        /// The group.
        group: String,
        /// The member id the coordinator gave it.
        member: String,
    },
    /// A static member (`group.instance.id`, KIP-345) joined while the coordinator still
    /// held its instance id (a restart within the session): the new member id replaces the
    /// old one and takes over its assignment, without a rebalance unless its subscription
    /// changed; the old member id is fenced.
    StaticMemberReplaced {
        /// The group.
        group: String,
        /// The `group.instance.id`.
        instance_id: String,
        /// The new member id.
        member: String,
        /// The member id it replaced.
        replaced: String,
    },
    /// A static member learnt that a newer member took its `group.instance.id`
    /// (`FENCED_INSTANCE_ID`): librdkafka raised a fatal error; the consumer commits and joins
    /// nothing more.
    StaticMemberFenced {
        /// The group.
        group: String,
        /// The `group.instance.id`.
        instance_id: String,
    },
    /// A static member missed `max.poll.interval.ms`: librdkafka dropped its member id
    /// without a LeaveGroup (KIP-345); its assignment is lost, and it rejoins under its
    /// `group.instance.id`, in its own place unless its session runs out first.
    StaticMemberPollExceeded {
        /// The group.
        group: String,
        /// The `group.instance.id`.
        instance_id: String,
    },
    /// A member left the group or was removed by the coordinator.
    MemberRemoved {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// Why.
        reason: MemberRemoval,
    },
    /// The coordinator started a rebalance: members must rejoin.
    RebalanceStarted {
        /// The group.
        group: String,
        /// The generation being replaced.
        generation: i32,
    },
    /// A rebalance finished: a new generation with a new assignment.
    GenerationStarted {
        /// The group.
        group: String,
        /// The new generation id.
        generation: i32,
        /// The assignor the group chose (`range`, `roundrobin`).
        protocol: String,
        /// Each member's partitions.
        assignment: Vec<(String, Vec<TopicPartition>)>,
    },
    /// A consumer gave up partitions (its pre/post-rebalance callbacks ran around this).
    PartitionsRevoked {
        /// The group.
        group: String,
        /// The revoked partitions.
        partitions: Vec<TopicPartition>,
        /// True when the assignment was lost (the member had already been removed).
        lost: bool,
    },
    /// A consumer took on partitions, starting at these positions.
    PartitionsAssigned {
        /// The group.
        group: String,
        /// The generation (-1 on a real broker: librdkafka does not expose it).
        generation: i32,
        /// Each partition and the offset consumption starts from.
        partitions: Vec<(TopicPartition, i64)>,
        /// The partitions among them that had no committed offset and started where
        /// `auto.offset.reset` put them, as far as the backend knows (the simulator always;
        /// librdkafka's backend when it read the group's committed offsets). The timeline
        /// shows a `latest` reset, which skips the records produced before the assignment.
        resets: Vec<(TopicPartition, AutoOffsetReset)>,
    },
    /// A consumer assigned itself partitions (`assign`, `incremental_assign`), outside any
    /// group rebalance: no join, no callbacks.
    PartitionsAssignedManually {
        /// The consumer's `group.id` (where its commits would go).
        group: String,
        /// Each partition and the offset consumption starts from.
        partitions: Vec<(TopicPartition, i64)>,
    },
    /// A consumer gave up manually assigned partitions (`unassign`, `incremental_unassign`,
    /// or an `assign` that replaced them).
    PartitionsUnassigned {
        /// The consumer's `group.id`.
        group: String,
        /// The partitions it gave up.
        partitions: Vec<TopicPartition>,
    },
    /// `recv` handed a record to the application.
    Delivered {
        /// The record.
        position: RecordPosition,
        /// Its key, lossily decoded as UTF-8 (shared with the record's key when it is valid
        /// UTF-8).
        key: Option<Arc<str>>,
        /// Whether the consumer reads with `isolation.level=read_committed`.
        read_committed: bool,
    },
    /// A fetch response carried a record to a consumer process (seen on the wire: the client
    /// hands it to the application later, or never if the process dies first).
    Fetched {
        /// The record.
        position: RecordPosition,
        /// Its key, lossily decoded as UTF-8.
        key: Option<Arc<str>>,
    },
    /// An offset was stored for the next commit (explicitly, or by `enable.auto.offset.store`).
    OffsetStored {
        /// The partition.
        partition: TopicPartition,
        /// The offset stored (the next offset to consume).
        offset: i64,
    },
    /// The application moved a partition's position (`seek`): the next record it is handed
    /// from the partition is the one at `offset`.
    Seeked {
        /// The partition.
        partition: TopicPartition,
        /// The new position (a logical offset resolved against the partition's watermarks).
        offset: i64,
    },
    /// The application paused (`pause`) or resumed (`resume`) partitions.
    PartitionsPaused {
        /// The partitions.
        partitions: Vec<TopicPartition>,
        /// `true` for `pause`, `false` for `resume`.
        paused: bool,
    },
    /// The coordinator accepted an offset commit.
    OffsetsCommitted {
        /// The group.
        group: String,
        /// The generation the commit was made in.
        generation: i32,
        /// The committed offsets.
        offsets: Vec<(TopicPartition, i64)>,
        /// What triggered the commit.
        kind: CommitKind,
    },
    /// An offset commit was rejected or failed.
    CommitRejected {
        /// The group.
        group: String,
        /// The offsets that were not committed.
        offsets: Vec<(TopicPartition, i64)>,
        /// What triggered the commit.
        kind: CommitKind,
        /// The error.
        error: String,
    },
    /// An effect sink was called.
    Effect {
        /// The sink's name (`email`, `payment`).
        sink: String,
        /// The event the effect is for.
        event_id: String,
        /// The idempotency key the caller passed, if any.
        idempotency_key: Option<String>,
        /// What happened.
        outcome: EffectOutcome,
    },
    /// A durable-store transaction committed.
    StoreCommitted {
        /// What it changed in the rows of the store effects the run was told to watch
        /// (`SimulationBuilder::store_effect`); empty when none changed or none is watched.
        wrote: Vec<StoreRows>,
    },
    /// A durable-store transaction commit failed.
    StoreCommitFailed {
        /// Whether the transaction was in fact committed (an ambiguous failure).
        committed: bool,
        /// When it was committed: what it changed in the watched store effects' rows.
        wrote: Vec<StoreRows>,
    },
    /// A fault from the schedule fired.
    FaultInjected {
        /// The operation it fired on.
        operation: Operation,
        /// The fault.
        fault: Fault,
        /// The record the operation concerned, if any.
        record: Option<RecordPosition>,
    },
    /// The broker is back after a restart ([`Fault::BrokerRestart`](crate::Fault::BrokerRestart)):
    /// requests that waited for it go through.
    BrokerBack,
    /// The run stopped because nothing was left to do: every group had committed the end of
    /// every partition it consumes and nothing happened for the settle period.
    Quiesced,
    /// Every instance stopped for good, so nothing more can happen.
    AllInstancesStopped {
        /// Each group's lag when the last instance stopped.
        lag: Vec<Lag>,
    },
    /// The run hit its time limit before it quiesced (virtual time in a simulated run, wall
    /// time in a black-box one).
    TimeLimitReached {
        /// Each group's lag at that moment.
        lag: Vec<Lag>,
    },
}

fn write_offsets(f: &mut fmt::Formatter<'_>, offsets: &[(TopicPartition, i64)]) -> fmt::Result {
    for (i, (tp, offset)) in offsets.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{tp}={offset}")?;
    }
    Ok(())
}

fn write_partitions(f: &mut fmt::Formatter<'_>, partitions: &[TopicPartition]) -> fmt::Result {
    if partitions.is_empty() {
        return f.write_str("none");
    }
    for (i, tp) in partitions.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{tp}")?;
    }
    Ok(())
}

fn write_lag(f: &mut fmt::Formatter<'_>, lag: &[Lag]) -> fmt::Result {
    let behind: Vec<&Lag> = lag
        .iter()
        .filter(|l| l.committed.unwrap_or(0) < l.end)
        .collect();
    if behind.is_empty() {
        return f.write_str("every partition committed to its end");
    }
    for (i, l) in behind.iter().enumerate() {
        if i > 0 {
            f.write_str("; ")?;
        }
        write!(f, "{l}")?;
    }
    Ok(())
}

fn write_key(f: &mut fmt::Formatter<'_>, key: &Option<Arc<str>>) -> fmt::Result {
    match key {
        Some(k) => write!(f, " key={k:?}"),
        None => Ok(()),
    }
}

impl fmt::Display for HistoryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HistoryEvent::*;
        match self {
            InstanceStarted => f.write_str("started"),
            InstanceCrashed { cause } => write!(f, "CRASHED ({cause})"),
            InstancePanicked { message } => write!(f, "PANICKED: {message}"),
            InstanceExited { error: None } => f.write_str("exited"),
            InstanceExited { error: Some(e) } => write!(f, "exited with error: {e}"),
            BrokerBack => f.write_str("broker is back"),
            RestartsExhausted { restarts } => {
                write!(
                    f,
                    "not restarted again after {restarts} restart{}",
                    if *restarts == 1 { "" } else { "s" }
                )
            }
            RecordProduced {
                position,
                key,
                retry,
            } => {
                write!(f, "produced {position}")?;
                write_key(f, key)?;
                if *retry {
                    f.write_str(" (retry after a lost ack)")?;
                }
                Ok(())
            }
            DuplicateDropped {
                original,
                producer_id,
                sequence,
            } => write!(
                f,
                "broker dropped duplicate batch (producer {producer_id}, sequence {sequence}); kept {original}"
            ),
            ProduceFailed {
                partition,
                error,
                appended,
            } => write!(
                f,
                "produce to {partition} failed: {error}{}",
                if *appended {
                    " (but the record was appended)"
                } else {
                    ""
                }
            ),
            TransactionsInitialized {
                transactional_id,
                producer_id,
                epoch,
            } => write!(
                f,
                "init_transactions {transactional_id:?}: producer {producer_id} epoch {epoch}"
            ),
            TransactionCommitted {
                transactional_id,
                partitions,
                offsets,
            } => {
                write!(f, "transaction {transactional_id:?} committed")?;
                if !partitions.is_empty() {
                    f.write_str(" writes to ")?;
                    write_partitions(f, partitions)?;
                }
                for (group, tp, offset) in offsets {
                    write!(f, ", offset {tp}={offset} for group {group:?}")?;
                }
                Ok(())
            }
            TransactionAborted {
                transactional_id,
                partitions,
                reason,
            } => {
                write!(f, "transaction {transactional_id:?} aborted ({reason})")?;
                if !partitions.is_empty() {
                    f.write_str("; hides its writes to ")?;
                    write_partitions(f, partitions)?;
                }
                Ok(())
            }
            TransactionCallFailed {
                transactional_id,
                call,
                error,
            } => write!(f, "{call} of {transactional_id:?} failed: {error}"),
            MemberJoined { group, member } => write!(f, "joined group {group:?} as {member}"),
            StaticMemberReplaced {
                group,
                instance_id,
                member,
                replaced,
            } => write!(
                f,
                "joined group {group:?} as static member {instance_id:?} ({member}, replacing \
                 {replaced}, whose assignment it keeps)"
            ),
            StaticMemberPollExceeded { group, instance_id } => write!(
                f,
                "max.poll.interval.ms exceeded: static member {instance_id:?} of group \
                 {group:?} dropped its member id without leaving; it rejoins in its place"
            ),
            StaticMemberFenced { group, instance_id } => write!(
                f,
                "fenced: another member of group {group:?} took group.instance.id \
                 {instance_id:?} (FENCED_INSTANCE_ID, a fatal error)"
            ),
            MemberRemoved {
                group,
                member,
                reason,
            } => write!(f, "member {member} of group {group:?} {reason}"),
            RebalanceStarted { group, generation } => {
                write!(
                    f,
                    "group {group:?} rebalancing (generation {generation} ends)"
                )
            }
            GenerationStarted {
                group,
                generation,
                protocol,
                assignment,
            } => {
                write!(f, "group {group:?} generation {generation}")?;
                if assignment.is_empty() {
                    return f.write_str(": no members");
                }
                write!(f, " ({protocol}):")?;
                for (i, (member, partitions)) in assignment.iter().enumerate() {
                    f.write_str(if i == 0 { " " } else { "; " })?;
                    write!(f, "{member} <- ")?;
                    write_partitions(f, partitions)?;
                }
                Ok(())
            }
            PartitionsRevoked {
                group,
                partitions,
                lost,
            } => {
                write!(f, "{} ", if *lost { "lost" } else { "revoked" })?;
                write_partitions(f, partitions)?;
                write!(f, " (group {group:?})")
            }
            PartitionsAssigned {
                group,
                generation,
                partitions,
                resets,
            } => {
                f.write_str("assigned ")?;
                if partitions.is_empty() {
                    f.write_str("none")?;
                }
                for (i, (tp, start)) in partitions.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{tp} from {start}")?;
                    if resets
                        .iter()
                        .any(|(r, how)| r == tp && *how == AutoOffsetReset::Latest)
                    {
                        f.write_str(" (no committed offset: auto.offset.reset=latest)")?;
                    }
                }
                write_group(f, group, *generation)
            }
            PartitionsAssignedManually { group, partitions } => {
                f.write_str("assigned ")?;
                if partitions.is_empty() {
                    f.write_str("none")?;
                }
                for (i, (tp, start)) in partitions.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{tp} from {start}")?;
                }
                write!(f, " (manual, group {group:?})")
            }
            PartitionsUnassigned { group, partitions } => {
                f.write_str("unassigned ")?;
                write_partitions(f, partitions)?;
                write!(f, " (manual, group {group:?})")
            }
            Delivered { position, key, .. } => {
                write!(f, "recv {position}")?;
                write_key(f, key)
            }
            Fetched { position, key } => {
                write!(f, "fetched {position}")?;
                write_key(f, key)
            }
            OffsetStored { partition, offset } => write!(f, "stored offset {partition}={offset}"),
            Seeked { partition, offset } => write!(f, "seek {partition} to {offset}"),
            PartitionsPaused { partitions, paused } => {
                f.write_str(if *paused { "paused " } else { "resumed " })?;
                write_partitions(f, partitions)
            }
            OffsetsCommitted {
                group,
                generation,
                offsets,
                kind,
            } => {
                write!(f, "commit ({kind}) ")?;
                write_offsets(f, offsets)?;
                f.write_str(" ok")?;
                write_group(f, group, *generation)
            }
            CommitRejected {
                group,
                offsets,
                kind,
                error,
            } => {
                write!(f, "commit ({kind}) ")?;
                write_offsets(f, offsets)?;
                write!(f, " REJECTED: {error} (group {group:?})")
            }
            Effect {
                sink,
                event_id,
                idempotency_key,
                outcome,
            } => {
                write!(f, "effect {sink}({event_id})")?;
                if let Some(key) = idempotency_key {
                    write!(f, " idempotency key {key:?}")?;
                }
                write!(f, ": {outcome}")
            }
            StoreCommitted { wrote } => {
                f.write_str("store transaction committed")?;
                write_rows(f, wrote)
            }
            StoreCommitFailed {
                committed: false, ..
            } => f.write_str("store transaction commit failed (rolled back)"),
            StoreCommitFailed {
                committed: true,
                wrote,
            } => {
                f.write_str("store transaction commit reported failed (but committed)")?;
                write_rows(f, wrote)
            }
            FaultInjected {
                operation,
                fault,
                record,
            } => {
                let call = match record {
                    Some(r) => format!("the {operation} of {r}"),
                    None => format!("the {operation}"),
                };
                write!(f, "FAULT: {}", fault.at(&call))
            }
            Quiesced => f.write_str("quiesced"),
            AllInstancesStopped { lag } => {
                f.write_str("every instance stopped: ")?;
                write_lag(f, lag)
            }
            TimeLimitReached { lag } => {
                f.write_str("time limit reached: ")?;
                write_lag(f, lag)
            }
        }
    }
}
