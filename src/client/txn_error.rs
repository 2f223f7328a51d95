//! librdkafka's transactional errors, taken from librdkafka itself.
//!
//! rdkafka's transactional calls fail with `KafkaError::Transaction(RDKafkaError)`, whose
//! flags (`is_fatal`, `txn_requires_abort`, `is_retriable`) decide what the application does
//! next. `RDKafkaError` cannot be built outside rdkafka, so the simulator drives a real
//! transactional producer against librdkafka's in-process mock cluster into each situation
//! once per process, and hands out the errors librdkafka raised: same codes, same flags, same
//! messages.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

/// A transactional failure the simulator reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TxnError {
    /// A newer instance with the same `transactional.id` bumped the epoch (fatal: the
    /// producer is unusable).
    Fenced,
    /// The coordinator refused the request in its transaction state, as after an abort of a
    /// transaction that had committed (fatal).
    InvalidTxnState,
    /// `commit_transaction` timed out (abortable: the application must abort; whether the
    /// commit was applied is unknown).
    CommitTimedOut,
    /// `send_offsets_to_transaction` with the group metadata of a consumer that is no longer
    /// in the group's current generation (KIP-447's zombie fencing; abortable).
    StaleGeneration,
    /// A transactional call outside the state it needs (before `init_transactions`, without
    /// an open transaction, `begin_transaction` twice).
    State(TxnPhase),
    /// A transactional call on a producer without a `transactional.id` (librdkafka:
    /// `_NOT_CONFIGURED`, neither fatal nor abortable).
    NotConfigured,
}

/// The producer's transactional state, as librdkafka names it in its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TxnPhase {
    /// Before `init_transactions`.
    Init,
    /// Initialised, no transaction open.
    Ready,
    /// A transaction is open.
    InTransaction,
}

impl std::fmt::Display for TxnError {
    /// A stable description for the history (librdkafka's messages name the probe's broker
    /// address, which differs between processes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxnError::Fenced => f.write_str("producer fenced (fatal)"),
            TxnError::InvalidTxnState => f.write_str("invalid transaction state (fatal)"),
            TxnError::CommitTimedOut => {
                f.write_str("commit timed out (abortable; the outcome is unknown)")
            }
            TxnError::StaleGeneration => f.write_str(
                "the consumer's group generation is stale: illegal generation (abortable)",
            ),
            TxnError::State(phase) => write!(f, "operation not valid in state {phase:?}"),
            TxnError::NotConfigured => {
                f.write_str("the transactional API requires transactional.id to be configured")
            }
        }
    }
}

fn captured() -> &'static Mutex<BTreeMap<TxnError, KafkaError>> {
    static CAPTURED: OnceLock<Mutex<BTreeMap<TxnError, KafkaError>>> = OnceLock::new();
    CAPTURED.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Where the probe's messages differ between processes, with the stable text for each: the
/// whole message as librdkafka wrote it, and as the kit records it.
fn rewrites() -> &'static Mutex<Vec<(String, String)>> {
    static REWRITES: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    REWRITES.get_or_init(|| Mutex::new(Vec::new()))
}

/// The name the probe's broker goes by in recorded text.
const PROBE_BROKER: &str = "kit-probe:9092";

/// `message` (from the probe on `address`) without what differs between processes: the
/// broker's address (a random port) and how long the request took (`" (after 3ms)"`).
fn stable_message(message: &str, address: &str) -> String {
    let mut stable = message.replace(address, PROBE_BROKER);
    if let Some(start) = stable.rfind(" (after ") {
        if let Some(len) = stable[start..].find("ms)") {
            stable.replace_range(start..start + len + "ms)".len(), "");
        }
    }
    stable
}

/// `text` (an error the application reported, which may quote the errors the simulator handed
/// it) with each of the probe's messages replaced by its stable form, so that the same run
/// reads the same in every process.
pub(crate) fn stable_text(text: String) -> String {
    let rewrites = rewrites().lock().unwrap_or_else(|e| e.into_inner());
    rewrites.iter().fold(text, |text, (from, to)| {
        if text.contains(from.as_str()) {
            text.replace(from.as_str(), to)
        } else {
            text
        }
    })
}

/// The `KafkaError` librdkafka returns for `error`.
pub(crate) fn kafka_error(error: TxnError) -> KafkaError {
    let mut cache = captured().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = cache.get(&error) {
        return e.clone();
    }
    let e = capture(error).map(|(e, address)| {
        let message = match &e {
            KafkaError::Transaction(inner) => inner.string(),
            other => other.to_string(),
        };
        let stable = stable_message(&message, &address);
        if stable != message {
            rewrites()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((message, stable));
        }
        e
    });
    let e = e.unwrap_or_else(|why| {
        tracing::warn!(
            target: "effectively_once::sim",
            "could not obtain librdkafka's error for {error:?} ({why}); using a local stand-in"
        );
        stand_in(error)
    });
    cache.insert(error, e.clone());
    e
}

/// What the application sees if librdkafka's own error cannot be captured (the code is right;
/// the flags cannot be set from outside rdkafka).
fn stand_in(error: TxnError) -> KafkaError {
    KafkaError::MessageProduction(match error {
        TxnError::Fenced => RDKafkaErrorCode::Fenced,
        TxnError::InvalidTxnState => RDKafkaErrorCode::InvalidTransactionalState,
        TxnError::CommitTimedOut => RDKafkaErrorCode::RequestTimedOut,
        TxnError::StaleGeneration => RDKafkaErrorCode::IllegalGeneration,
        TxnError::State(_) => RDKafkaErrorCode::State,
        TxnError::NotConfigured => RDKafkaErrorCode::NotConfigured,
    })
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Drives a transactional producer on a fresh mock cluster into `error`'s situation; the
/// error, and the cluster's address.
fn capture(error: TxnError) -> Result<(KafkaError, String), String> {
    let mock = MockCluster::new(1).map_err(|e| e.to_string())?;
    let address = mock.bootstrap_servers();
    drive(&mock, error).map(|e| (e, address))
}

fn drive(
    mock: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    error: TxnError,
) -> Result<KafkaError, String> {
    if error == TxnError::NotConfigured {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("log_level", "0")
            .create()
            .map_err(|e| e.to_string())?;
        return producer
            .init_transactions(TIMEOUT)
            .err()
            .ok_or_else(|| "librdkafka did not fail init_transactions without an id".into());
    }
    mock.create_topic("effectively-once-probe", 1, 1)
        .map_err(|e| e.to_string())?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("transactional.id", "effectively-once-probe")
        .set("log_level", "0")
        .create()
        .map_err(|e| e.to_string())?;
    let unexpected = |what: &str| format!("librdkafka did not fail {what}");
    if error == TxnError::State(TxnPhase::Init) {
        return producer
            .begin_transaction()
            .err()
            .ok_or_else(|| unexpected("begin_transaction before init_transactions"));
    }
    producer
        .init_transactions(TIMEOUT)
        .map_err(|e| e.to_string())?;
    if error == TxnError::State(TxnPhase::Ready) {
        return producer
            .commit_transaction(TIMEOUT)
            .err()
            .ok_or_else(|| unexpected("commit_transaction without a transaction"));
    }
    producer.begin_transaction().map_err(|e| e.to_string())?;
    if error == TxnError::State(TxnPhase::InTransaction) {
        return producer
            .begin_transaction()
            .err()
            .ok_or_else(|| unexpected("begin_transaction twice"));
    }
    producer
        .send(BaseRecord::<(), str>::to("effectively-once-probe").payload("probe"))
        .map_err(|(e, _)| e.to_string())?;
    producer.flush(TIMEOUT).map_err(|e| e.to_string())?;
    if error == TxnError::StaleGeneration {
        // A consumer that has not joined yet: its metadata carries the group id only.
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "effectively-once-probe")
            .set("log_level", "0")
            .create()
            .map_err(|e| e.to_string())?;
        let metadata = consumer
            .group_metadata()
            .ok_or("the probe consumer has no group metadata")?;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("effectively-once-probe", 0, Offset::Offset(1))
            .map_err(|e| e.to_string())?;
        mock.request_errors(
            RDKafkaApiKey::TxnOffsetCommit,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION; 8],
        );
        return producer
            .send_offsets_to_transaction(&offsets, &metadata, TIMEOUT)
            .err()
            .ok_or_else(|| unexpected("send_offsets_to_transaction on ILLEGAL_GENERATION"));
    }
    let code = match error {
        TxnError::Fenced => RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
        TxnError::InvalidTxnState => RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE,
        TxnError::CommitTimedOut => RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        TxnError::State(_) | TxnError::StaleGeneration | TxnError::NotConfigured => {
            unreachable!("handled above")
        }
    };
    // librdkafka retries some errors: answer every attempt with the same one.
    mock.request_errors(RDKafkaApiKey::EndTxn, &[code; 8]);
    producer
        .commit_transaction(TIMEOUT)
        .err()
        .ok_or_else(|| unexpected("commit_transaction on an injected EndTxn error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [TxnError; 8] = [
        TxnError::Fenced,
        TxnError::InvalidTxnState,
        TxnError::CommitTimedOut,
        TxnError::StaleGeneration,
        TxnError::State(TxnPhase::Init),
        TxnError::State(TxnPhase::Ready),
        TxnError::State(TxnPhase::InTransaction),
        TxnError::NotConfigured,
    ];

    fn flags(error: TxnError) -> (RDKafkaErrorCode, bool, bool) {
        match kafka_error(error) {
            KafkaError::Transaction(e) => (e.code(), e.is_fatal(), e.txn_requires_abort()),
            other => panic!("not librdkafka's transactional error: {other:?}"),
        }
    }

    #[test]
    fn the_errors_are_librdkafkas_own_with_its_flags() {
        assert_eq!(
            flags(TxnError::Fenced),
            (RDKafkaErrorCode::Fenced, true, false)
        );
        assert_eq!(
            flags(TxnError::InvalidTxnState),
            (RDKafkaErrorCode::InvalidTransactionalState, true, false)
        );
        assert_eq!(
            flags(TxnError::CommitTimedOut),
            (RDKafkaErrorCode::RequestTimedOut, false, true)
        );
        assert_eq!(
            flags(TxnError::StaleGeneration),
            (RDKafkaErrorCode::IllegalGeneration, false, true)
        );
        for phase in [TxnPhase::Init, TxnPhase::Ready, TxnPhase::InTransaction] {
            assert_eq!(
                flags(TxnError::State(phase)),
                (RDKafkaErrorCode::State, false, false),
                "{phase:?}"
            );
        }
        assert_eq!(
            flags(TxnError::NotConfigured),
            (RDKafkaErrorCode::NotConfigured, false, false)
        );
        for error in ALL {
            println!("{error:?}: {}", kafka_error(error));
        }
    }
}
