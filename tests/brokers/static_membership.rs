//! Static group membership (`group.instance.id`, KIP-345) on real brokers: the case of
//! `tests/conformance/static_membership_cases.rs` where the broker keeps static members (its
//! self-check probes it: Apache Kafka does); where it does not (librdkafka's mock cluster has
//! no KIP-345; Tansu keeps them erratically) static consumers are refused with a clear error
//! instead of being played as dynamic members.

use std::time::Duration;

use effectively_once::broker::BrokerProvider;
use effectively_once::broker::self_check::Capability;
use effectively_once::{InputRecord, InstanceContext, Simulation};
use rdkafka::error::KafkaError;

use crate::notes::Notes;
use crate::support::require_container;

#[path = "../conformance/static_membership_cases.rs"]
mod cases;

/// On a broker that keeps static members (Apache Kafka) the case runs and meets the
/// simulator's expectation; on one that does not (Tansu, whose probe fails) static consumers
/// are refused, saying why.
#[test]
fn a_static_member_restarting_within_its_session_keeps_its_partitions_on_the_container() {
    let provider = require_container!();
    let found = provider.self_check().unwrap();
    match found.shortfall(Capability::KeepsStaticMembers) {
        None => {
            let (notes, _) = cases::restart_within_the_session(Some(&provider));
            cases::assert_kept_without_rebalance(&notes);
        }
        Some(shortfall) => {
            println!("{provider}: {shortfall}");
            assert_refused(&provider);
        }
    }
}

#[test]
fn the_mock_cluster_refuses_static_members_saying_why() {
    assert_refused(&BrokerProvider::MockCluster);
}

fn assert_refused(provider: &BrokerProvider) {
    let mut b = Simulation::builder();
    b.topic("t", 1)
        .produce(InputRecord::new("t").payload("x"))
        .max_restarts(0)
        .time_limit(Duration::from_secs(30));
    let notes = Notes::default();
    let seen = notes.clone();
    b.build()
        .unwrap()
        .run_on(provider, move |ctx: InstanceContext| {
            let notes = seen.clone();
            async move {
                match ctx.create_consumer(&cases::config("member-0")) {
                    Err(KafkaError::ClientCreation(why)) => notes.push(why),
                    Err(e) => notes.push(format!("another error: {e}")),
                    Ok(_) => notes.push("created"),
                }
            }
        })
        .unwrap();
    let notes = notes.all();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("cannot play static group membership")
            && notes[0].contains("a static member restarting within its session keeps its place"),
        "{notes:?}"
    );
}
