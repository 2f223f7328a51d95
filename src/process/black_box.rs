//! One black-box run: the input written to the broker, the wire proxy and the effect service
//! started, the consumer command's instances started by the supervisor with their addresses in
//! the environment, and the run watched until the group has caught up with its input (or the
//! time limit, or every instance ended for good). What each part recorded is the outcome.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

use super::{
    Callers, ConsumerCommand, EffectFaults, EffectService, EnvTemplate, FiredEffectFault,
    InstanceAddresses, LeftBehind, Life, Malformed, ProcessError, Supervisor, WireEvent,
    WireFaults, WireProxy, environment_of, read_left_behind,
};
use crate::history::{Incarnation, InstanceId};
use crate::ledger::EffectRecord;

/// An input record: the event's id (which the consumer passes to the effect service), its key
/// and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InputEvent {
    pub event_id: String,
    pub key: String,
    pub payload: Vec<u8>,
}

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct BlackBoxCase {
    pub command: ConsumerCommand,
    /// The program's own variables, besides the standard ones.
    pub environment: Vec<EnvTemplate>,
    pub instances: u32,
    /// The topic the input is written to (`KAFKA_TOPIC`); it must exist.
    pub topic: String,
    /// The consumer group the instances are told to use (`KAFKA_GROUP_ID`).
    pub group: String,
    pub events: Vec<InputEvent>,
    /// The topics whose records are effects, read after the run as `read_committed`
    /// consumers read them.
    pub outputs: Vec<String>,
    pub effect_faults: EffectFaults,
    pub wire_faults: WireFaults,
    /// The longest the run may take once the instances started.
    pub time_limit: Duration,
    /// How long nothing may happen after the group caught up before the run is over (late
    /// duplicates show up in it).
    pub settle: Duration,
    /// The pause before a dead instance is started again.
    pub restart_after: Duration,
    /// Where the effect ledger is written.
    pub ledger: PathBuf,
}

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The group committed past every input record and then nothing happened for the settle
    /// period.
    CaughtUp,
    /// Every instance ended for good before the group caught up.
    AllEnded,
    /// The time limit passed before the group caught up.
    TimedOut,
}

/// What the parts recorded.
#[derive(Clone, Debug)]
pub(crate) struct BlackBoxOutcome {
    pub ending: Ending,
    pub attempts: Vec<EffectRecord>,
    pub wire: Vec<WireEvent>,
    pub lives: Vec<Life>,
    pub malformed: Vec<Malformed>,
    /// What the kit's parts could not do (the proxy relay a connection, the supervisor
    /// restart an instance).
    pub problems: Vec<String>,
    /// The end offset of each partition of the topic after the input was written.
    pub ends: BTreeMap<i32, i64>,
    /// Where each input event landed (partition, offset), in input order.
    pub landed: Vec<(i32, i64)>,
    /// The effect faults the effect service fired.
    pub effect_faults_fired: Vec<FiredEffectFault>,
    /// When the kit stopped the instances (the run's end), since its start.
    pub stopped_at: Duration,
    /// What the run left on the broker (read only when the case has output topics).
    pub left_behind: LeftBehind,
}

/// The supervisor, once started: the effect service and the proxy start before it (its
/// instances need their addresses) and kill through it.
#[derive(Default)]
struct LateSupervisor(OnceLock<Arc<Supervisor>>);

impl Callers for LateSupervisor {
    fn incarnation(&self, instance: InstanceId) -> Incarnation {
        match self.0.get() {
            Some(s) => s.incarnation(instance),
            None => Incarnation {
                instance,
                number: 1,
            },
        }
    }

    fn kill(&self, instance: InstanceId) {
        if let Some(s) = self.0.get() {
            s.kill(instance);
        }
    }
}

/// Runs `case` against the broker at `bootstrap`.
pub(crate) fn run_black_box(
    case: &BlackBoxCase,
    bootstrap: &str,
) -> Result<BlackBoxOutcome, ProcessError> {
    let (ends, landed) = write_input(case, bootstrap)?;
    let t0 = Instant::now();
    let callers = Arc::new(LateSupervisor::default());
    let service = EffectService::start(
        t0,
        case.instances,
        &case.ledger,
        case.effect_faults.clone(),
        callers.clone(),
    )?;
    let proxy = WireProxy::start(
        t0,
        case.instances,
        bootstrap,
        case.wire_faults.clone(),
        callers.clone(),
    )?;
    let environment = |i: InstanceId| {
        let at = InstanceAddresses {
            bootstrap: proxy.bootstrap(i),
            effects_url: service.url(i).trim_end_matches('/').to_string(),
            instance: i.0,
            topic: case.topic.clone(),
            group: case.group.clone(),
        };
        environment_of(&at, &case.environment)
    };
    let supervisor = Arc::new(Supervisor::start(
        t0,
        &case.command,
        case.instances,
        environment,
        case.restart_after,
        MAX_RESTARTS,
    )?);
    let _ = callers.0.set(supervisor.clone());
    let ending = watch(case, &ends, &proxy, &service, &supervisor);
    let stopped_at = t0.elapsed();
    supervisor.stop();
    let left_behind = if case.outputs.is_empty() {
        LeftBehind::default()
    } else {
        read_left_behind(bootstrap, &case.outputs, &case.group, &case.topic)?
    };
    Ok(BlackBoxOutcome {
        ending,
        attempts: service.attempts()?,
        wire: proxy.log(),
        lives: supervisor.lives(),
        malformed: service.malformed(),
        problems: proxy
            .problems()
            .into_iter()
            .chain(
                supervisor
                    .failed()
                    .map(|e| format!("restarting an instance: {e}")),
            )
            .collect(),
        ends,
        landed,
        effect_faults_fired: service.fired(),
        stopped_at,
        left_behind,
    })
}

/// How often a crashed instance is started again at most (the simulator's limit too).
const MAX_RESTARTS: u32 = 50;

/// Waits until the group caught up and stayed quiet for the settle period, every instance
/// ended, or the time limit passed.
fn watch(
    case: &BlackBoxCase,
    ends: &BTreeMap<i32, i64>,
    proxy: &WireProxy,
    service: &EffectService,
    supervisor: &Supervisor,
) -> Ending {
    let deadline = Instant::now() + case.time_limit;
    let mut last_activity = (0, 0);
    let mut quiet_since = Instant::now();
    loop {
        let wire = proxy.log();
        let attempts = service.attempts().map_or(0, |a| a.len());
        let activity = (
            wire.iter()
                .filter(|e| !matches!(e, WireEvent::Request { .. }))
                .count(),
            attempts,
        );
        if activity != last_activity {
            last_activity = activity;
            quiet_since = Instant::now();
        }
        if caught_up(&wire, &case.group, &case.topic, ends) && quiet_since.elapsed() >= case.settle
        {
            return Ending::CaughtUp;
        }
        if supervisor.all_ended() {
            return Ending::AllEnded;
        }
        if Instant::now() >= deadline {
            return Ending::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `group`'s latest successful commit of each partition of `topic` is at its end.
fn caught_up(wire: &[WireEvent], group: &str, topic: &str, ends: &BTreeMap<i32, i64>) -> bool {
    let committed = committed_offsets(wire, group, topic);
    ends.iter()
        .all(|(p, end)| *end == 0 || committed.get(p).is_some_and(|c| c >= end))
}

/// `group`'s latest successful commit of each partition of `topic`, as the wire showed it:
/// an OffsetCommit the broker accepted, or offsets sent to a transaction that then committed.
pub(crate) fn committed_offsets(
    wire: &[WireEvent],
    group: &str,
    topic: &str,
) -> BTreeMap<i32, i64> {
    let mut committed = BTreeMap::new();
    // Offsets taken into each open transaction, by `transactional.id`.
    let mut pending: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for e in wire {
        match e {
            WireEvent::Committed {
                group: g,
                topic: t,
                partition,
                offset,
                error: 0,
                ..
            } if g == group && t == topic => {
                committed.insert(*partition, *offset);
            }
            WireEvent::TxnOffsets {
                transactional_id,
                group: g,
                offsets,
                ..
            } if g == group => {
                pending.entry(transactional_id).or_default().extend(
                    offsets
                        .iter()
                        .filter(|(t, _, _)| t == topic)
                        .map(|(_, p, o)| (*p, *o)),
                );
            }
            // An end the broker refused leaves the transaction open (librdkafka retries it).
            WireEvent::TxnEnded {
                transactional_id,
                committed: commit,
                error: 0,
                ..
            } => {
                let taken = pending
                    .remove(transactional_id.as_str())
                    .unwrap_or_default();
                if *commit {
                    committed.extend(taken);
                }
            }
            _ => {}
        }
    }
    committed
}

/// Where the input record of an index landed (partition, offset), or why it did not.
type Landed = (usize, Result<(i32, i64), String>);

/// Collects where each input record landed.
#[derive(Default)]
struct Landing(Mutex<Vec<Landed>>);

impl ClientContext for Landing {}

impl ProducerContext for Landing {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, index: Self::DeliveryOpaque) {
        let landed = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((*index, landed));
    }
}

/// Where each input event landed, and each partition's end offset.
type Written = (BTreeMap<i32, i64>, Vec<(i32, i64)>);

/// Writes the input straight to the broker; where each event landed and each partition's end
/// offset.
fn write_input(case: &BlackBoxCase, bootstrap: &str) -> Result<Written, ProcessError> {
    let broker = |what: &str, e: &dyn std::fmt::Display| {
        ProcessError::Broker(format!("{what} at {bootstrap}: {e}"))
    };
    let producer: ThreadedProducer<Landing> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create_with_context(Landing::default())
        .map_err(|e| broker("could not create the input producer", &e))?;
    for (i, e) in case.events.iter().enumerate() {
        producer
            .send(
                BaseRecord::with_opaque_to(&case.topic, Box::new(i))
                    .key(e.key.as_bytes())
                    .payload(&e.payload),
            )
            .map_err(|(err, _)| broker("could not write the input", &err))?;
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| broker("could not write the input", &e))?;
    let mut delivered = std::mem::take(
        &mut *producer
            .context()
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    delivered.sort_by_key(|(i, _)| *i);
    let mut landed = Vec::new();
    for (_, result) in delivered {
        landed.push(result.map_err(|e| broker("could not write the input", &e))?);
    }
    if landed.len() != case.events.len() {
        return Err(broker(
            "could not write the input",
            &format!(
                "{} of {} records acknowledged",
                landed.len(),
                case.events.len()
            ),
        ));
    }
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| broker("could not read the topic's end offsets", &e))?;
    let partitions = super::left_behind::partitions(&reader, &case.topic)
        .map_err(|e| broker("could not read the topic's metadata", &e))?;
    if partitions.is_empty() {
        return Err(ProcessError::Broker(format!(
            "the topic {:?} does not exist at {bootstrap}",
            case.topic
        )));
    }
    let mut ends = BTreeMap::new();
    for p in partitions {
        let (_, high) = reader
            .fetch_watermarks(&case.topic, p, Duration::from_secs(10))
            .map_err(|e| broker("could not read the topic's end offsets", &e))?;
        ends.insert(p, high);
    }
    Ok((ends, landed))
}
