//! Which commit errors librdkafka hands to the application, measured on its mock cluster with
//! the broker's answers forged: the ground for the errors the kit's commit faults return
//! (`Fault::Fail`: `REBALANCE_IN_PROGRESS`, nothing committed; `Fault::Ambiguous`:
//! `Local: Timed out`, committed all the same). librdkafka retries a commit the coordinator
//! refuses as unavailable or busy until it goes through: those refusals never reach a
//! synchronous commit's caller, so the kit does not inject them.

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

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
/// consumer of it with a 1 s socket timeout.
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
