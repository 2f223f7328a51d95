//! Which commit errors librdkafka hands to the application, measured on its mock cluster with
//! the broker's answers forged: the ground for the errors the kit's commit faults return
//! (`Fault::Fail`: `REBALANCE_IN_PROGRESS`, nothing committed; `Fault::Ambiguous`:
//! `Local: Timed out`, committed all the same). librdkafka retries a commit the coordinator
//! refuses as unavailable or busy until it goes through: those refusals never reach a
//! synchronous commit's caller, so the kit does not inject them.

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use effectively_once::broker::BrokerProvider;
use effectively_once::{Anchor, Fault, FaultSchedule, InputRecord, Operation, Simulation};
use rdkafka::bindings::{
    rd_kafka_handle_mock_cluster, rd_kafka_mock_broker_push_request_error_rtts,
    rd_kafka_mock_cluster_bootstraps, rd_kafka_mock_cluster_t,
    rd_kafka_mock_group_initial_rebalance_delay_ms, rd_kafka_mock_push_request_errors_array,
    rd_kafka_mock_topic_create,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, Message, Offset};

/// Kafka's API key of OffsetCommit.
const OFFSET_COMMIT: i16 = 8;

/// A mock cluster (alive as long as the returned owner) with topic `t` of 20 records, and a
/// consumer of it with a 1 s socket timeout and fetches that wait at most 100 ms.
///
/// The fetch wait is the margin of the first commit's retry: COORDINATOR_NOT_AVAILABLE makes
/// librdkafka mark its coordinator dead and look it up again, and the broker answers each
/// lookup only after the long-poll fetch queued before it on the same connection. Captured
/// on a loaded machine with librdkafka's default 500 ms wait: about 50 lookups in a row, each
/// answered after a 500 ms fetch, kept the member without a heartbeat for 27 s, and once past
/// its 45 s session (librdkafka's default) the retried commit got UNKNOWN_MEMBER_ID. With
/// 100 ms, as many rounds take about 5 s: 40 s of slack.
fn cluster_and_consumer() -> (BaseProducer, *mut rd_kafka_mock_cluster_t, BaseConsumer) {
    let owner: BaseProducer = ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()
        .unwrap();
    let topic = CString::new("t").unwrap();
    // SAFETY: the cluster lives as long as `owner`, which the caller keeps.
    let (cluster, bootstrap) = unsafe {
        let cluster = rd_kafka_handle_mock_cluster(owner.client().native_ptr());
        assert!(!cluster.is_null());
        rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        rd_kafka_mock_topic_create(cluster, topic.as_ptr(), 1, 1);
        let bootstrap = CStr::from_ptr(rd_kafka_mock_cluster_bootstraps(cluster))
            .to_string_lossy()
            .into_owned();
        (cluster, bootstrap)
    };
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    for n in 0..20 {
        let payload = format!("e{n}");
        producer
            .send(BaseRecord::<(), _>::to("t").payload(&payload))
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "g")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("socket.timeout.ms", "1000")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    consumer.subscribe(&["t"]).unwrap();
    (owner, cluster, consumer)
}

fn next(consumer: &BaseConsumer) -> BorrowedMessage<'_> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            return m.unwrap();
        }
    }
    panic!("no record within 20 s");
}

fn committed(consumer: &BaseConsumer) -> Offset {
    consumer
        .committed(Duration::from_secs(10))
        .unwrap()
        .elements()[0]
        .offset()
}

#[test]
fn librdkafka_retries_refused_commits_but_reports_a_rebalance_and_its_own_timeout() {
    let (_owner, cluster, consumer) = cluster_and_consumer();
    // Refusals librdkafka retries: the commit goes through, the application sees success.
    for error in [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
    ] {
        let m = next(&consumer);
        // SAFETY: the cluster is alive (its owner is held above).
        unsafe { rd_kafka_mock_push_request_errors_array(cluster, OFFSET_COMMIT, 1, &error) };
        let result = consumer.commit_message(&m, CommitMode::Sync);
        assert!(result.is_ok(), "{error:?}: {result:?}");
        assert_eq!(committed(&consumer), Offset::Offset(m.offset() + 1));
    }
    // REBALANCE_IN_PROGRESS reaches the application at once; nothing is committed.
    let m = next(&consumer);
    let before = committed(&consumer);
    let error = RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
    // SAFETY: as above.
    unsafe { rd_kafka_mock_push_request_errors_array(cluster, OFFSET_COMMIT, 1, &error) };
    let refused = consumer.commit_message(&m, CommitMode::Sync).unwrap_err();
    assert_eq!(committed(&consumer), before);
    // Six answers slower than socket.timeout.ms: librdkafka gives up with its own timeout,
    // although the broker applied the commit.
    let m = next(&consumer);
    let slow = RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;
    // SAFETY: as above; the variadic list is six (error, round-trip ms) pairs.
    unsafe {
        rd_kafka_mock_broker_push_request_error_rtts(
            cluster,
            1,
            OFFSET_COMMIT,
            6,
            slow,
            3000i32,
            slow,
            3000i32,
            slow,
            3000i32,
            slow,
            3000i32,
            slow,
            3000i32,
            slow,
            3000i32,
        )
    };
    let timed_out = consumer.commit_message(&m, CommitMode::Sync).unwrap_err();
    // The mock applies a commit when the request arrives and only delays its answer (3 s):
    // 4 s leave 1 s more than the delay, and the commit was applied seconds before.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(committed(&consumer), Offset::Offset(m.offset() + 1));

    // The kit's commit faults return those two errors, on the simulator as on a broker.
    let kit = kit_commit_errors();
    assert_eq!(kit, [refused.to_string(), timed_out.to_string()]);
    println!("refused: {refused}\ntimed out: {timed_out}");
}

/// What `commit_message` returns under `Fault::Fail` and `Fault::Ambiguous` on the simulator.
fn kit_commit_errors() -> Vec<String> {
    use effectively_once::{ConsumerHandle, KafkaConsumer};
    let mut b = Simulation::builder();
    b.topic("t", 1)
        .produce(InputRecord::new("t").payload("a"))
        .produce(InputRecord::new("t").payload("b"))
        .faults(
            FaultSchedule::new()
                .with(
                    Anchor::on(Operation::CommitMessage).record(0, 0),
                    Fault::Fail,
                )
                .with(
                    Anchor::on(Operation::CommitMessage).record(0, 1),
                    Fault::Ambiguous,
                ),
        );
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = errors.clone();
    b.build()
        .unwrap()
        .run(move |ctx| {
            let errors = seen.clone();
            async move {
                let consumer = ctx.create_consumer(
                    ClientConfig::new()
                        .set("group.id", "g")
                        .set("enable.auto.commit", "false")
                        .set("auto.offset.reset", "earliest"),
                )?;
                consumer.subscribe(&["t"])?;
                loop {
                    let m = consumer.recv().await?;
                    if let Err(e) = consumer.commit_message(&m, CommitMode::Sync) {
                        errors.lock().unwrap().push(e.to_string());
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            }
        })
        .unwrap();
    errors.lock().unwrap().clone()
}

/// A consumer context that keeps what the commit callbacks got.
#[derive(Default)]
struct Callbacks(std::sync::Mutex<Vec<String>>);

impl rdkafka::client::ClientContext for Callbacks {}
impl rdkafka::consumer::ConsumerContext for Callbacks {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        _offsets: &rdkafka::TopicPartitionList,
    ) {
        self.0.lock().unwrap().push(format!("{result:?}"));
    }
}

/// A consumer of topic `t` on the mock cluster at `bootstrap` that keeps its commit callbacks.
fn consumer_with_callbacks(bootstrap: &str, auto_commit: bool) -> BaseConsumer<Callbacks> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", if auto_commit { "auto" } else { "async" })
        .set("enable.auto.commit", auto_commit.to_string())
        .set("auto.offset.reset", "earliest");
    if auto_commit {
        config.set("auto.commit.interval.ms", "100");
    }
    let consumer: BaseConsumer<Callbacks> =
        config.create_with_context(Callbacks::default()).unwrap();
    consumer.subscribe(&["t"]).unwrap();
    consumer
}

/// Polls `consumer` for `how_long`; returns the commit callbacks it got.
fn callbacks_within(consumer: &BaseConsumer<Callbacks>, how_long: Duration) -> Vec<String> {
    let deadline = Instant::now() + how_long;
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(50));
    }
    consumer.context().0.lock().unwrap().clone()
}

/// rust-rdkafka 0.39 submits a manual asynchronous commit with neither a reply queue nor a
/// callback, so `ConsumerContext::commit_callback` never hears of it, whether the broker
/// accepted or refused it (fede1024/rust-rdkafka#856, open); the call itself returns `Ok`.
/// librdkafka's own auto-commits do reach the callback. The simulator matches
/// (`tests/conformance/auto_commit.rs`).
#[test]
fn rdkafka_never_calls_the_commit_callback_for_a_manual_async_commit_only_for_auto_commits() {
    let (_owner, cluster, plain) = cluster_and_consumer();
    // SAFETY: the cluster lives as long as `_owner`.
    let bootstrap =
        unsafe { CStr::from_ptr(rdkafka::bindings::rd_kafka_mock_cluster_bootstraps(cluster)) }
            .to_string_lossy()
            .into_owned();
    drop(plain);
    let consumer = consumer_with_callbacks(&bootstrap, false);
    // Accepted.
    let m = next_of(&consumer);
    let accepted_at = m.offset() + 1;
    assert_eq!(consumer.commit_message(&m, CommitMode::Async), Ok(()));
    drop(m);
    assert_eq!(
        callbacks_within(&consumer, Duration::from_secs(2)),
        Vec::<String>::new()
    );
    assert_eq!(committed_of(&consumer), Offset::Offset(accepted_at));
    // Refused: the call still says Ok, nothing is committed, and no callback says otherwise.
    // (The polls above consumed the rest of the partition: commit an offset of it.)
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset("t", 0, Offset::Offset(accepted_at + 5))
        .unwrap();
    let error = RDKafkaRespErr::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS;
    // SAFETY: as above.
    unsafe { rd_kafka_mock_push_request_errors_array(cluster, OFFSET_COMMIT, 1, &error) };
    assert_eq!(consumer.commit(&offsets, CommitMode::Async), Ok(()));
    assert_eq!(
        callbacks_within(&consumer, Duration::from_secs(2)),
        Vec::<String>::new()
    );
    assert_eq!(committed_of(&consumer), Offset::Offset(accepted_at));
    // librdkafka's auto-commit reports through the callback.
    let auto = consumer_with_callbacks(&bootstrap, true);
    drop(next_of(&auto));
    let got = callbacks_within(&auto, Duration::from_secs(2));
    assert!(got.iter().any(|c| c == "Ok(())"), "{got:?}");
}

fn next_of<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
) -> BorrowedMessage<'_> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            return m.unwrap();
        }
    }
    panic!("no record within 20 s");
}

fn committed_of<C: rdkafka::consumer::ConsumerContext>(consumer: &BaseConsumer<C>) -> Offset {
    consumer
        .committed(Duration::from_secs(10))
        .unwrap()
        .elements()[0]
        .offset()
}

/// What a consumer of the kit sees of three asynchronous commits, the second refused
/// (`Fault::Fail`): the calls' results, the commit callbacks, and the commits the history
/// shows (`offset ok` or `offset refused`).
fn kit_async_commits(provider: Option<&BrokerProvider>) -> (Vec<String>, Vec<String>, Vec<String>) {
    use effectively_once::history::HistoryEvent;
    use effectively_once::{ConsumerHandle, KafkaConsumer, RebalanceHandler};
    use std::sync::{Arc, Mutex};

    struct Callbacks(Arc<Mutex<Vec<String>>>);
    impl RebalanceHandler for Callbacks {
        fn commit_callback(
            &self,
            result: rdkafka::error::KafkaResult<()>,
            _offsets: &rdkafka::TopicPartitionList,
        ) {
            self.0.lock().unwrap().push(format!("{result:?}"));
        }
    }

    let mut b = Simulation::builder();
    b.topic("t", 1).faults(FaultSchedule::new().with(
        Anchor::on(Operation::CommitMessage).record(0, 1),
        Fault::Fail,
    ));
    for payload in ["a", "b", "c"] {
        b.produce(InputRecord::new("t").payload(payload));
    }
    let results: Arc<Mutex<Vec<String>>> = Arc::default();
    let callbacks: Arc<Mutex<Vec<String>>> = Arc::default();
    let (seen_results, seen_callbacks) = (results.clone(), Arc::clone(&callbacks));
    let simulation = b.build().unwrap();
    let factory = move |ctx: effectively_once::InstanceContext| {
        let (results, callbacks) = (seen_results.clone(), seen_callbacks.clone());
        async move {
            let consumer = ctx.create_consumer_with_handler(
                ClientConfig::new()
                    .set("group.id", "g")
                    .set("enable.auto.commit", "false")
                    .set("auto.offset.reset", "earliest"),
                Callbacks(callbacks),
            )?;
            consumer.subscribe(&["t"])?;
            for _ in 0..3 {
                let m = consumer.recv().await?;
                let result = consumer.commit_message(&m, CommitMode::Async);
                results.lock().unwrap().push(format!("{result:?}"));
            }
            // Time for the requests to be answered, polling as a consumer does.
            let _ = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        }
    };
    let outcome = match provider {
        None => simulation.run(factory),
        Some(provider) => simulation.run_on(provider, factory),
    }
    .unwrap();
    let commits = outcome
        .history()
        .entries()
        .iter()
        .filter_map(|e| match &e.event {
            HistoryEvent::OffsetsCommitted { offsets, .. } => Some(format!("{} ok", offsets[0].1)),
            HistoryEvent::CommitRejected { offsets, .. } => {
                Some(format!("{} refused", offsets[0].1))
            }
            _ => None,
        })
        .collect();
    let results = results.lock().unwrap().clone();
    let callbacks = callbacks.lock().unwrap().clone();
    (results, callbacks, commits)
}

#[test]
fn an_async_commit_returns_ok_and_reports_to_no_callback_on_the_simulator_and_the_mock_cluster() {
    for provider in [None, Some(BrokerProvider::MockCluster)] {
        let (results, callbacks, commits) = kit_async_commits(provider.as_ref());
        assert_eq!(results, ["Ok(())"; 3], "{provider:?}");
        assert_eq!(callbacks, Vec::<String>::new(), "{provider:?}");
        assert_eq!(commits, ["1 ok", "2 refused", "3 ok"], "{provider:?}");
    }
}

/// librdkafka's close waits for the commits in flight before it leaves the group: an
/// asynchronous commit made right before a clean exit counts, on the simulator as on the
/// mock cluster, with a rebalance handler (the close revokes through it) or without.
#[test]
fn an_async_commit_made_right_before_a_clean_exit_counts() {
    for with_handler in [false, true] {
        async_commit_before_exit(with_handler);
    }
}

fn async_commit_before_exit(with_handler: bool) {
    use effectively_once::{ConsumerHandle, KafkaConsumer, RebalanceHandler};
    struct Default;
    impl RebalanceHandler for Default {}
    let mut b = Simulation::builder();
    b.topic("t", 1);
    for payload in ["a", "b"] {
        b.produce(InputRecord::new("t").payload(payload));
    }
    let simulation = b.build().unwrap();
    let factory = move |ctx: effectively_once::InstanceContext| async move {
        let mut config = ClientConfig::new();
        config
            .set("group.id", "g")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        let consumer = if with_handler {
            ctx.create_consumer_with_handler(&config, Default)?
        } else {
            ctx.create_consumer(&config)?
        };
        consumer.subscribe(&["t"])?;
        for _ in 0..2 {
            let m = consumer.recv().await?;
            consumer.commit_message(&m, CommitMode::Async)?;
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    };
    for provider in [None, Some(BrokerProvider::MockCluster)] {
        let outcome = match &provider {
            None => simulation.run(factory),
            Some(p) => simulation.run_on(p, factory),
        }
        .unwrap();
        assert_eq!(
            outcome.cluster().committed_offset("g", "t", 0),
            Some(2),
            "{provider:?}, with a handler: {with_handler}\n{}",
            outcome.history()
        );
    }
}
