//! Reading an rdkafka `ClientConfig` the way librdkafka does, for the simulated clients.
//!
//! The user builds one `ClientConfig` for production and tests alike; the simulator honours the
//! settings that change delivery semantics, ignores connection settings (`bootstrap.servers`,
//! security), and refuses, with a clear error, settings whose behaviour it does not model.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

use super::assignor::AssignmentStrategy;
use crate::client::partitioner::Partitioner;

/// `auto.offset.reset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OffsetReset {
    Earliest,
    Latest,
    Error,
}

/// `isolation.level` (librdkafka's default: `read_committed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IsolationLevel {
    ReadCommitted,
    ReadUncommitted,
}

/// The consumer settings the simulator honours, with librdkafka's defaults.
#[derive(Clone, Debug)]
pub(crate) struct ConsumerSettings {
    pub group_id: String,
    /// `group.instance.id`: a static member (KIP-345), kept by the coordinator across a
    /// restart within its session.
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub enable_auto_commit: bool,
    pub auto_commit_interval: Duration,
    pub enable_auto_offset_store: bool,
    pub auto_offset_reset: OffsetReset,
    pub session_timeout: Duration,
    pub max_poll_interval: Duration,
    pub strategies: Vec<AssignmentStrategy>,
    pub enable_partition_eof: bool,
    #[allow(dead_code)]
    pub isolation_level: IsolationLevel,
}

/// `acks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acks {
    /// `acks=0`: the producer does not wait; delivery reports carry no offset.
    None,
    /// `acks=1`.
    Leader,
    /// `acks=all` / `-1` (librdkafka's default).
    All,
}

/// The producer settings the simulator honours, with librdkafka's defaults.
#[derive(Clone, Debug)]
pub(crate) struct ProducerSettings {
    /// `transactional.id`: the producer's identity across restarts.
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`: the coordinator aborts a transaction open longer.
    pub transaction_timeout: Duration,
    pub enable_idempotence: bool,
    pub acks: Acks,
    pub partitioner: Partitioner,
    pub retry_backoff: Duration,
    /// How long librdkafka waits for a produce response before it retries.
    pub request_timeout: Duration,
    /// How long librdkafka keeps trying to deliver a message (0: forever).
    pub message_timeout: Duration,
    /// `queue.buffering.max.messages`: records a `BaseProducer` holds (enqueued, in flight, or
    /// with a delivery report not served yet) before `send` says `QueueFull`.
    pub max_queued: usize,
}

fn unsupported(key: &str, value: &str, why: &str) -> KafkaError {
    KafkaError::ClientCreation(format!(
        "effectively-once simulator: `{key}={value}` is not supported: {why}"
    ))
}

fn invalid(key: &str, value: &str, expected: &str) -> KafkaError {
    KafkaError::ClientCreation(format!(
        "effectively-once simulator: invalid value {value:?} for `{key}`: expected {expected}"
    ))
}

/// Refuses what librdkafka's `rd_kafka_conf_set` refuses (an unknown property, such as a typo, or
/// a value of the wrong type or out of range) with the very error rdkafka reports,
/// `KafkaError::ClientConfig`. Properties are checked one at a time in name order, so the error
/// for a configuration with several mistakes is deterministic.
///
/// librdkafka's answer for each property is remembered for the process: every case of a check
/// creates its consumers from the same few settings, and asking librdkafka costs a native
/// configuration each time.
fn validate_with_librdkafka(config: &ClientConfig) -> Result<(), KafkaError> {
    type Answers = HashMap<(String, String), Result<(), KafkaError>>;
    static ANSWERS: OnceLock<Mutex<Answers>> = OnceLock::new();
    let answers = ANSWERS.get_or_init(Mutex::default);
    for (key, value) in config.config_map() {
        let asked = (key.to_string(), value.to_string());
        let known = answers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&asked)
            .cloned();
        let answer = known.unwrap_or_else(|| {
            let mut single = ClientConfig::new();
            single.set(key, value);
            let answer = single.create_native_config().map(drop);
            answers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(asked, answer.clone());
            answer
        });
        answer?;
    }
    Ok(())
}

/// The first of `keys` that is set (librdkafka aliases).
fn get<'a>(config: &'a ClientConfig, keys: &[&'static str]) -> Option<(&'static str, &'a str)> {
    keys.iter()
        .find_map(|key| config.get(key).map(|value| (*key, value.trim())))
}

fn bool_setting(
    config: &ClientConfig,
    keys: &[&'static str],
    default: bool,
) -> Result<bool, KafkaError> {
    match get(config, keys) {
        None => Ok(default),
        Some((key, value)) => match value.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => Ok(true),
            "false" | "f" | "0" => Ok(false),
            _ => Err(invalid(key, value, "true or false")),
        },
    }
}

fn millis_setting(
    config: &ClientConfig,
    keys: &[&'static str],
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, KafkaError> {
    match get(config, keys) {
        None => Ok(Duration::from_millis(default)),
        Some((key, value)) => match value.parse::<u64>() {
            Ok(ms) if range.contains(&ms) => Ok(Duration::from_millis(ms)),
            _ => Err(invalid(
                key,
                value,
                &format!("milliseconds in {}..={}", range.start(), range.end()),
            )),
        },
    }
}

impl ConsumerSettings {
    pub(crate) fn from_config(config: &ClientConfig) -> Result<Self, KafkaError> {
        validate_with_librdkafka(config)?;
        let group_id = match get(config, &["group.id"]) {
            Some((_, g)) if !g.is_empty() => g.to_string(),
            _ => {
                return Err(KafkaError::ClientCreation(
                    "effectively-once simulator: `group.id` must be set: the simulator models \
                     group consumers (subscribe, commit)"
                        .into(),
                ));
            }
        };
        // librdkafka treats an empty `group.instance.id` as a dynamic member.
        let group_instance_id = get(config, &["group.instance.id"])
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty());
        if let Some((key, value)) = get(config, &["group.protocol"]) {
            if value != "classic" {
                return Err(unsupported(
                    key,
                    value,
                    "only the classic group protocol is modelled",
                ));
            }
        }
        let auto_offset_reset = match get(config, &["auto.offset.reset"]) {
            None => OffsetReset::Latest,
            Some((key, value)) => match value {
                "smallest" | "earliest" | "beginning" => OffsetReset::Earliest,
                "largest" | "latest" | "end" => OffsetReset::Latest,
                "error" => OffsetReset::Error,
                _ => return Err(invalid(key, value, "earliest, latest or error")),
            },
        };
        let strategies = match get(config, &["partition.assignment.strategy"]) {
            None => vec![AssignmentStrategy::Range, AssignmentStrategy::RoundRobin],
            Some((key, value)) => {
                let mut strategies = Vec::new();
                for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    match AssignmentStrategy::parse(name) {
                        Some(s) => strategies.push(s),
                        None => {
                            return Err(invalid(
                                key,
                                value,
                                "range, roundrobin, cooperative-sticky",
                            ));
                        }
                    }
                }
                if strategies.is_empty() {
                    return Err(invalid(key, value, "range, roundrobin, cooperative-sticky"));
                }
                let cooperative = strategies.iter().filter(|s| s.is_cooperative()).count();
                if cooperative > 0 && cooperative < strategies.len() {
                    // As librdkafka: one consumer cannot offer both rebalance protocols.
                    return Err(invalid(
                        key,
                        value,
                        "either eager strategies (range, roundrobin) or cooperative-sticky, not both",
                    ));
                }
                strategies
            }
        };
        let isolation_level = match get(config, &["isolation.level"]) {
            None | Some((_, "read_committed")) => IsolationLevel::ReadCommitted,
            Some((_, "read_uncommitted")) => IsolationLevel::ReadUncommitted,
            Some((key, value)) => {
                return Err(invalid(key, value, "read_committed or read_uncommitted"));
            }
        };
        let session_timeout =
            millis_setting(config, &["session.timeout.ms"], 45_000, 1..=3_600_000)?;
        let max_poll_interval =
            millis_setting(config, &["max.poll.interval.ms"], 300_000, 1..=86_400_000)?;
        if max_poll_interval < session_timeout {
            // librdkafka refuses this combination when the client is created.
            return Err(KafkaError::ClientCreation(
                "`max.poll.interval.ms`must be >= `session.timeout.ms`".into(),
            ));
        }
        Ok(ConsumerSettings {
            group_id,
            group_instance_id,
            client_id: get(config, &["client.id"])
                .map_or("rdkafka", |(_, v)| v)
                .to_string(),
            enable_auto_commit: bool_setting(
                config,
                &["enable.auto.commit", "auto.commit.enable"],
                true,
            )?,
            auto_commit_interval: millis_setting(
                config,
                &["auto.commit.interval.ms"],
                5_000,
                0..=86_400_000,
            )?,
            enable_auto_offset_store: bool_setting(config, &["enable.auto.offset.store"], true)?,
            auto_offset_reset,
            session_timeout,
            max_poll_interval,
            strategies,
            enable_partition_eof: bool_setting(config, &["enable.partition.eof"], false)?,
            isolation_level,
        })
    }
}

impl ProducerSettings {
    pub(crate) fn from_config(config: &ClientConfig) -> Result<Self, KafkaError> {
        validate_with_librdkafka(config)?;
        let transactional_id = get(config, &["transactional.id"]).map(|(_, v)| v.to_string());
        // librdkafka: a transactional producer is idempotent.
        let enable_idempotence =
            transactional_id.is_some() || bool_setting(config, &["enable.idempotence"], false)?;
        let acks = match get(config, &["acks", "request.required.acks"]) {
            None => Acks::All,
            Some((key, value)) => match value {
                "all" | "-1" => Acks::All,
                "0" => Acks::None,
                "1" => Acks::Leader,
                other => match other.parse::<i32>() {
                    Ok(n) if (2..=1000).contains(&n) => Acks::All,
                    _ => return Err(invalid(key, value, "all, -1, 0, 1 (or a replica count)")),
                },
            },
        };
        if enable_idempotence && acks != Acks::All {
            return Err(KafkaError::ClientCreation(
                "`acks` must be set to `all` when `enable.idempotence` is true".into(),
            ));
        }
        let partitioner = match get(config, &["partitioner"]) {
            None => Partitioner::ConsistentRandom,
            Some((key, value)) => match Partitioner::parse(value) {
                Some(p) => p,
                None if value.starts_with("fnv1a") => {
                    return Err(unsupported(
                        key,
                        value,
                        "the fnv1a partitioners are not modelled; use consistent_random \
                         (librdkafka's default), consistent, murmur2_random, murmur2 or random",
                    ));
                }
                None => {
                    return Err(invalid(
                        key,
                        value,
                        "consistent_random, consistent, murmur2_random, murmur2 or random",
                    ));
                }
            },
        };
        Ok(ProducerSettings {
            transactional_id,
            transaction_timeout: millis_setting(
                config,
                &["transaction.timeout.ms"],
                60_000,
                1_000..=2_147_483_647,
            )?,
            enable_idempotence,
            acks,
            partitioner,
            retry_backoff: millis_setting(config, &["retry.backoff.ms"], 100, 1..=300_000)?,
            request_timeout: millis_setting(config, &["request.timeout.ms"], 30_000, 1..=900_000)?,
            message_timeout: millis_setting(
                config,
                &["message.timeout.ms", "delivery.timeout.ms"],
                300_000,
                0..=2_147_483_647,
            )?,
            // librdkafka's own range check ran above; only the number is read here.
            max_queued: get(config, &["queue.buffering.max.messages"])
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(100_000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in pairs {
            c.set(*k, *v);
        }
        c
    }

    #[test]
    fn consumer_defaults_are_librdkafkas() {
        let s = ConsumerSettings::from_config(&config(&[("group.id", "g")])).unwrap();
        assert!(s.enable_auto_commit && s.enable_auto_offset_store && !s.enable_partition_eof);
        assert_eq!(s.auto_commit_interval, Duration::from_secs(5));
        assert_eq!(s.session_timeout, Duration::from_secs(45));
        assert_eq!(s.max_poll_interval, Duration::from_secs(300));
        assert_eq!(s.auto_offset_reset, OffsetReset::Latest);
        assert_eq!(
            s.strategies,
            vec![AssignmentStrategy::Range, AssignmentStrategy::RoundRobin]
        );
        assert_eq!(s.client_id, "rdkafka");
    }

    #[test]
    fn bad_and_unmodelled_settings_are_clear_errors() {
        let err = |pairs: &[(&str, &str)]| {
            ConsumerSettings::from_config(&config(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[]).contains("`group.id` must be set"));
        // Values and names librdkafka itself refuses get librdkafka's own error.
        assert!(matches!(
            ConsumerSettings::from_config(&config(&[
                ("group.id", "g"),
                ("enable.auto.commit", "yes please")
            ])),
            Err(KafkaError::ClientConfig(
                rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
                ..
            ))
        ));
        assert!(matches!(
            ProducerSettings::from_config(&config(&[("enable.idempotenc", "true")])),
            Err(KafkaError::ClientConfig(
                rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
                ..
            ))
        ));
        assert!(
            err(&[
                ("group.id", "g"),
                ("partition.assignment.strategy", "range,cooperative-sticky")
            ])
            .contains("not both")
        );
        assert!(
            err(&[
                ("group.id", "g"),
                ("session.timeout.ms", "60000"),
                ("max.poll.interval.ms", "10000")
            ])
            .contains("max.poll.interval.ms")
        );
        let perr = |pairs: &[(&str, &str)]| {
            ProducerSettings::from_config(&config(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(
            perr(&[("enable.idempotence", "true"), ("acks", "1")])
                .contains("`acks` must be set to `all`")
        );
        assert!(perr(&[("partitioner", "fnv1a")]).contains("not modelled"));
        assert!(perr(&[("partitioner", "fnv2")]).contains("partitioner"));
    }
}
