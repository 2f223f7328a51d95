//! Configuration errors: nonsense simulation settings and fault schedules are refused by
//! `build`, `run` inside a tokio runtime is refused, and consumer configurations that librdkafka
//! refuses (missing `group.id`, static membership, invalid values, misspelt properties) are
//! refused by the simulator with the error librdkafka gives.

use std::sync::Arc;
use std::time::Duration;

use effectively_once::scenario::FaultError;
use effectively_once::{Anchor, Error, Fault, FaultSchedule, InputRecord, Operation, Simulation};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

use crate::support::*;

// ----- nonsense configuration -----

#[test]
fn nonsense_simulation_settings_are_rejected_by_build() {
    let mut zero_instances = Simulation::builder();
    zero_instances.topic(TOPIC, 1).instances(0);
    assert!(matches!(
        zero_instances.build(),
        Err(Error::InvalidSetting(_))
    ));

    for partitions in [0, -1] {
        let mut no_partitions = Simulation::builder();
        no_partitions.topic(TOPIC, partitions);
        let err = no_partitions.build().expect_err("rejected");
        assert!(matches!(err, Error::InvalidSetting(_)), "{err}");
        assert!(err.to_string().contains("at least one partition"), "{err}");
    }

    let mut twice = Simulation::builder();
    twice.topic(TOPIC, 1).topic(TOPIC, 2);
    assert!(matches!(twice.build(), Err(Error::InvalidSetting(_))));

    let mut undeclared = Simulation::builder();
    undeclared
        .topic(TOPIC, 1)
        .produce(InputRecord::new("nope").payload("x"));
    assert!(matches!(undeclared.build(), Err(Error::UnknownTopic(t)) if t == "nope"));

    let mut late_undeclared = Simulation::builder();
    late_undeclared
        .topic(TOPIC, 1)
        .produce_at(secs(60), InputRecord::new("nope").payload("x"));
    assert!(matches!(
        late_undeclared.build(),
        Err(Error::UnknownTopic(_))
    ));

    let mut no_such_partition = Simulation::builder();
    no_such_partition
        .topic(TOPIC, 2)
        .produce(InputRecord::new(TOPIC).partition(2).payload("x"));
    assert!(matches!(
        no_such_partition.build(),
        Err(Error::UnknownPartition {
            partition: 2,
            partitions: 2,
            ..
        })
    ));

    let mut latency = Simulation::builder();
    latency.latency(Duration::from_millis(5), Duration::from_millis(1));
    assert!(matches!(latency.build(), Err(Error::InvalidSetting(_))));

    let mut no_time = Simulation::builder();
    no_time.time_limit(Duration::ZERO);
    assert!(matches!(no_time.build(), Err(Error::InvalidSetting(_))));
}

#[test]
fn fault_schedules_that_cannot_fire_are_rejected_by_build() {
    for (anchor, fault) in [
        (Anchor::on(Operation::CommitMessage), Fault::Stall(secs(1))),
        (Anchor::on(Operation::Commit), Fault::Freeze(secs(1))),
        (Anchor::on(Operation::Effect), Fault::LoseAck),
        (Anchor::on(Operation::Recv), Fault::Ambiguous),
        (Anchor::on(Operation::StoreOffset), Fault::Ambiguous),
    ] {
        let operation = anchor.operation();
        let mut b = builder(1, 1);
        b.faults(FaultSchedule::new().with(anchor, fault));
        match b.build() {
            Err(Error::Fault(FaultError::Unsupported {
                operation: op,
                fault: f,
                index: 0,
                ..
            })) => assert_eq!((op, f), (operation, fault)),
            other => panic!("{fault} on {operation}: {other:?}"),
        }
    }
    let mut b = builder(1, 1);
    b.faults(FaultSchedule::new().with(Anchor::on(Operation::Recv).occurrence(0), Fault::Fail));
    assert!(matches!(
        b.build(),
        Err(Error::Fault(FaultError::ZeroOccurrence { .. }))
    ));
    // An anchor on an input record the simulation never produces could never fire.
    let mut b = builder(1, 1);
    b.faults(FaultSchedule::new().with(Anchor::on(Operation::Recv).input(1), Fault::CrashAfter));
    match b.build() {
        Err(Error::InvalidSetting(why)) => assert!(
            why.contains("names input record 1, but only 1 are produced"),
            "{why}"
        ),
        other => panic!("an anchor past the input: {other:?}"),
    }
    b.faults(FaultSchedule::new().with(Anchor::on(Operation::Recv).input(0), Fault::CrashAfter));
    assert!(b.build().is_ok());
}

#[test]
fn run_called_inside_a_tokio_runtime_is_refused_with_nested_runtime() {
    let sim = builder(1, 1).build().unwrap();
    let notes = Notes::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(async {
        let notes = notes.clone();
        sim.run(move |_ctx| {
            notes.push("factory called");
            async {}
        })
    });
    assert!(matches!(result, Err(Error::NestedRuntime)), "{result:?}");
    assert!(notes.all().is_empty());
    // Outside the runtime the same simulation runs.
    assert!(sim.run(|_ctx| async {}).is_ok());
}

#[test]
fn consumer_configs_without_group_id_are_client_creation_errors_and_static_members_are_created() {
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        builder(1, 1)
            .build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let mut no_group = ClientConfig::new();
                    no_group.set("auto.offset.reset", "earliest");
                    let mut empty_group = manual_commit(GROUP);
                    empty_group.set("group.id", "");
                    let mut static_member = manual_commit(GROUP);
                    static_member.set("group.instance.id", "pod-0");
                    for config in [no_group, empty_group, static_member] {
                        let kind = match ctx.create_consumer(&config) {
                            Err(KafkaError::ClientCreation(msg)) => {
                                format!("ClientCreation({})", !msg.is_empty())
                            }
                            Err(e) => format!("other error {e:?}"),
                            Ok(_) => "created".to_string(),
                        };
                        notes.push(kind);
                    }
                    notes.push(format!(
                        "valid: {}",
                        ctx.create_consumer(&manual_commit(GROUP)).is_ok()
                    ));
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert_eq!(
        notes.all(),
        vec![
            "ClientCreation(true)",
            "ClientCreation(true)",
            "created",
            "valid: true"
        ]
    );
}

// ----- configurations librdkafka refuses -----

/// What librdkafka itself says when a consumer is created from `pairs` (no broker needed: it
/// refuses bad configurations before connecting).
fn librdkafka_consumer_error(pairs: &[(&str, &str)]) -> Option<KafkaError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", "127.0.0.1:9")
        .set("log_level", "0");
    for (k, v) in pairs {
        c.set(*k, *v);
    }
    c.create::<rdkafka::consumer::BaseConsumer>().err()
}

/// What the simulator says when an instance creates a consumer and a producer from `pairs`.
fn simulator_errors(
    pairs: Vec<(&'static str, &'static str)>,
) -> (Option<KafkaError>, Option<KafkaError>) {
    let consumer_error = Arc::new(std::sync::Mutex::new(None));
    let producer_error = Arc::new(std::sync::Mutex::new(None));
    {
        let (ce, pe) = (consumer_error.clone(), producer_error.clone());
        builder(1, 0)
            .build()
            .unwrap()
            .run(move |ctx| {
                let mut config = ClientConfig::new();
                for (k, v) in &pairs {
                    config.set(*k, *v);
                }
                *ce.lock().unwrap() = ctx.create_consumer(&config).err();
                *pe.lock().unwrap() = ctx.create_producer(&config).err();
                async {}
            })
            .unwrap();
    }
    let c = consumer_error.lock().unwrap().take();
    let p = producer_error.lock().unwrap().take();
    (c, p)
}

const REFUSED_BY_LIBRDKAFKA: [&[(&str, &str)]; 5] = [
    &[("group.id", "g"), ("enable.auto.commit", "yes please")],
    &[("group.id", "g"), ("session.timeout.ms", "0")],
    &[("group.id", "g"), ("auto.offset.reset", "bogus")],
    &[
        ("group.id", "g"),
        ("partition.assignment.strategy", "bogus"),
    ],
    &[
        ("group.id", "g"),
        ("session.timeout.ms", "60000"),
        ("max.poll.interval.ms", "10000"),
    ],
];

#[test]
fn consumer_configs_librdkafka_refuses_are_refused_by_the_simulator_too() {
    for pairs in REFUSED_BY_LIBRDKAFKA {
        let real = librdkafka_consumer_error(pairs);
        assert!(real.is_some(), "librdkafka refuses {pairs:?}");
        let (sim, _) = simulator_errors(pairs.to_vec());
        assert!(
            matches!(
                sim,
                Some(KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..))
            ),
            "{pairs:?}: librdkafka says {real:?}, the simulator {sim:?}"
        );
    }
}

#[test]
fn invalid_property_values_are_client_config_errors_as_in_rdkafka() {
    for pairs in REFUSED_BY_LIBRDKAFKA {
        let real = librdkafka_consumer_error(pairs).expect("refused");
        let (sim, _) = simulator_errors(pairs.to_vec());
        let sim = sim.expect("refused");
        assert_eq!(
            std::mem::discriminant(&sim),
            std::mem::discriminant(&real),
            "{pairs:?}: librdkafka says {real:?}, the simulator {sim:?}"
        );
    }
}

#[test]
fn a_misspelt_configuration_property_is_refused_as_librdkafka_refuses_it() {
    // `enable.auto.comit`: librdkafka says "No such configuration property"; silently ignoring
    // it leaves auto-commit on in the simulation while production would not even start.
    let pairs = vec![("group.id", "g"), ("enable.auto.comit", "false")];
    let real = librdkafka_consumer_error(&pairs);
    assert!(
        matches!(real, Some(KafkaError::ClientConfig(..))),
        "{real:?}"
    );
    let (consumer, producer) = simulator_errors(pairs);
    assert!(consumer.is_some(), "the simulator created the consumer");
    assert!(producer.is_some(), "the simulator created the producer");
}
