//! The operations a consumer performs that the kit intercepts, and the faults it can inject
//! there: the vocabulary of fault schedules and of the history's fault entries.

use std::fmt;
use std::time::Duration;

/// An interception point: a kind of operation a consumer instance performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `recv` handing a record to the application. The record is the one being delivered.
    Recv,
    /// `commit_message`. The record is the message being committed.
    CommitMessage,
    /// `store_offset_from_message` / `store_offset`. The record is the one whose offset is stored.
    StoreOffset,
    /// `commit` / `commit_consumer_state`. The record is the last one the instance received.
    Commit,
    /// librdkafka's periodic auto-commit. The record is the last one the instance received.
    AutoCommit,
    /// A producer `send`. The record is the last one the instance received (the input being
    /// processed), not the record being produced.
    Send,
    /// An effect-sink call. The record is the last one the instance received.
    Effect,
    /// A durable-store transaction commit. The record is the last one the instance received.
    StoreCommit,
    /// A transactional producer's `init_transactions`. The record is the last one the
    /// instance received (none at startup).
    InitTransactions,
    /// `begin_transaction`. The record is the last one the instance received.
    BeginTransaction,
    /// `send_offsets_to_transaction`. The record is the last one the instance received.
    SendOffsetsToTransaction,
    /// `commit_transaction`. A failure is librdkafka's abortable timeout; an ambiguous one
    /// commits and still returns it. The record is the last one the instance received.
    CommitTransaction,
    /// `abort_transaction`. The record is the last one the instance received.
    AbortTransaction,
    /// `seek` / `seek_partitions` (one interception per call). The record is the last one the
    /// instance received.
    Seek,
    /// A `BaseProducer`'s `flush`: the records enqueued are delivered and their reports served
    /// inside it. The record is the last one the instance received.
    Flush,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 15] = [
        Operation::Recv,
        Operation::CommitMessage,
        Operation::StoreOffset,
        Operation::Commit,
        Operation::AutoCommit,
        Operation::Send,
        Operation::Effect,
        Operation::StoreCommit,
        Operation::InitTransactions,
        Operation::BeginTransaction,
        Operation::SendOffsetsToTransaction,
        Operation::CommitTransaction,
        Operation::AbortTransaction,
        Operation::Seek,
        Operation::Flush,
    ];

    /// Whether `fault` means something on this operation.
    ///
    /// Delays (`Stall`, `Freeze`) need an asynchronous call to wait in; `Ambiguous` needs an
    /// operation that can be applied while its caller is told it failed; `LoseAck` needs a
    /// producer; of the transactional calls only `commit_transaction` can fail (crashes
    /// around the others are supported), a seek and a flush only crash; a broker restart needs a request to the broker
    /// that the application makes itself (`recv`, an explicit commit, `send`).
    pub fn supports(self, fault: Fault) -> bool {
        use Operation::*;
        match fault {
            Fault::CrashBefore | Fault::CrashAfter => true,
            Fault::Fail => !matches!(
                self,
                InitTransactions
                    | BeginTransaction
                    | SendOffsetsToTransaction
                    | AbortTransaction
                    | Seek
                    | Flush
            ),
            Fault::Ambiguous => matches!(
                self,
                CommitMessage
                    | Commit
                    | AutoCommit
                    | Send
                    | Effect
                    | StoreCommit
                    | CommitTransaction
            ),
            Fault::LoseAck => self == Send,
            Fault::Stall(_) | Fault::Freeze(_) => matches!(self, Recv | Send | Effect),
            Fault::BrokerRestart(_) => matches!(self, Recv | CommitMessage | Commit | Send),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Recv => "recv",
            Operation::CommitMessage => "commit_message",
            Operation::StoreOffset => "store_offset",
            Operation::Commit => "commit",
            Operation::AutoCommit => "auto-commit",
            Operation::Send => "send",
            Operation::Effect => "effect",
            Operation::StoreCommit => "store commit",
            Operation::InitTransactions => "init_transactions",
            Operation::BeginTransaction => "begin_transaction",
            Operation::SendOffsetsToTransaction => "send_offsets_to_transaction",
            Operation::CommitTransaction => "commit_transaction",
            Operation::AbortTransaction => "abort_transaction",
            Operation::Seek => "seek",
            Operation::Flush => "flush",
        })
    }
}

/// What happens at an interception point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The instance crashes before the operation takes effect. Nothing more is sent: no
    /// LeaveGroup, no final commit; the group notices after `session.timeout.ms`.
    CrashBefore,
    /// The operation takes effect, then the instance crashes before the caller sees the result.
    CrashAfter,
    /// The operation does not take effect and the caller gets an error (a definite failure).
    Fail,
    /// The operation takes effect but the caller gets an error (a timeout after the work was
    /// done): commit applied but reported failed, effect performed but reported failed.
    Ambiguous,
    /// A produce request is appended but its acknowledgement is lost, so librdkafka retries
    /// it: without `enable.idempotence` the retry appends a duplicate; with it the broker
    /// drops the duplicate. The application sees success.
    LoseAck,
    /// The call takes this long (virtual time) while the process stays alive and keeps
    /// heartbeating: a slow effect can breach `max.poll.interval.ms`.
    Stall(Duration),
    /// The whole process freezes for this long (a GC pause, SIGSTOP), right at the call,
    /// before it proceeds: nothing of the instance runs until the thaw (its task and those it
    /// spawned through [`InstanceContext::spawn`](crate::InstanceContext::spawn), their
    /// timers, effects, commits, sends), then its expired timers fire as after SIGCONT.
    /// Heartbeats stop too, so the member can be removed after `session.timeout.ms`.
    Freeze(Duration),
    /// The broker restarts just before this request reaches it and is unreachable for this
    /// long; its log, committed offsets, groups and transactions survive (durable storage).
    /// Every consumer's next `recv` returns a transport error (librdkafka reports the lost
    /// connections through the poll); a `recv` anchored here hands out nothing; fetches,
    /// produce requests and rebalances wait for the broker; a synchronous commit blocks and
    /// succeeds when it is back, unless the outage outlasts the member's
    /// `session.timeout.ms`: then the member's session is lost (its partitions are revoked as
    /// lost, it rejoins) and the commit fails with `WaitingForCoordinator`.
    BrokerRestart(Duration),
}

impl Fault {
    /// How long the fault holds things up: a stall, a freeze or a broker outage lasts its
    /// duration; every other fault takes no time.
    pub fn pause(self) -> Duration {
        match self {
            Fault::Stall(d) | Fault::Freeze(d) | Fault::BrokerRestart(d) => d,
            _ => Duration::ZERO,
        }
    }

    /// The fault striking `call` (`the effect`, `the 2nd recv`), in words: `crash after the
    /// effect`, `the 2nd recv fails`.
    pub(crate) fn at(self, call: &str) -> String {
        match self {
            Fault::CrashBefore => format!("crash before {call}"),
            Fault::CrashAfter => format!("crash after {call}"),
            Fault::Fail => format!("{call} fails"),
            Fault::Ambiguous => format!("{call} is applied but reported failed"),
            Fault::LoseAck => format!("{call} loses its ack (the producer retries it)"),
            Fault::Stall(d) => format!("{call} stalls for {}", human_duration(d)),
            Fault::Freeze(d) => format!("the process freezes for {} at {call}", human_duration(d)),
            Fault::BrokerRestart(d) => format!(
                "the broker restarts at {call} (down for {})",
                human_duration(d)
            ),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::CrashBefore => f.write_str("crash before"),
            Fault::CrashAfter => f.write_str("crash after"),
            Fault::Fail => f.write_str("fail"),
            Fault::Ambiguous => f.write_str("applied but reported failed"),
            Fault::LoseAck => f.write_str("lose the ack"),
            Fault::Stall(d) => write!(f, "stall {}", human_duration(*d)),
            Fault::Freeze(d) => write!(f, "freeze the process {}", human_duration(*d)),
            Fault::BrokerRestart(d) => {
                write!(f, "restart the broker (down {})", human_duration(*d))
            }
        }
    }
}

/// `25h`, `60s`, `1500ms`: the largest whole unit.
pub(crate) fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms > 0 && ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms > 0 && ms % 60_000 == 0 && ms < 3_600_000 {
        format!("{}min", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
