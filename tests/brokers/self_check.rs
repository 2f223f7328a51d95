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
        ]
    );
}

#[test]
fn the_tansu_container() {
    println!("{:?}", honoured(&container()));
}
