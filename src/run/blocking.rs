//! Synchronous consumer code on a thread of its own, in lockstep with the run.
//!
//! A program written around a blocking `poll(timeout)` (rdkafka's `BaseConsumer`) cannot run
//! inside the run's tasks: blocking there would stop the one thread every instance, timer and
//! the driver share, and with them virtual time. [`InstanceContext::run_blocking`] runs it on
//! a thread of its own instead, and keeps the two threads in lockstep: while the program's
//! thread runs its own code, the run's thread waits for the program's next call into the kit
//! (nothing else in the run moves and virtual time stands still, as for synchronous code
//! between two awaits of an async consumer); while a call is on the run (a `poll` waiting for
//! a record, an effect), the program's thread waits for its answer and the run goes on as for
//! an awaiting task. Each call is built on the program's thread as a `Send` closure and runs on
//! the run's thread, inside the instance's task: it sees the run's clock, its freezes and its
//! crashes as the instance's own async code would.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaResult;

use super::backend::LocalBoxFuture;
use super::base_consumer::BaseConsumer;
use super::context::{InstanceContext, InstanceExit};
use super::core::CrashSignal;
use super::effect::EffectSink;
use super::freeze::thawed;
use crate::client::RebalanceHandler;
use crate::history::{Incarnation, InstanceId};

/// A panic's payload, carried between the two threads.
type Payload = Box<dyn Any + Send>;

/// One call of the program's thread: run on the run's thread, where it builds its future from
/// the instance's context.
type Job = ScopedJob<'static>;

/// A call that borrows the frame of the program's thread that waits for it.
type ScopedJob<'a> = Box<dyn FnOnce(InstanceContext) -> LocalBoxFuture<'a, ()> + Send + 'a>;

/// Where a call's end goes, if the program's thread waits for it.
type Reply = Option<SyncSender<Result<(), Payload>>>;

/// What the program's thread asks of the run.
enum Request {
    /// Run `job`; its end (or its panic) goes to `reply`, if the thread waits for it. The job
    /// is declared first: it is dropped before the reply channel, whose end wakes the thread.
    Call { job: Job, reply: Reply },
    /// The program's function returned (with its error, if any) or panicked.
    Exit(Result<Option<String>, Payload>),
}

/// The error a program run with [`InstanceContext::run_blocking`] ended with: the text of its
/// own error (the history shows it as an async consumer's), or why its thread could not run.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ThreadError(String);

/// Unwinds the program's thread as a crashed process (no panic hook prints anything).
fn gone() -> ! {
    resume_unwind(Box::new(CrashSignal))
}

/// The program's end of the lockstep.
pub(crate) struct Bridge {
    requests: Sender<Request>,
}

impl Bridge {
    /// Runs `make`'s future on the run's thread, inside the instance's task, and waits for its
    /// output. `Err` is the panic it ended with (a crash of the instance is one).
    pub(crate) fn try_call<R, Fut>(
        &self,
        make: impl FnOnce(InstanceContext) -> Fut + Send,
    ) -> Result<R, Payload>
    where
        Fut: Future<Output = R>,
        R: Send,
    {
        let mut slot: Option<R> = None;
        let out = &mut slot;
        let job: ScopedJob<'_> = Box::new(move |ctx| {
            Box::pin(async move {
                *out = Some(make(ctx).await);
            })
        });
        // SAFETY: the job borrows this frame (`slot`, and whatever `make` borrows). The run's
        // thread runs it and drops it, with the future it built, before it answers on
        // `reply` or drops `reply` (a `Request::Call` drops its job before its reply channel,
        // and the lockstep's end drops the future in flight before its reply channel), and
        // this frame waits on `answer` until one of the two happened; if the request never
        // reaches the run, it comes back here and is dropped here. The job never outlives the
        // borrows it holds.
        let job: Job = unsafe { std::mem::transmute::<ScopedJob<'_>, Job>(job) };
        let (reply, answer) = mpsc::sync_channel(1);
        let request = Request::Call {
            job,
            reply: Some(reply),
        };
        if let Err(returned) = self.requests.send(request) {
            drop(returned);
            return Err(Box::new(CrashSignal));
        }
        match answer.recv() {
            Ok(Ok(())) => Ok(slot.take().expect("a finished call left its output")),
            Ok(Err(payload)) => Err(payload),
            // The run dropped the call: the instance is gone.
            Err(_) => Err(Box::new(CrashSignal)),
        }
    }

    /// [`try_call`](Self::try_call), unwinding with the call's panic.
    pub(crate) fn call<R, Fut>(&self, make: impl FnOnce(InstanceContext) -> Fut + Send) -> R
    where
        Fut: Future<Output = R>,
        R: Send,
    {
        self.try_call(make)
            .unwrap_or_else(|payload| resume_unwind(payload))
    }

    /// Drops `value` on the run's thread, in order with the calls, without waiting: what a
    /// client does as it closes runs where the client lives.
    pub(crate) fn release<T: Send + 'static>(&self, value: T) {
        let job: Job = Box::new(move |_| {
            Box::pin(async move {
                drop(value);
            })
        });
        let request = Request::Call { job, reply: None };
        if let Err(returned) = self.requests.send(request) {
            // The run is over and its thread gone (only a thread-local can hold a client that
            // long): nothing may run it any more, so it is left as it is.
            std::mem::forget(returned);
        }
    }
}

/// What a program run with [`InstanceContext::run_blocking`] gets: the means to create its
/// clients and effect sinks, and to run the kit's futures from its thread.
///
/// Every call into the kit goes through it ([`block_on`](Self::block_on),
/// [`block_on_with`](Self::block_on_with)) or through a client created from it (a
/// [`BaseConsumer`](crate::clients::BaseConsumer)): the call runs on the run, inside the
/// instance's task, while the program's thread waits. It belongs to the program's thread
/// (neither `Send` nor `Sync`).
#[derive(Clone)]
pub struct BlockingContext {
    bridge: Rc<Bridge>,
    incarnation: Incarnation,
}

impl std::fmt::Debug for BlockingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingContext")
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

impl BlockingContext {
    /// The instance slot (stable across restarts).
    pub fn instance(&self) -> InstanceId {
        self.incarnation.instance
    }

    /// This life of the instance.
    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// Runs a future of the kit (an effect, a producer's `send`, a `tokio::time::sleep` in
    /// virtual time) on the run and blocks this thread until it is done.
    ///
    /// ```no_run
    /// # fn f(ctx: &effectively_once::clients::BlockingContext) -> Result<(), effectively_once::EffectError> {
    /// let email = ctx.effect_sink("email");
    /// ctx.block_on(email.perform("evt-1"))?;
    /// ctx.block_on(tokio::time::sleep(std::time::Duration::from_millis(100)));
    /// # Ok(()) }
    /// ```
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.bridge.call(move |_| future)
    }

    /// Runs `make` on the run, inside the instance's task, with the instance's
    /// [`InstanceContext`], and blocks this thread until the future it returns is done: the
    /// way to anything the context offers (a producer, the durable store). The future need
    /// not be `Send`; what it returns must be.
    ///
    /// ```no_run
    /// # fn f(ctx: &effectively_once::clients::BlockingContext) -> rdkafka::error::KafkaResult<()> {
    /// let producer = ctx.block_on_with(|instance| async move {
    ///     instance.create_producer(&rdkafka::ClientConfig::new())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn block_on_with<R, Fut>(&self, make: impl FnOnce(InstanceContext) -> Fut + Send) -> R
    where
        Fut: Future<Output = R>,
        R: Send,
    {
        self.bridge.call(make)
    }

    /// An effect sink named `name`, as [`InstanceContext::effect_sink`]; perform its effects
    /// with [`block_on`](Self::block_on).
    pub fn effect_sink(&self, name: &str) -> EffectSink {
        self.bridge
            .call(move |ctx| std::future::ready(ctx.effect_sink(name)))
    }

    /// Creates a synchronous consumer from the same `ClientConfig` production uses, as
    /// [`InstanceContext::create_consumer`].
    pub fn create_base_consumer(&self, config: &ClientConfig) -> KafkaResult<BaseConsumer> {
        let consumer = self
            .bridge
            .call(move |ctx| std::future::ready(ctx.create_consumer(config)))?;
        Ok(BaseConsumer::new(consumer, self.bridge.clone()))
    }

    /// Creates a synchronous consumer whose rebalance and commit callbacks go to `handler`
    /// (they run on the run, inside the consumer's `poll`, as librdkafka serves them from
    /// poll).
    pub fn create_base_consumer_with_handler<H: RebalanceHandler>(
        &self,
        config: &ClientConfig,
        handler: H,
    ) -> KafkaResult<BaseConsumer> {
        let consumer = self.bridge.call(move |ctx| {
            std::future::ready(ctx.create_consumer_with_handler(config, handler))
        })?;
        Ok(BaseConsumer::new(consumer, self.bridge.clone()))
    }
}

/// The start of a program: its function, run on its thread, turned into how it ended.
type Program = Box<dyn FnOnce(BlockingContext) -> Result<Option<String>, Payload> + Send>;

impl InstanceContext {
    /// Runs a synchronous program (a `loop { consumer.poll(timeout) ... }` around rdkafka's
    /// `BaseConsumer`) as this instance: return it from the factory.
    ///
    /// `program` runs on a new thread, named after the incarnation, with a [`BlockingContext`]
    /// to create its clients from; the run's thread serves its calls into the kit one at a
    /// time. The two threads take turns: while the program runs its own code the run waits
    /// (no other instance runs, virtual time stands still), while a call of it is on the run
    /// the program waits. Runs stay deterministic: the same seed gives the same history.
    ///
    /// The program's return value ends the instance as an async consumer's would: `()` or
    /// `Ok` stops it, an `Err` fails it (its text in the history), a panic is reported as the
    /// consumer's panic. When the instance crashes (a fault in any call), the program's
    /// thread unwinds at its next call into the kit, or at once if it is waiting in one: its
    /// destructors run, nothing more of it reaches the run, and the thread is joined before
    /// the next incarnation starts. A freeze holds the program's next call until the thaw.
    ///
    /// Everything the program does with the kit goes through the [`BlockingContext`] and the
    /// clients created from it. A program that stops calling the kit for good (a busy loop, a
    /// blocking wait on something only the run would deliver) stops the whole run, as an
    /// async consumer that never yields does. Sleep with
    /// `ctx.block_on(tokio::time::sleep(..))`, in virtual time, not `std::thread::sleep`.
    ///
    /// ```
    /// use effectively_once::clients::KafkaBaseConsumer;
    /// use effectively_once::{ConsumerHandle, InputRecord, Simulation};
    /// use rdkafka::ClientConfig;
    /// use rdkafka::consumer::CommitMode;
    /// use rdkafka::message::Message;
    /// use std::time::Duration;
    ///
    /// type BoxError = Box<dyn std::error::Error + Send + Sync>;
    ///
    /// let mut sim = Simulation::builder();
    /// sim.topic("events", 1).produce(InputRecord::new("events").payload("evt-0"));
    /// let outcome = sim.build()?.run(|ctx| {
    ///     ctx.run_blocking(|ctx| -> Result<(), BoxError> {
    ///         let mut config = ClientConfig::new();
    ///         config
    ///             .set("group.id", "g")
    ///             .set("enable.auto.commit", "false")
    ///             .set("auto.offset.reset", "earliest");
    ///         let consumer = ctx.create_base_consumer(&config)?;
    ///         let email = ctx.effect_sink("email");
    ///         consumer.subscribe(&["events"])?;
    ///         loop {
    ///             let Some(message) = consumer.poll(Duration::from_millis(100)) else {
    ///                 continue;
    ///             };
    ///             let message = message?;
    ///             let id = std::str::from_utf8(message.payload().unwrap_or_default())?;
    ///             ctx.block_on(email.perform(id))?;
    ///             consumer.commit_message(&message, CommitMode::Sync)?;
    ///         }
    ///     })
    /// })?;
    /// assert_eq!(outcome.history().effect_counts("email")["evt-0"], 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_blocking<F, T>(
        &self,
        program: F,
    ) -> impl Future<Output = Result<(), ThreadError>> + use<F, T>
    where
        F: FnOnce(BlockingContext) -> T + Send + 'static,
        T: InstanceExit,
    {
        let program: Program =
            Box::new(move |ctx| catch_unwind(AssertUnwindSafe(move || program(ctx).exit_error())));
        Lockstep::new(self.clone(), program)
    }
}

/// The run's end of the lockstep: the instance's future while its program runs on a thread.
struct Lockstep {
    ctx: InstanceContext,
    /// The program, until the first poll starts its thread.
    program: Option<Program>,
    /// The program thread's end of the requests, until it starts.
    sender: Option<Sender<Request>>,
    requests: Receiver<Request>,
    thread: Option<JoinHandle<()>>,
    /// The call on the run: its future (declared first: dropped first), and whom to answer.
    pending: Option<(LocalBoxFuture<'static, ()>, Reply)>,
}

impl Lockstep {
    fn new(ctx: InstanceContext, program: Program) -> Self {
        let (sender, requests) = mpsc::channel();
        Lockstep {
            ctx,
            program: Some(program),
            sender: Some(sender),
            requests,
            thread: None,
            pending: None,
        }
    }

    /// Starts the program's thread; `Err` when the thread could not be created.
    fn start(&mut self, program: Program) -> Result<(), ThreadError> {
        let sender = self.sender.take().expect("the program starts once");
        let incarnation = self.ctx.incarnation;
        let runtime = tokio::runtime::Handle::current();
        // The program logs where the instance's task would (a check captures a case's logs).
        let logs = tracing::dispatcher::get_default(tracing::Dispatch::clone);
        let thread = std::thread::Builder::new()
            .name(format!("effectively-once {incarnation}"))
            .spawn(move || {
                // The run's clock for anything that reads it from this thread.
                let _runtime = runtime.enter();
                let _logs = tracing::dispatcher::set_default(&logs);
                let exit = sender.clone();
                let ctx = BlockingContext {
                    bridge: Rc::new(Bridge { requests: sender }),
                    incarnation,
                };
                let ended = program(ctx);
                let _ = exit.send(Request::Exit(ended));
            })
            .map_err(|e| ThreadError(format!("could not start the instance's thread: {e}")))?;
        self.thread = Some(thread);
        Ok(())
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Future for Lockstep {
    type Output = Result<(), ThreadError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(program) = this.program.take() {
            if let Err(e) = this.start(program) {
                return Poll::Ready(Err(e));
            }
        }
        loop {
            if let Some((future, _)) = this.pending.as_mut() {
                let result = match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(Poll::Pending) => return Poll::Pending,
                    Ok(Poll::Ready(())) => Ok(()),
                    Err(payload) => Err(payload),
                };
                let (future, reply) = this.pending.take().expect("polled above");
                // Dropped before the program's thread resumes: it borrows that thread's stack.
                let _ = catch_unwind(AssertUnwindSafe(move || drop(future)));
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
                // A release nobody waits for: a crashed instance's client unwinding as it
                // closes is that crash, already carried out.
            }
            // The program runs its own code: the run waits for its next call, blocking its
            // thread (nothing else moves meanwhile, virtual time included).
            match this.requests.recv() {
                Ok(Request::Call { job, reply }) => {
                    let ctx = this.ctx.clone();
                    let future: LocalBoxFuture<'static, ()> = Box::pin(async move {
                        // A frozen process makes no call until it thaws.
                        thawed(&ctx.run, ctx.incarnation).await;
                        job(ctx).await;
                    });
                    this.pending = Some((future, reply));
                }
                Ok(Request::Exit(ended)) => {
                    this.join();
                    return Poll::Ready(match ended {
                        Ok(None) => Ok(()),
                        Ok(Some(error)) => Err(ThreadError(error)),
                        // The program's panic, or the crash it unwound with: the instance's.
                        Err(payload) => resume_unwind(payload),
                    });
                }
                Err(_) => {
                    this.join();
                    return Poll::Ready(Err(ThreadError(
                        "the instance's thread ended without a result".into(),
                    )));
                }
            }
        }
    }
}

impl Drop for Lockstep {
    /// The instance is gone (crashed, or the run is over) while its program waits for a call:
    /// the call in flight is dropped, which wakes the program to unwind as a crashed process;
    /// its destructors' releases run here, later calls are refused, and the thread is joined.
    fn drop(&mut self) {
        if let Some((future, reply)) = self.pending.take() {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(future)));
            drop(reply);
        }
        if self.thread.is_none() {
            return;
        }
        loop {
            match self.requests.recv() {
                Ok(Request::Call { job, reply }) => {
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(job)));
                    drop(reply);
                }
                Ok(Request::Exit(ended)) => {
                    // A panic payload's own drop must not unwind out of this drop.
                    let _ = catch_unwind(AssertUnwindSafe(move || drop(ended)));
                    break;
                }
                Err(_) => break,
            }
        }
        self.join();
    }
}

/// Unwinds the program's thread as the crashed process it belongs to, unless it is unwinding
/// already (a client closing in a destructor): then `fallback`.
pub(crate) fn crashed_or<T>(payload: Payload, fallback: impl FnOnce() -> T) -> T {
    if std::thread::panicking() {
        drop(payload);
        fallback()
    } else if payload.is::<CrashSignal>() {
        gone()
    } else {
        resume_unwind(payload)
    }
}
