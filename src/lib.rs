//! Prove a Kafka consumer's delivery semantics.
//!
//! At-least-once delivery plus an idempotent consumer is the standard Kafka design, and its bugs
//! live only in failure windows: a crash after the email was sent but before the offset commit
//! sends it twice; a commit before processing followed by a crash loses the event; an auto-commit
//! that fires while a message is still being processed loses it too. `effectively-once` runs
//! your consumer, the same generic function that runs on rdkafka in production, against a
//! deterministic simulated Kafka, crashes it in exactly those windows and records every side
//! effect, so the windows become an ordinary test that runs in milliseconds and never flakes.
//!
//! ```
//! use effectively_once::{ConsumerHandle, InstanceContext, KafkaConsumer, assert_effectively_once};
//! use rdkafka::ClientConfig;
//! use rdkafka::consumer::CommitMode;
//! use rdkafka::message::Message;
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! /// One instance of the consumer under test: send an email per event, with the event id as
//! /// the email API's idempotency key, then commit.
//! async fn notification_service(ctx: InstanceContext) -> Result<(), BoxError> {
//!     let mut config = ClientConfig::new();
//!     config
//!         .set("group.id", "notification-service")
//!         .set("enable.auto.commit", "false")
//!         .set("auto.offset.reset", "earliest")
//!         .set("session.timeout.ms", "6000");
//!     let consumer = ctx.create_consumer(&config)?;
//!     let email = ctx.effect_sink("email");
//!     consumer.subscribe(&["events"])?;
//!     loop {
//!         let message = consumer.recv().await?;
//!         // The kit's default payload: {"event_id": "evt-0", "key": "k0", "data": {...}}.
//!         let parsed: Result<serde_json::Value, _> =
//!             serde_json::from_slice(message.payload().unwrap_or_default());
//!         if let Some(id) = parsed.ok().and_then(|v| v["event_id"].as_str().map(String::from)) {
//!             email.perform_idempotent(&id, &id).await?;
//!         } // else: a poison record, skipped (and committed) so it cannot wedge the partition.
//!         consumer.commit_message(&message, CommitMode::Sync)?;
//!     }
//! }
//!
//! # /*
//! #[test]
//! # */
//! fn notification_service_sends_each_email_once() {
//!     // 256 generated event streams and fault schedules: crashes around every call, failed
//!     // and ambiguous commits and emails, session timeouts, max.poll.interval breaches,
//!     // rebalances, poison records.
//!     assert_effectively_once!(notification_service);
//! }
//! # notification_service_sends_each_email_once();
//! ```
//!
//! Without the idempotency key (`email.perform(&id)`) the same assertion panics with a minimal
//! counterexample: one event, one fault (the email reported failed although it was sent, so the
//! redelivered event is emailed again), its timeline, and how to replay it. See
//! [`Verifier`] for the settings, [`check_effectively_once`] for the form that returns the
//! [`Counterexample`] instead of panicking, and [`assert_at_least_once!`] /
//! [`assert_at_most_once!`] for the weaker promises.
//!
//! # Write the consumer once
//!
//! Write the consumer against [`KafkaConsumer`] (rdkafka's `StreamConsumer` API: `recv`,
//! `commit_message`, `store_offset_from_message`, ...) and put its side effect behind a trait of
//! your own:
//!
//! ```
//! use effectively_once::{EffectSink, KafkaConsumer};
//! use rdkafka::ClientConfig;
//! use rdkafka::consumer::CommitMode;
//! use rdkafka::message::Message;
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! /// The side effect. Production implements it with an email API client.
//! pub trait Mailer {
//!     fn send(&self, event_id: &str) -> impl Future<Output = Result<(), BoxError>> + Send;
//! }
//!
//! /// Tests implement it with the kit's recording effect sink.
//! impl Mailer for EffectSink {
//!     async fn send(&self, event_id: &str) -> Result<(), BoxError> {
//!         Ok(self.perform(event_id).await?)
//!     }
//! }
//!
//! /// Process first, commit after: at-least-once.
//! pub async fn notification_service<C: KafkaConsumer, M: Mailer>(
//!     consumer: &C,
//!     mailer: &M,
//! ) -> Result<(), BoxError> {
//!     consumer.subscribe(&["task-events"])?;
//!     loop {
//!         let message = consumer.recv().await?;
//!         let event_id = std::str::from_utf8(message.payload().unwrap_or_default())?;
//!         mailer.send(event_id).await?;
//!         consumer.commit_message(&message, CommitMode::Sync)?;
//!     }
//! }
//!
//! pub fn config() -> ClientConfig {
//!     let mut config = ClientConfig::new();
//!     config
//!         .set("group.id", "notification-service")
//!         .set("enable.auto.commit", "false")
//!         .set("auto.offset.reset", "earliest")
//!         .set("session.timeout.ms", "6000");
//!     config
//! }
//! ```
//!
//! In production it runs on rdkafka:
//!
//! ```no_run
//! # use effectively_once::KafkaConsumer;
//! # type BoxError = Box<dyn std::error::Error + Send + Sync>;
//! # trait Mailer { fn send(&self, e: &str) -> impl Future<Output = Result<(), BoxError>> + Send; }
//! # async fn notification_service<C: KafkaConsumer, M: Mailer>(c: &C, m: &M) -> Result<(), BoxError> { Ok(()) }
//! # fn config() -> rdkafka::ClientConfig { rdkafka::ClientConfig::new() }
//! # struct SmtpMailer;
//! # impl Mailer for SmtpMailer { async fn send(&self, _: &str) -> Result<(), BoxError> { Ok(()) } }
//! use rdkafka::consumer::StreamConsumer;
//!
//! # async fn production() -> Result<(), BoxError> {
//! let consumer: StreamConsumer = config().set("bootstrap.servers", "kafka:9092").create()?;
//! notification_service(&consumer, &SmtpMailer).await
//! # }
//! ```
//!
//! # Crash it where it hurts
//!
//! In a test the same function runs on the simulator. A [`FaultSchedule`] says where to inject
//! what: here, crash the instance after the email for the record at offset 1 was sent, right
//! before its offset is committed:
//!
//! ```
//! # use effectively_once::{EffectSink, KafkaConsumer};
//! # use rdkafka::ClientConfig;
//! # use rdkafka::consumer::CommitMode;
//! # use rdkafka::message::Message;
//! # type BoxError = Box<dyn std::error::Error + Send + Sync>;
//! # trait Mailer { fn send(&self, event_id: &str) -> impl Future<Output = Result<(), BoxError>> + Send; }
//! # impl Mailer for EffectSink {
//! #     async fn send(&self, event_id: &str) -> Result<(), BoxError> { Ok(self.perform(event_id).await?) }
//! # }
//! # async fn notification_service<C: KafkaConsumer, M: Mailer>(consumer: &C, mailer: &M) -> Result<(), BoxError> {
//! #     consumer.subscribe(&["task-events"])?;
//! #     loop {
//! #         let message = consumer.recv().await?;
//! #         let event_id = std::str::from_utf8(message.payload().unwrap_or_default())?;
//! #         mailer.send(event_id).await?;
//! #         consumer.commit_message(&message, CommitMode::Sync)?;
//! #     }
//! # }
//! # fn config() -> ClientConfig {
//! #     let mut config = ClientConfig::new();
//! #     config.set("group.id", "notification-service").set("enable.auto.commit", "false")
//! #         .set("auto.offset.reset", "earliest").set("session.timeout.ms", "6000");
//! #     config
//! # }
//! use effectively_once::{Anchor, Fault, FaultSchedule, InputRecord, Operation, Simulation};
//!
//! # /*
//! #[test]
//! # */
//! fn notification_service_survives_a_crash_before_the_commit() -> Result<(), Box<dyn std::error::Error>> {
//!     let crash_before_commit = Anchor::on(Operation::CommitMessage).record(0, 1);
//!     let mut sim = Simulation::builder();
//!     sim.topic("task-events", 1)
//!         .faults(FaultSchedule::new().with(crash_before_commit, Fault::CrashBefore));
//!     for id in ["evt-0", "evt-1", "evt-2"] {
//!         sim.produce(InputRecord::new("task-events").key(id).payload(id));
//!     }
//!     let outcome = sim.build()?.run(|ctx| async move {
//!         let consumer = ctx.create_consumer(&config())?;
//!         notification_service(&consumer, &ctx.effect_sink("email")).await
//!     })?;
//!
//!     let emails = outcome.history().effect_counts("email");
//!     assert_eq!(emails["evt-1"], 2, "the crash window sends evt-1 twice");
//!     assert!(outcome.history().to_string().contains("i0#1     CRASHED (fault: crash before commit_message)"));
//!     Ok(())
//! }
//! # notification_service_survives_a_crash_before_the_commit().unwrap();
//! ```
//!
//! # Read the timeline
//!
//! [`History`](history::History)'s `Display` is the run's timeline, one line per event, with the virtual time and
//! the instance incarnation it happened in (`i0#1` is instance 0's first life, `i0#2` its
//! restart). The run above prints:
//!
//! ```text
//!      0.011000s  i0#1     recv task-events[0]@1 key="evt-1"
//!      0.015000s  i0#1     effect email(evt-1): performed
//!      0.015000s  i0#1     FAULT: crash before the commit_message of task-events[0]@1
//!      0.015000s  i0#1     CRASHED (fault: crash before commit_message)
//!      1.015000s  i0#2     started
//!      1.015000s  cluster  group "notification-service" rebalancing (generation 1 ends)
//!      1.015000s  i0#2     joined group "notification-service" as rdkafka-2
//!      6.015000s  i0#1     member rdkafka-1 of group "notification-service" session timed out
//!      6.015000s  cluster  group "notification-service" generation 2 (range): rdkafka-2 <- task-events[0]
//!      6.015000s  i0#2     assigned task-events[0] from 1 (group "notification-service" generation 2)
//!      6.020000s  i0#2     recv task-events[0]@1 key="evt-1"
//!      6.023000s  i0#2     effect email(evt-1): performed
//! ```
//!
//! The crashed instance sent no LeaveGroup, so its restart waits for the coordinator to notice
//! the silence (`session.timeout.ms`, 6 s of virtual time, no real waiting) before the partition
//! is reassigned from the last committed offset, and the email goes out again.
//!
//! # Effects in your own database
//!
//! When the side effect is a write to the consumer's own database (an upsert by natural key, a
//! state transition, a dedup mark in the outcome's transaction), keep that database in a
//! [`DurableStore`] and tell the [`Verifier`] how to read the effect off the final state with a
//! [`StoreEffect`](ledger::StoreEffect) query: each event's effect must be there exactly once.
//!
//! ```
//! use effectively_once::{
//!     ConsumerHandle, InstanceContext, KafkaConsumer, Verifier, assert_effectively_once,
//! };
//! use rdkafka::ClientConfig;
//! use rdkafka::consumer::CommitMode;
//! use rdkafka::message::Message;
//!
//! type BoxError = Box<dyn std::error::Error + Send + Sync>;
//!
//! /// Upserts an order row per event (the event id is the order's natural key), then commits.
//! async fn order_projection(ctx: InstanceContext) -> Result<(), BoxError> {
//!     let mut config = ClientConfig::new();
//!     config
//!         .set("group.id", "orders")
//!         .set("enable.auto.commit", "false")
//!         .set("auto.offset.reset", "earliest");
//!     let consumer = ctx.create_consumer(&config)?;
//!     let mut store = ctx.durable_store()?;
//!     store.transaction(|tx| {
//!         tx.execute_batch("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, body TEXT)")
//!     })?;
//!     consumer.subscribe(&["events"])?;
//!     loop {
//!         let message = consumer.recv().await?;
//!         let parsed: Result<serde_json::Value, _> =
//!             serde_json::from_slice(message.payload().unwrap_or_default());
//!         if let Some(id) = parsed.ok().and_then(|v| v["event_id"].as_str().map(String::from)) {
//!             store.transaction(|tx| {
//!                 tx.execute(
//!                     "INSERT INTO orders (id, body) VALUES (?1, 'placed')
//!                      ON CONFLICT (id) DO UPDATE SET body = excluded.body",
//!                     [&id],
//!                 )
//!             })?;
//!         }
//!         consumer.commit_message(&message, CommitMode::Sync)?;
//!     }
//! }
//!
//! let mut verifier = Verifier::default();
//! verifier.store_effect("order row", "SELECT id FROM orders");
//! assert_effectively_once!(order_projection, &verifier);
//! ```
//!
//! With a plain `INSERT` into a table without the key, the same assertion fails: a crash after
//! the store commit and before the offset commit stores the order twice.
//!
//! # Pipelines: exactly-once with transactions
//!
//! A consume-transform-produce pipeline writes records, not effects. Name its output topics
//! and how an output names its input event; [`assert_exactly_once!`] then reads each output
//! topic as a `read_committed` consumer would and expects exactly one committed output per
//! input event on each, the input offsets committed if and only if the outputs are, and no
//! record of an aborted transaction handed to the application. The fault kinds
//! [`FaultKind::Zombie`] (a process frozen mid-transaction) and
//! [`FaultKind::TransactionTimeout`] target transactions; ambiguous and failed
//! `commit_transaction` calls come with the commit kinds.
//!
//! ```no_run
//! use effectively_once::ledger::OutputTopic;
//! use effectively_once::{InstanceContext, Verifier, assert_exactly_once};
//! # type BoxError = Box<dyn std::error::Error + Send + Sync>;
//! # async fn summarizer(ctx: InstanceContext) -> Result<(), BoxError> { Ok(()) }
//!
//! let mut verifier = Verifier::default();
//! verifier.topic("task-events").output_topic(OutputTopic::new("task-summaries", 2, |record| {
//!     // Each summary is keyed by the event id it summarizes.
//!     String::from_utf8(record.key.clone()?).ok()
//! }));
//! assert_exactly_once!(summarizer, &verifier);
//! ```
//!
//! # Real brokers
//!
//! The same consumer and scenarios run on a real Kafka-protocol broker, in real time, on
//! librdkafka: [`broker::BrokerProvider`] names librdkafka's mock cluster (in-process), a broker
//! container, or a cluster of yours. With [`Verifier::broker`] (or `EFFECTIVELY_ONCE_BROKER=mock`
//! in the environment) the search still runs on the simulator and the verdict is then confirmed
//! on the broker: the minimal counterexample replayed there, or sampled scenarios on a pass,
//! compared with the simulator's verdicts ([`compare_on_broker`](check::compare_on_broker)). A broker is probed first
//! ([`broker::self_check`]); invariants that rely on a guarantee it lacks are reported as not
//! checkable on it ([`NotCheckable`](check::NotCheckable)), never as a consumer bug.
//!
//! ```no_run
//! use effectively_once::broker::BrokerProvider;
//! use effectively_once::{Verifier, assert_effectively_once};
//! # async fn notification_service(ctx: effectively_once::InstanceContext) {}
//!
//! let mut verifier = Verifier::default();
//! verifier.broker(Some(BrokerProvider::MockCluster));
//! assert_effectively_once!(notification_service, &verifier);
//! ```
//!
//! # What the simulator models
//!
//! - Topics with dense offsets; keyed records land where librdkafka's partitioners put them
//!   (`consistent_random` by default, `murmur2_random`, ...).
//! - Consumer groups with the classic protocol: members, generations, the eager `range` and
//!   `roundrobin` assignors and `cooperative-sticky` (incremental rebalancing: a member keeps
//!   what it owns through a rebalance, the callbacks list only the partitions revoked or
//!   added, moved partitions reach their new owner in a follow-up rebalance), rebalances on
//!   join, leave, session timeout and `max.poll.interval.ms` breach; commits from a stale
//!   generation fail with `ILLEGAL_GENERATION` / `UNKNOWN_MEMBER_ID`, as Kafka answers them.
//! - Static membership (`group.instance.id`, KIP-345): a member restarting within its session
//!   takes its place back under a new member id, with its partitions and without a rebalance;
//!   a static member's close sends no LeaveGroup (its partitions wait for its session to run
//!   out); after a `max.poll.interval.ms` breach it loses its assignment and rejoins in its own
//!   place; of two live consumers with one instance id the older is fenced
//!   (`FENCED_INSTANCE_ID`: librdkafka's fatal error, `MessageConsumption(Fatal)` from the next
//!   poll, no commit after it). Modelled on Kafka's coordinator and librdkafka's source: no broker
//!   reachable here plays it (the mock cluster has no KIP-345), so on a broker the kit probes it
//!   and refuses static consumers where it is not honoured.
//! - Manual assignment (`assign`, `incremental_assign`), `seek`, `pause`/`resume`.
//! - librdkafka's offset handling: `enable.auto.offset.store`, `enable.auto.commit` with
//!   `auto.commit.interval.ms`, commit on revoke and on close, `commit_message` committing
//!   offset + 1, `auto.offset.reset`.
//! - Producers: acks, librdkafka's retry after a lost acknowledgement (a duplicate without
//!   `enable.idempotence`, dropped by the broker with it).
//! - Transactions: `transactional.id` with producer id and epoch, `init_transactions` fencing
//!   older instances and aborting their open transaction, `begin_transaction`,
//!   `send_offsets_to_transaction` (offsets committed only with the transaction),
//!   `commit_transaction`, `abort_transaction`, `transaction.timeout.ms`; commit and abort
//!   markers occupy offsets; `read_committed` consumers stop at the last stable offset and skip
//!   aborted records, `read_uncommitted` ones see them. `send_offsets_to_transaction` checks
//!   the consumer's group metadata (KIP-447): a consumer removed from the group or of an older
//!   generation makes the transaction abortable, so zombies cannot commit. A run does not
//!   quiesce while a transaction is open. Errors are librdkafka's own, with its fatal /
//!   abortable flags.
//! - Faults at every client call, effect-sink call and durable-store commit ([`Operation`]):
//!   crash before or after, definite failure, ambiguous failure, lost ack, stall, freeze,
//!   and a broker restart ([`Fault::BrokerRestart`]): every consumer's next poll reports the
//!   lost connection, fetches, produce requests and synchronous commits wait for the broker,
//!   and an outage longer than a member's `session.timeout.ms` costs it its session (its
//!   partitions are revoked as lost, its waiting commit fails with `WaitingForCoordinator`).
//!   Sessions that run out during an outage are expired at their deadline; the coordinator's
//!   reload of the groups after a restart is not modelled. A failed offset commit returns
//!   `REBALANCE_IN_PROGRESS` and an ambiguous one `Local: Timed out`: measured on librdkafka's
//!   mock cluster, those are what it hands to the application (it retries a commit refused as
//!   `COORDINATOR_NOT_AVAILABLE` or `REQUEST_TIMED_OUT` until it goes through).
//! - Durable consumer state ([`DurableStore`], SQLite) that survives crashes within a run.
//! - Virtual time: a paused tokio clock drives every timeout.
//!
//! # How the crate is organised
//!
//! The root holds what a test is written in: the client traits a consumer is written against
//! ([`KafkaConsumer`], [`KafkaProducer`], ...), what an instance gets ([`InstanceContext`],
//! [`EffectSink`], [`DurableStore`]), hand-chosen faults ([`Simulation`], [`FaultSchedule`]) and
//! generated ones ([`Verifier`], [`check()`], the `assert_*!` macros). The rest is in modules,
//! in the order data flows: [`scenario`] (generated cases, plain data whose faults are anchored to
//! input records and resolved when the run writes them), the run (instances, the fault plan and
//! the one interception step every client call, effect and store commit goes through, the
//! driver) on a backend behind one trait (the simulator, or librdkafka against a [`broker`];
//! neither knows the other, and the [`Consumer`] and [`Producer`] an instance gets are the
//! backend's own clients), the [`history`] of what happened, the effect [`ledger`], the [`invariant`]s judging history and ledger, and the
//! [`check`](mod@check) module that searches, shrinks and reports.
//!
//! # Features
//!
//! - `containers`: broker containers ([`BrokerProvider::Container`](broker::BrokerProvider::Container))
//!   through testcontainers, labelled and removed with their run; without it a container broker
//!   is refused with [`BrokerError::ContainersDisabled`](broker::BrokerError::ContainersDisabled).
//!   The simulator and librdkafka's mock cluster need no feature and no Docker.
//!
//! # Limitations
//!
//! - Not modelled yet: the consumer's wait for unstable offsets (KIP-447's `require_stable`;
//!   no fault pauses a process between `send_offsets_to_transaction` and
//!   `commit_transaction`, where it would matter), the KIP-848 group protocol (`group.protocol=consumer`), regex subscriptions, replication
//!   (so `acks=1` and `acks=all` behave alike), retention.
//!   Configurations that rely on them are refused with a clear error rather than ignored.
//! - Heartbeats are continuous: a crashed or frozen member is removed exactly
//!   `session.timeout.ms` after its last sign of life. JoinGroup and SyncGroup are one step.
//! - Instances run on one current-thread tokio runtime with paused time. `tokio::spawn`,
//!   `tokio::time`, channels and `select!` work. A `select!` without `biased;` picks among
//!   ready branches with tokio's own random generator, which only tokio's unstable API can
//!   seed: build the tests with `RUSTFLAGS="--cfg tokio_unstable"` and the run's seed seeds
//!   it, so that such a run replays (`tests/scenarios/determinism.rs`); without that flag
//!   the run may differ from one execution to the next (add `biased;` to the `select!`, or
//!   set the flag). As with rdkafka, a `recv` future dropped before it resolves (a `select!`
//!   whose other branch won) consumes nothing, and a record given to `send` is delivered
//!   even if its delivery future is dropped.
//!   Tasks spawned with [`InstanceContext::spawn`] end with their incarnation (dropped when
//!   they next wake); tasks spawned with plain `tokio::spawn` stop at their next call into
//!   the kit once it crashed. Code that spins without awaiting freezes the whole simulation.
//!   Synchronous calls (commits, stores) take no virtual time.
//!   A synchronous program (a `poll(timeout)` loop around rdkafka's `BaseConsumer`) runs on a
//!   thread of its own with [`InstanceContext::run_blocking`], taking turns with the run:
//!   it must make every call into the kit through its
//!   [`BlockingContext`](clients::BlockingContext) (a `std::thread::sleep` or a busy loop
//!   stops the whole run).
//! - A [`Fault::Freeze`] stops the instance's own task and the tasks it spawned with
//!   [`InstanceContext::spawn`] until the thaw. A task spawned with plain `tokio::spawn` is
//!   outside the freeze: its timers keep firing, and its asynchronous calls into the kit
//!   (recv, send, effects) wait for the thaw, but its synchronous calls (commits, offset
//!   stores, transactional calls, durable-store writes) go through during the freeze.
//! - `Simulation::run` builds its own runtime: call it from a plain `#[test]`, not from
//!   `#[tokio::test]`.
//! - On a real broker ([`Simulation::run_on`]) runs are in real time and not deterministic;
//!   `Freeze` faults, faults on librdkafka's auto-commit and input produced after the start
//!   are refused; a manual asynchronous commit is made synchronously (rust-rdkafka 0.39
//!   reports its outcome nowhere, fede1024/rust-rdkafka#856, and the history needs it; the
//!   call returns `Ok` as the asynchronous one does); group generations are not known to
//!   the kit (`-1`); broker restarts run on the mock cluster and containers only, for at
//!   most 500 ms (see [`broker`]); request-error injection (the mock's `request_errors`) is not used: failed
//!   and ambiguous calls are injected at the client boundary, as on the simulator.
#![deny(missing_docs)]

// The root is the vocabulary a test is written in; everything else lives in the public modules
// below, each item under one path.
pub mod broker;
pub mod check;
mod client;
pub mod clients;
mod error;
pub mod history;
pub mod invariant;
pub mod ledger;
mod macros;
mod process;
mod report;
mod run;
pub mod scenario;
mod sim;
mod simulation;

// Writing the consumer: rdkafka's API as traits.
pub use client::{
    ConsumerHandle, KafkaConsumer, KafkaProducer, RebalanceContext, RebalanceHandler,
};
// What an instance of it gets in a test.
pub use run::effect::{EffectError, EffectSink};
pub use run::store::DurableStore;
pub use run::{Consumer, Producer};
pub use run::{InstanceContext, InstanceExit};
// Running it through chosen faults.
pub use history::operation::{Fault, Operation};
pub use run::{InputRecord, Simulation, SimulationBuilder};
pub use scenario::fault::{Anchor, FaultSchedule};
pub use simulation::Outcome;
// Checking it against generated ones.
pub use check::config::Verifier;
#[doc(hidden)]
pub use check::entry::_macro_support;
pub use check::entry::{CheckError, check, check_effectively_once};
pub use check::report::{Counterexample, Passed};
pub use error::Error;
pub use invariant::semantics::Semantics;
pub use scenario::strategy::FaultKind;
