//! The driver loop: starts and restarts instances, feeds the input, fires timers, and decides
//! when the run is over.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::{Config, InputRecord, InstanceContext, InstanceExit};
use crate::broker::{BrokerSession, InputWrite};
use crate::error::Error;
use crate::history::{HistoryEvent, Incarnation, InstanceId};
use crate::sim::{CrashSignal, InstanceState, InstanceStatus, Shared, World};

/// How long nothing may happen before a real-broker run counts as quiesced.
const BROKER_SETTLE: Duration = Duration::from_secs(1);
/// How often a real-broker run looks at the group's lag.
const BROKER_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Why a run may stop.
enum Ending {
    TimeLimit,
    AllStopped,
    Quiet,
}

pub(crate) struct Driver<F> {
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: Config,
    pub(crate) factory: Rc<F>,
    pub(crate) store_uri: Rc<str>,
    pub(crate) broker: Option<Arc<BrokerSession>>,
}

impl<F, Fut> Driver<F>
where
    F: Fn(InstanceContext) -> Fut + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    pub(crate) async fn run(self) -> Result<(), Error> {
        let origin = self.shared.lock().origin;
        let mut input: Vec<(Duration, usize, InputRecord)> = self
            .config
            .input
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, (at, r))| (at, i, r))
            .collect();
        input.sort_by_key(|(at, i, _)| (*at, *i));
        let mut input: VecDeque<(Duration, usize, InputRecord)> = input.into_iter().collect();
        {
            let mut world = self.shared.lock();
            for id in 0..self.config.instances {
                world.instances.insert(
                    InstanceId(id),
                    InstanceState {
                        incarnation: 0,
                        status: InstanceStatus::NotStarted,
                        died_at: Some(
                            origin + self.config.start_at.get(&id).copied().unwrap_or_default(),
                        ),
                        frozen_until: None,
                        current_record: None,
                        root: None,
                        restarts: 0,
                    },
                );
            }
        }
        // On a real broker the input is written before anything starts (the world keeps its
        // own copy, for the timeline and where each record lands).
        if let Some(session) = &self.broker {
            let mut records = Vec::new();
            {
                let mut world = self.shared.lock();
                while let Some((_, index, r)) = input.pop_front() {
                    let position = world.append_input(
                        &r.topic,
                        r.partition,
                        r.key.clone(),
                        r.payload.clone(),
                        r.transaction,
                    )?;
                    world.faults.input_landed(index, position.clone());
                    records.push(InputWrite {
                        topic: r.topic,
                        partition: position.partition,
                        key: r.key,
                        payload: r.payload,
                        transaction: r.transaction,
                    });
                }
            }
            session.produce_input(&records).await?;
        }
        loop {
            let now = Instant::now();
            let mut to_start = Vec::new();
            let mut wake_at = vec![origin + self.config.time_limit];
            if self.broker.is_some() {
                wake_at.push(now + BROKER_CHECK_INTERVAL);
            }
            let ending = {
                let mut world = self.shared.lock();
                world.fire_timers();
                while input.front().is_some_and(|(at, _, _)| origin + *at <= now) {
                    let (_, index, r) = input.pop_front().expect("checked");
                    let position = world.append_input(
                        &r.topic,
                        r.partition,
                        r.key,
                        r.payload,
                        r.transaction,
                    )?;
                    world.faults.input_landed(index, position);
                }
                if let Some((at, _, _)) = input.front() {
                    wake_at.push(origin + *at);
                }
                self.schedule_restarts(&mut world, now, &mut to_start, &mut wake_at);
                let ending = if now >= origin + self.config.time_limit {
                    Some(Ending::TimeLimit)
                } else if input.is_empty()
                    && world
                        .instances
                        .values()
                        .all(|i| i.status == InstanceStatus::Stopped)
                {
                    Some(Ending::AllStopped)
                } else if input.is_empty()
                    && to_start.is_empty()
                    // Nothing settles while the broker is down (on a real broker the lag
                    // cannot even be read then).
                    && world.broker_down().is_none()
                    && world.instances.values().all(|i| {
                        matches!(i.status, InstanceStatus::Running | InstanceStatus::Stopped)
                    })
                    && self.idle(&world)
                {
                    let quiet_until = world.last_activity + self.settle();
                    if now >= quiet_until {
                        Some(Ending::Quiet)
                    } else {
                        wake_at.push(quiet_until);
                        None
                    }
                } else {
                    None
                };
                if let Some(next) = world.next_timer() {
                    wake_at.push(next);
                }
                ending
            };
            let end = match ending {
                None => None,
                Some(Ending::TimeLimit) => {
                    Some(HistoryEvent::TimeLimitReached { lag: self.lag()? })
                }
                Some(Ending::AllStopped) => {
                    Some(HistoryEvent::AllInstancesStopped { lag: self.lag()? })
                }
                Some(Ending::Quiet) if self.broker.is_none() => Some(HistoryEvent::Quiesced),
                // The broker decides: every group committed to the end of what it subscribed to.
                Some(Ending::Quiet) => {
                    let lag = self.lag()?;
                    let world = self.shared.lock();
                    lag.iter()
                        .all(|l| {
                            let committed = l.committed.unwrap_or(0);
                            // Only transaction markers left (a consumer commits the offset
                            // after its last record, not after the marker that follows).
                            committed >= l.end
                                || world.partition(&l.partition).is_some_and(|p| {
                                    p.end_offset() == l.end
                                        && p.settled_from(
                                            committed,
                                            crate::sim::config::IsolationLevel::ReadCommitted,
                                        )
                                })
                        })
                        .then_some(HistoryEvent::Quiesced)
                }
            };
            let ended = match end {
                Some(event) => {
                    let mut world = self.shared.lock();
                    world.record(None, event);
                    world.finished = true;
                    true
                }
                None => false,
            };
            self.shared.publish();
            if ended {
                return Ok(());
            }
            if !to_start.is_empty() {
                for id in to_start {
                    self.start(id);
                }
                continue;
            }
            let deadline = wake_at
                .into_iter()
                .min()
                .expect("time limit is always there");
            tokio::select! {
                biased;
                _ = self.shared.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Whether every running instance waits for records with nothing left to do (on a real
    /// broker: waits in `recv`; the lag decides the rest).
    fn idle(&self, world: &World) -> bool {
        match &self.broker {
            None => world.idle(),
            Some(session) => world
                .instances
                .iter()
                .filter(|(_, i)| i.status == InstanceStatus::Running)
                .all(|(id, i)| {
                    session.parked(Incarnation {
                        instance: *id,
                        number: i.incarnation,
                    })
                }),
        }
    }

    fn settle(&self) -> Duration {
        match &self.broker {
            None => self.config.settle,
            Some(_) => self.config.settle.min(BROKER_SETTLE),
        }
    }

    /// Each group's committed offsets against the end offsets.
    fn lag(&self) -> Result<Vec<crate::history::Lag>, Error> {
        match &self.broker {
            None => Ok(self.shared.lock().lag()),
            Some(session) => Ok(session.lag()?),
        }
    }

    /// Decides which dead instances restart now, which later, which never.
    fn schedule_restarts(
        &self,
        world: &mut World,
        now: Instant,
        to_start: &mut Vec<InstanceId>,
        wake_at: &mut Vec<Instant>,
    ) {
        let mut exhausted = Vec::new();
        for (id, state) in &world.instances {
            let waiting = matches!(
                state.status,
                InstanceStatus::NotStarted
                    | InstanceStatus::Crashed
                    | InstanceStatus::Panicked
                    | InstanceStatus::Failed
            );
            if !waiting {
                continue;
            }
            if state.status != InstanceStatus::NotStarted
                && state.restarts >= self.config.max_restarts
            {
                exhausted.push((*id, state.incarnation, state.restarts));
                continue;
            }
            let delay = if state.status == InstanceStatus::NotStarted {
                Duration::ZERO
            } else {
                self.config.restart_delay
            };
            let due = state.died_at.expect("dead instances have a time of death") + delay;
            if due <= now {
                to_start.push(*id);
            } else {
                wake_at.push(due);
            }
        }
        for (id, number, restarts) in exhausted {
            world.instances.get_mut(&id).expect("listed").status = InstanceStatus::Stopped;
            world.record(
                Some(Incarnation {
                    instance: id,
                    number,
                }),
                HistoryEvent::RestartsExhausted { restarts },
            );
        }
    }

    /// Starts a new incarnation of an instance.
    fn start(&self, id: InstanceId) {
        let incarnation = {
            let mut world = self.shared.lock();
            let state = world.instances.get_mut(&id).expect("instance exists");
            if state.status != InstanceStatus::NotStarted {
                state.restarts += 1;
            }
            state.incarnation += 1;
            state.status = InstanceStatus::Running;
            state.died_at = None;
            state.current_record = None;
            let incarnation = Incarnation {
                instance: id,
                number: state.incarnation,
            };
            world.record(Some(incarnation), HistoryEvent::InstanceStarted);
            incarnation
        };
        self.shared.publish();
        let context = InstanceContext {
            shared: self.shared.clone(),
            incarnation,
            store_uri: self.store_uri.clone(),
            broker: self.broker.clone(),
        };
        let factory = self.factory.clone();
        let shared = self.shared.clone();
        let handle = tokio::task::spawn_local(async move {
            let started = catch_unwind(AssertUnwindSafe(|| factory(context)));
            let result = match started {
                Ok(future) => {
                    CatchUnwind {
                        inner: Some(Box::pin(future)),
                    }
                    .await
                }
                Err(payload) => Err(payload),
            };
            instance_ended(&shared, incarnation, result);
        });
        let mut world = self.shared.lock();
        if let Some(state) = world.instances.get_mut(&id) {
            if state.incarnation == incarnation.number && state.status == InstanceStatus::Running {
                state.root = Some(handle.abort_handle());
            }
        }
    }
}

/// Records how an instance's future ended (a crash was recorded when it fired).
fn instance_ended<T: InstanceExit>(
    shared: &Shared,
    incarnation: Incarnation,
    result: Result<T, Box<dyn Any + Send>>,
) {
    let mut world = shared.lock();
    if !world.alive(incarnation) {
        return; // crashed: already recorded
    }
    let (status, event) = match result {
        Ok(output) => match output.exit_error() {
            None => (
                InstanceStatus::Stopped,
                HistoryEvent::InstanceExited { error: None },
            ),
            Some(error) => (
                InstanceStatus::Failed,
                HistoryEvent::InstanceExited { error: Some(error) },
            ),
        },
        Err(payload) if payload.is::<CrashSignal>() => return,
        Err(payload) => (
            InstanceStatus::Panicked,
            HistoryEvent::InstancePanicked {
                message: panic_message(&payload),
            },
        ),
    };
    world.record(Some(incarnation), event);
    let state = world
        .instances
        .get_mut(&incarnation.instance)
        .expect("alive");
    state.status = status;
    state.died_at = Some(Instant::now());
    state.root = None;
    // The process is gone: whatever clients its other tasks still hold die with it.
    world.drop_clients(incarnation);
    drop(world);
    shared.publish();
}

pub(crate) fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic with a non-string payload)".to_string()
    }
}

/// Polls a future, turning a panic into an error; drops the future as soon as it is done so
/// that its clients close while the instance still counts as running.
struct CatchUnwind<F> {
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(future) = this.inner.as_mut() else {
            return Poll::Pending;
        };
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(value)) => Ok(value),
            Err(payload) => Err(payload),
        };
        let dropped = catch_unwind(AssertUnwindSafe(|| drop(this.inner.take())));
        Poll::Ready(match (output, dropped) {
            (Ok(_), Err(payload)) => Err(payload),
            (output, _) => output,
        })
    }
}
