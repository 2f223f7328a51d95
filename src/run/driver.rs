//! The driver loop: starts and restarts instances, feeds the input, fires timers, and decides
//! when the run is over.

use std::any::Any;
use std::collections::{BTreeSet, VecDeque};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::backend::{Backend, InputWrite};
use super::core::{CrashSignal, InstanceState, InstanceStatus, Run, RunCore};
use super::freeze::FreezeGate;
use super::store_progress::{Progress, STORE_PROGRESS, StoreProgress};
use super::{Config, InputRecord, InstanceContext, InstanceExit};
use crate::client::partitioner::Partitioner;
use crate::client::txn_error::stable_text;
use crate::error::Error;
use crate::history::{HistoryEvent, Incarnation, InstanceId};

/// What the driver reads of the instances to decide whether the run is over.
struct Instances {
    /// Every instance stopped for good.
    all_stopped: bool,
    /// Every instance runs or stopped for good (none waits for a restart).
    none_dead: bool,
    /// A process is frozen (its thaw is still to come).
    frozen: bool,
    /// When anything last happened.
    last_activity: Instant,
}

impl Instances {
    /// Reads the instances in one pass; the running incarnations go to `running` (a buffer
    /// the driver reuses, so that a look costs no allocation).
    fn of(run: &RunCore, running: &mut Vec<Incarnation>) -> Self {
        running.clear();
        let (mut all_stopped, mut none_dead, mut frozen) = (true, true, false);
        for (id, i) in &run.instances {
            all_stopped &= i.status == InstanceStatus::Stopped;
            none_dead &= matches!(i.status, InstanceStatus::Running | InstanceStatus::Stopped);
            frozen |= i.frozen_until.is_some();
            if i.status == InstanceStatus::Running {
                running.push(Incarnation {
                    instance: *id,
                    number: i.incarnation,
                });
            }
        }
        Instances {
            all_stopped,
            none_dead,
            frozen,
            last_activity: run.last_activity,
        }
    }
}

/// The input still to write: indices into the simulation's input records, in the order they
/// are written (by time, then in the order they were produced).
struct Input<'a> {
    records: &'a [(Duration, InputRecord)],
    pending: VecDeque<usize>,
}

impl Input<'_> {
    /// When the next record is due.
    fn next_at(&self) -> Option<Duration> {
        self.pending.front().map(|&i| self.records[i].0)
    }
}

/// Why a run may stop.
enum Ending {
    TimeLimit,
    AllStopped,
    Quiet,
}

/// Drives one run: the instances on the backend, until the run ends.
pub(crate) struct Driver<F> {
    pub(crate) run: Arc<Run>,
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) config: Config,
    pub(crate) factory: Rc<F>,
    pub(crate) store_uri: Rc<str>,
}

impl<F, Fut> Driver<F>
where
    F: Fn(InstanceContext) -> Fut + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    pub(crate) async fn run(self) -> Result<(), Error> {
        let origin = self.run.lock().origin;
        // The input is shared with the simulation (and its other runs): the driver writes
        // it in order of time, then of production, by index.
        let all_input = self.config.input.clone();
        let inputs = all_input.len();
        let input_topics: Vec<String> = all_input
            .iter()
            .map(|(_, r)| &r.topic)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|t| t.to_string())
            .collect();
        let mut store_progress = self.config.progress_query.clone().map(StoreProgress::new);
        let mut order: Vec<usize> = (0..inputs).collect();
        order.sort_by_key(|&i| (all_input[i].0, i));
        let mut input = Input {
            records: &all_input,
            pending: order.into(),
        };
        {
            let mut run = self.run.lock();
            run.faults.expect_inputs(inputs);
            for id in 0..self.config.instances {
                run.instances.insert(
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
        // Buffers reused by every turn of the loop (a turn per change of the run).
        let (mut running, mut wake_at) = (Vec::new(), Vec::new());
        // A watchdog on another thread tells a slow run from a blocked one by its clock.
        let _clock = super::progress::watched().map(super::progress::count_clock);
        loop {
            let now = Instant::now();
            let mut to_start = Vec::new();
            wake_at.clear();
            wake_at.push(origin + self.config.time_limit);
            if let Some(interval) = self.backend.check_interval() {
                wake_at.push(now + interval);
            }
            self.backend.fire_timers();
            self.write_due_input(&mut input, origin, now).await?;
            if let Some(at) = input.next_at() {
                wake_at.push(origin + at);
            }
            self.schedule_restarts(now, &mut to_start, &mut wake_at);
            let instances = Instances::of(&self.run.lock(), &mut running);
            let ending = if now >= origin + self.config.time_limit {
                Some(Ending::TimeLimit)
            } else if input.pending.is_empty() && instances.all_stopped {
                Some(Ending::AllStopped)
            } else if input.pending.is_empty()
                && to_start.is_empty()
                // Nothing settles while the broker is down (on a real broker the lag
                // cannot even be read then), nor while a process is frozen.
                && self.backend.broker_down().is_none()
                && instances.none_dead
                && !instances.frozen
                // A progress query that fails (the consumer may not have created its table
                // yet) is not idle; one that still fails when the run ends fails the run.
                && self
                    .progress(&mut store_progress)
                    .is_ok_and(|p| self.backend.idle(&running, p.as_ref()))
            {
                let quiet_until = instances.last_activity + self.backend.settle(self.config.settle);
                if now >= quiet_until {
                    Some(Ending::Quiet)
                } else {
                    wake_at.push(quiet_until);
                    None
                }
            } else {
                None
            };
            if let Some(next) = self.backend.next_timer() {
                wake_at.push(next);
            }
            let end = match ending {
                None => None,
                Some(Ending::TimeLimit) => Some(HistoryEvent::TimeLimitReached {
                    lag: self.lag(&mut store_progress, &input_topics)?,
                }),
                Some(Ending::AllStopped) => Some(HistoryEvent::AllInstancesStopped {
                    lag: self.lag(&mut store_progress, &input_topics)?,
                }),
                // The backend decides whether quiet means done (on a real broker: every group
                // committed to the end of what it subscribed to).
                // A lag read that fails here (a real broker's admin call timing out on a
                // loaded machine) means "not known to be done yet": the next check reads it
                // again, and one that still fails when the run ends fails the run there.
                Some(Ending::Quiet) => {
                    let progress = self.progress(&mut store_progress)?;
                    self.backend
                        .quiesced(progress.as_ref())
                        .unwrap_or(false)
                        .then_some(HistoryEvent::Quiesced)
                }
            };
            let ended = match end {
                Some(event) => {
                    let mut run = self.run.lock();
                    run.record(None, event);
                    run.finished = true;
                    true
                }
                None => false,
            };
            self.run.publish();
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
                .iter()
                .copied()
                .min()
                .expect("time limit is always there");
            tokio::select! {
                biased;
                _ = self.run.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// The consumer's progress as its database records it, when the run reads it from there
    /// ([`SimulationBuilder::progress_from_store`](crate::SimulationBuilder::progress_from_store)).
    fn progress(&self, store: &mut Option<StoreProgress>) -> Result<Option<Progress>, Error> {
        store.as_mut().map(|s| s.read(&self.store_uri)).transpose()
    }

    /// The lag the run ends with: each group's committed offsets, or with the progress read
    /// from the database, the database's offsets for the input topics.
    fn lag(
        &self,
        store: &mut Option<StoreProgress>,
        input_topics: &[String],
    ) -> Result<Vec<crate::history::Lag>, Error> {
        let Some(progress) = self.progress(store)? else {
            return self.backend.lag();
        };
        Ok(self
            .backend
            .end_offsets(input_topics)?
            .into_iter()
            .map(|(partition, end)| crate::history::Lag {
                group: STORE_PROGRESS.into(),
                committed: progress.get(&partition).copied(),
                partition,
                end,
            })
            .collect())
    }

    /// Writes the input records due by `now`, noting where each landed.
    async fn write_due_input(
        &self,
        input: &mut Input<'_>,
        origin: Instant,
        now: Instant,
    ) -> Result<(), Error> {
        let mut indices = Vec::new();
        let mut batch = Vec::new();
        while input.next_at().is_some_and(|at| origin + at <= now) {
            let index = input.pending.pop_front().expect("checked");
            let r = &input.records[index].1;
            indices.push((index, r.event_id.as_ref()));
            let partition = match r.partition {
                Some(p) => p,
                None => {
                    let partitions = self
                        .config
                        .topics
                        .iter()
                        .find(|(t, _)| *t == r.topic)
                        .map(|(_, n)| *n)
                        .ok_or_else(|| Error::UnknownTopic(r.topic.to_string()))?;
                    // The upstream producer's default partitioner, as librdkafka's.
                    Partitioner::ConsistentRandom.partition(r.key.as_deref(), partitions, |n| {
                        self.run.lock().rng.below(n)
                    })
                }
            };
            batch.push(InputWrite {
                topic: r.topic.clone(),
                partition,
                key: r.key.clone(),
                payload: r.payload.clone(),
                transaction: r.transaction,
            });
        }
        if batch.is_empty() {
            return Ok(());
        }
        let positions = self.backend.write_input(batch).await?;
        let mut run = self.run.lock();
        for ((index, event_id), position) in indices.into_iter().zip(positions) {
            if let Some(event_id) = event_id {
                run.event_landed(event_id.clone(), &position);
            }
            run.faults.input_landed(index, position);
        }
        Ok(())
    }

    /// Decides which dead instances restart now, which later, which never.
    fn schedule_restarts(
        &self,
        now: Instant,
        to_start: &mut Vec<InstanceId>,
        wake_at: &mut Vec<Instant>,
    ) {
        let mut run = self.run.lock();
        let mut exhausted = Vec::new();
        for (id, state) in &run.instances {
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
            run.instances.get_mut(&id).expect("listed").status = InstanceStatus::Stopped;
            run.record(
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
            let mut run = self.run.lock();
            let state = run.instances.get_mut(&id).expect("instance exists");
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
            run.record(Some(incarnation), HistoryEvent::InstanceStarted);
            incarnation
        };
        self.run.publish();
        let context = InstanceContext {
            run: self.run.clone(),
            backend: self.backend.clone(),
            incarnation,
            store_uri: self.store_uri.clone(),
        };
        let factory = self.factory.clone();
        let (run, backend) = (self.run.clone(), self.backend.clone());
        let current = context.clone();
        // The whole task, the instance's future and its end, stops while the process is frozen;
        // the factory call and the future see the context as `InstanceContext::current()`.
        let gate = FreezeGate::new(self.run.clone(), incarnation, async move {
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
            instance_ended(&run, &*backend, incarnation, result);
        });
        let handle = tokio::task::spawn_local(super::current::scope(current, gate));
        let mut run = self.run.lock();
        if let Some(state) = run.instances.get_mut(&id) {
            if state.incarnation == incarnation.number && state.status == InstanceStatus::Running {
                state.root = Some(handle.abort_handle());
            }
        }
    }
}

/// Records how an instance's future ended (a crash was recorded when it fired).
fn instance_ended<T: InstanceExit>(
    run: &Run,
    backend: &dyn Backend,
    incarnation: Incarnation,
    result: Result<T, Box<dyn Any + Send>>,
) {
    let mut core = run.lock();
    if !core.alive(incarnation) {
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
                HistoryEvent::InstanceExited {
                    error: Some(stable_text(error)),
                },
            ),
        },
        Err(payload) if payload.is::<CrashSignal>() => return,
        Err(payload) => (
            InstanceStatus::Panicked,
            HistoryEvent::InstancePanicked {
                message: stable_text(panic_message(&payload)),
            },
        ),
    };
    core.record(Some(incarnation), event);
    let state = core
        .instances
        .get_mut(&incarnation.instance)
        .expect("alive");
    state.status = status;
    state.died_at = Some(Instant::now());
    state.root = None;
    // The process is gone: whatever clients its other tasks still hold die with it.
    core.clients_gone(incarnation);
    drop(core);
    backend.react();
    run.publish();
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
