//! The fixture consumers run on rdkafka's own types, and rdkafka and the simulator agree on the
//! errors librdkafka answers locally (no broker needed).

use effectively_once::{
    ConsumerHandle, InstanceContext, KafkaConsumer, RebalanceContext, RebalanceHandler, Simulation,
};
use rdkafka::consumer::{CommitMode, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::fixtures::notification::{BoxError, EMAIL, Notifier, TaskCreated};
use crate::fixtures::{auto_commit, commit_after, commit_before};

struct NoCallbacks;
impl RebalanceHandler for NoCallbacks {}

/// Never called: proves at compile time that each fixture loop accepts rdkafka's consumer (with
/// and without a rebalance context) exactly as it accepts the simulator's.
#[allow(dead_code)]
async fn fixture_loops_accept_rdkafka_consumers<N: Notifier + Sync>(
    plain: StreamConsumer,
    with_handler: StreamConsumer<RebalanceContext<NoCallbacks>>,
    notifier: N,
) -> Result<(), BoxError> {
    commit_after::run(&plain, &notifier).await?;
    commit_before::run(&with_handler, &notifier).await?;
    auto_commit::run(&std::sync::Arc::new(plain), &notifier).await
}

/// A broker address nothing listens on: librdkafka creates clients without connecting.
fn offline(config: &mut ClientConfig) -> &mut ClientConfig {
    config
        .set("bootstrap.servers", "127.0.0.1:9")
        .set("log_level", "0")
}

/// The error kinds of calls librdkafka answers without a broker.
fn local_errors<C: ConsumerHandle>(consumer: &C) -> Vec<String> {
    let mut stored = TopicPartitionList::new();
    stored
        .add_partition_offset("task-events", 0, Offset::Offset(1))
        .expect("valid offset");
    vec![
        format!("assignment: {:?}", consumer.assignment().map(|a| a.count())),
        format!(
            "commit_consumer_state: {:?}",
            consumer.commit_consumer_state(CommitMode::Sync)
        ),
        format!(
            "store_offsets with auto store: {:?}",
            consumer.store_offsets(&stored)
        ),
    ]
}

#[test]
fn rdkafka_types_implement_the_client_traits_and_agree_with_the_simulator_on_local_errors() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let real_errors = {
        let _context = runtime.enter(); // rdkafka's StreamConsumer spawns onto tokio
        let mut config = auto_commit::config();
        let real: StreamConsumer = offline(&mut config)
            .create()
            .expect("librdkafka creates an offline consumer");
        let _producer: FutureProducer = offline(&mut ClientConfig::new())
            .create()
            .expect("offline producer");
        local_errors(&real)
    };
    assert_eq!(
        real_errors,
        vec![
            "assignment: Ok(0)".to_string(),
            format!(
                "commit_consumer_state: {:?}",
                Err::<(), _>(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))
            ),
            format!(
                "store_offsets with auto store: {:?}",
                Err::<(), _>(KafkaError::StoreOffset(RDKafkaErrorCode::InvalidArgument))
            ),
        ]
    );
    drop(runtime);

    let simulated = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = simulated.clone();
    let mut sim = Simulation::builder();
    sim.topic("task-events", 1);
    sim.build()
        .expect("valid")
        .run(move |ctx: InstanceContext| {
            let seen = seen.clone();
            async move {
                let consumer = ctx.create_consumer(&auto_commit::config())?;
                seen.borrow_mut().extend(local_errors(&consumer));
                // The notifier trait works on the kit's sink, as on a production client.
                ctx.effect_sink(EMAIL)
                    .send_notification(&TaskCreated::numbered(0))
                    .await?;
                Ok::<(), BoxError>(())
            }
        })
        .expect("runs");
    assert_eq!(*simulated.borrow(), real_errors);
}

#[test]
fn the_consumer_trait_is_usable_through_an_arc() {
    fn assert_consumer<C: KafkaConsumer>() {}
    assert_consumer::<std::sync::Arc<StreamConsumer>>();
    assert_consumer::<std::sync::Arc<effectively_once::Consumer>>();
}
