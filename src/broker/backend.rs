//! A real broker as the run's backend: librdkafka's clients against the mock cluster, a
//! container or an external cluster, in real time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaResult;
use tokio::time::Instant;

use super::base_producer::BrokerBaseProducer;
use super::consumer::BrokerConsumer;
use super::native::NativeClient;
use super::producer::BrokerProducer;
use super::session::BrokerSession;
use super::switch::BrokerSwitch;
use crate::client::RebalanceHandler;
use crate::error::Error;
use crate::history::{
    ClusterSnapshot, HistoryEvent, Incarnation, Lag, LoggedRecord, RecordPosition, TopicPartition,
};
use crate::history::{Operation, key_text};
use crate::run::backend::{
    Backend, BaseProducerClient, ConsumerClient, InputWrite, LocalBoxFuture, ProducerClient,
};
use crate::run::core::{Crashed, Run, RunEvent};
use crate::run::fault_plan::Injection;
use crate::run::store_progress::{Progress, STORE_PROGRESS};

/// How long nothing may happen before a real-broker run counts as quiesced.
const BROKER_SETTLE: Duration = Duration::from_secs(1);
/// How often a real-broker run looks at the groups' lag.
const BROKER_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The run's real broker.
pub(crate) struct BrokerBackend {
    shared: Arc<BrokerShared>,
}

/// What the backend and its clients share: the run, the broker, and what the run has done to
/// the broker.
pub(crate) struct BrokerShared {
    pub run: Arc<Run>,
    pub session: Arc<BrokerSession>,
    /// Takes the broker down and back for a restart fault (the brokers the kit started).
    switch: Option<BrokerSwitch>,
    /// Why the broker cannot play static group membership (its self-check's shortfall), if
    /// it cannot: consumers with a `group.instance.id` are refused then.
    pub static_members_shortfall: Option<String>,
    state: Mutex<State>,
    /// The librdkafka handles of each incarnation's clients, destroyed as a killed process
    /// leaves them when it dies.
    handles: Mutex<Handles>,
}

#[derive(Default)]
struct Handles {
    live: Vec<(Incarnation, NativeClient)>,
    /// Handles of dead incarnations, destroyed once no lock is held (a handle in use right
    /// now, by a crash inside one of its callbacks, is destroyed at the next reaction).
    doomed: Vec<NativeClient>,
}

#[derive(Default)]
struct State {
    /// While the broker restarts: when it is back.
    down_until: Option<Instant>,
    /// The input as it was written, per partition, with its transaction markers: the
    /// broker's `read_committed` readers are not trusted to tell aborted records apart (see
    /// the self-check).
    written: BTreeMap<TopicPartition, Vec<LoggedRecord>>,
}

impl BrokerBackend {
    pub(crate) fn new(
        run: Arc<Run>,
        bootstrap: String,
        switch: Option<BrokerSwitch>,
        static_members_shortfall: Option<String>,
        max_session_timeout: Duration,
    ) -> Self {
        BrokerBackend {
            shared: Arc::new(BrokerShared {
                run,
                session: Arc::new(BrokerSession::new(bootstrap, max_session_timeout)),
                switch,
                static_members_shortfall,
                state: Mutex::new(State::default()),
                handles: Mutex::new(Handles::default()),
            }),
        }
    }
}

impl BrokerShared {
    /// A dead incarnation's librdkafka handles are destroyed as a killed process leaves them;
    /// a restart takes the broker down. (Freezes are refused on brokers.)
    pub(crate) fn react(&self) {
        let events = self.run.lock().take_events();
        for event in events {
            match event {
                RunEvent::BrokerRestart(down) => {
                    let until = Instant::now() + down;
                    let mut state = self.state();
                    state.down_until = Some(state.down_until.map_or(until, |u| u.max(until)));
                    if let Some(switch) = &self.switch {
                        switch.restart(down);
                    }
                }
                RunEvent::ClientsGone(incarnation) => {
                    let mut handles = self.handles();
                    let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut handles.live)
                        .into_iter()
                        .partition(|(i, _)| *i == incarnation);
                    handles.live = live;
                    handles.doomed.extend(dead.into_iter().map(|(_, c)| c));
                }
                RunEvent::Frozen(_) => {}
            }
        }
        let doomed = std::mem::take(&mut self.handles().doomed);
        let busy: Vec<NativeClient> = doomed.into_iter().filter(|c| !c.kill()).collect();
        self.handles().doomed.extend(busy);
    }

    /// Registers a client's librdkafka handle, destroyed when its incarnation dies.
    pub(crate) fn register(&self, incarnation: Incarnation, client: NativeClient) {
        self.handles().live.push((incarnation, client));
    }

    /// The run's interception step for a call of a librdkafka client, anchored on `anchor` or
    /// else on the record the incarnation handles; the backend reacts and the run publishes.
    pub(crate) fn intercept(
        &self,
        operation: Operation,
        incarnation: Incarnation,
        anchor: Option<RecordPosition>,
    ) -> Result<Injection, Crashed> {
        let injection = {
            let mut run = self.run.lock();
            let anchor = anchor.or_else(|| run.current_record(incarnation));
            run.intercept_call(operation, incarnation, anchor.as_ref(), &operation)
        };
        self.publish();
        injection
    }

    /// The end of the run's interception step for the call `what`.
    pub(crate) fn complete(
        &self,
        injection: &Injection,
        incarnation: Incarnation,
        what: &dyn std::fmt::Display,
    ) -> Result<(), Crashed> {
        let completed = self.run.lock().complete_call(injection, incarnation, what);
        self.publish();
        completed
    }

    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Carries out what the run did ([`react`](Self::react)), then publishes the run's changes.
    pub(crate) fn publish(&self) {
        self.react();
        self.run.publish();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes a written input record (and its transaction's marker) where it landed.
    fn note_written(&self, input: &InputWrite, at: &RecordPosition) {
        let mut state = self.state();
        let log = state.written.entry(at.topic_partition()).or_default();
        log.push(LoggedRecord {
            offset: at.offset,
            key: input.key.as_deref().map(<[u8]>::to_vec),
            payload: input.payload.as_deref().map(<[u8]>::to_vec),
            control: false,
            aborted: input.transaction == Some(false),
            open: false,
        });
        if input.transaction.is_some() {
            log.push(LoggedRecord {
                offset: at.offset + 1,
                key: None,
                payload: None,
                control: true,
                aborted: false,
                open: false,
            });
        }
    }
}

impl Backend for BrokerBackend {
    fn react(&self) {
        self.shared.react();
    }

    /// What is left of the clients dies as a killed process would.
    fn finish(&self) {
        let Handles { live, doomed } = std::mem::take(&mut *self.shared.handles());
        let left = doomed.into_iter().chain(live.into_iter().map(|(_, c)| c));
        for client in left {
            while !client.kill() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    fn write_input<'a>(
        &'a self,
        records: Vec<InputWrite>,
    ) -> LocalBoxFuture<'a, Result<Vec<RecordPosition>, Error>> {
        Box::pin(async move {
            let positions = self.shared.session.produce_input(&records).await?;
            for (input, at) in records.iter().zip(&positions) {
                self.shared.note_written(input, at);
                self.shared.run.record(
                    None,
                    HistoryEvent::RecordProduced {
                        position: at.clone(),
                        key: input.key.as_ref().map(key_text),
                        retry: false,
                    },
                );
                if input.transaction == Some(false) {
                    self.shared.run.record(
                        None,
                        HistoryEvent::TransactionAborted {
                            transactional_id: "upstream".into(),
                            partitions: vec![at.topic_partition()],
                            reason: "the upstream producer aborted it".into(),
                        },
                    );
                }
            }
            Ok(positions)
        })
    }

    /// The broker is back: recorded when the outage is over.
    fn fire_timers(&self) {
        let back = {
            let mut state = self.shared.state();
            let back = state.down_until.is_some_and(|t| t <= Instant::now());
            if back {
                state.down_until = None;
            }
            back
        };
        if back {
            self.shared.run.record(None, HistoryEvent::BrokerBack);
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        self.shared.state().down_until
    }

    fn broker_down(&self) -> Option<Instant> {
        self.shared
            .state()
            .down_until
            .filter(|t| *t > Instant::now())
    }

    /// Every running incarnation waits in `recv`; the lag decides the rest.
    fn idle(&self, running: &[Incarnation], _progress: Option<&Progress>) -> bool {
        running.iter().all(|i| self.shared.session.parked(*i))
    }

    fn settle(&self, configured: Duration) -> Duration {
        configured.min(BROKER_SETTLE)
    }

    fn check_interval(&self) -> Option<Duration> {
        Some(BROKER_CHECK_INTERVAL)
    }

    fn lag(&self) -> Result<Vec<Lag>, Error> {
        Ok(self.shared.session.lag()?)
    }

    /// Every group committed to the end of what it subscribed to, or only transaction markers
    /// and aborted records of the input are left (a consumer commits the offset after its last
    /// record, not after the marker that follows).
    /// With `progress`, the same of the consumer's database's offsets for the input.
    fn quiesced(&self, progress: Option<&Progress>) -> Result<bool, Error> {
        let lag = match progress {
            None => self.lag()?,
            Some(progress) => {
                let state = self.shared.state();
                state
                    .written
                    .iter()
                    .map(|(tp, log)| Lag {
                        group: STORE_PROGRESS.into(),
                        partition: tp.clone(),
                        committed: progress.get(tp).copied(),
                        end: log.len() as i64,
                    })
                    .collect()
            }
        };
        let state = self.shared.state();
        Ok(lag.iter().all(|l| {
            let committed = l.committed.unwrap_or(0);
            committed >= l.end
                || state.written.get(&l.partition).is_some_and(|log| {
                    log.len() as i64 == l.end
                        && log
                            .iter()
                            .skip(committed.max(0) as usize)
                            .all(|r| r.control || r.aborted)
                })
        }))
    }

    /// The partitions the run wrote input to, with their ends.
    fn end_offsets(&self, topics: &[String]) -> Result<Vec<(TopicPartition, i64)>, Error> {
        let state = self.shared.state();
        Ok(state
            .written
            .iter()
            .filter(|(tp, _)| topics.iter().any(|t| *t == tp.topic))
            .map(|(tp, log)| (tp.clone(), log.len() as i64))
            .collect())
    }

    fn create_consumer(
        &self,
        incarnation: Incarnation,
        config: &ClientConfig,
        handler: Option<Arc<dyn RebalanceHandler>>,
    ) -> KafkaResult<Box<dyn ConsumerClient>> {
        let consumer = BrokerConsumer::create(self.shared.clone(), incarnation, config, handler)?;
        Ok(Box::new(consumer))
    }

    fn create_producer(
        &self,
        incarnation: Incarnation,
        config: &ClientConfig,
    ) -> KafkaResult<Box<dyn ProducerClient>> {
        let producer = BrokerProducer::create(self.shared.clone(), incarnation, config)?;
        Ok(Box::new(producer))
    }

    fn create_base_producer(
        &self,
        incarnation: Incarnation,
        config: &ClientConfig,
    ) -> KafkaResult<Box<dyn BaseProducerClient>> {
        let producer = BrokerBaseProducer::create(self.shared.clone(), incarnation, config)?;
        Ok(Box::new(producer))
    }

    /// What the topics hold and what the groups committed, read back from the broker, with
    /// the input's transactional flags as written.
    fn snapshot(&self, topics: &[(String, i32)]) -> Result<ClusterSnapshot, Error> {
        let written =
            ClusterSnapshot::from_parts(self.shared.state().written.clone(), BTreeMap::new());
        Ok(self
            .shared
            .session
            .snapshot(topics)?
            .with_input_flags(&written))
    }
}
