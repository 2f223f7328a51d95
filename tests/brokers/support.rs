//! Helpers shared by the broker tests.

use std::future::Future;

use effectively_once::broker::BrokerProvider;
use effectively_once::check::{broker_scenarios, compare_on_broker};
use effectively_once::{InstanceContext, InstanceExit, Semantics, Verifier};

/// The container provider the tests use: `EFFECTIVELY_ONCE_KAFKA_IMAGE` must name a local image
/// (`ci/test.sh` builds one around Tansu and sets it); no registry is reachable here.
pub fn container() -> BrokerProvider {
    let Ok(image) = std::env::var("EFFECTIVELY_ONCE_KAFKA_IMAGE") else {
        panic!(
            "the container tests need EFFECTIVELY_ONCE_KAFKA_IMAGE naming a local broker image: \
             run ci/test.sh, or `EFFECTIVELY_ONCE_KAFKA_IMAGE=$(ci/tansu-image.sh) cargo test`"
        );
    };
    BrokerProvider::Container { image }
}

pub use crate::zoo_support::{counterexample, store_verifier, verifier as email_verifier};

/// Replays the simulator's minimal counterexample on `provider` and asserts that the broker
/// breaks the same invariants (those its self-check cannot support aside).
pub fn assert_broker_agrees<F, Fut>(
    provider: &BrokerProvider,
    semantics: Semantics,
    verifier: &Verifier,
    factory: F,
) where
    F: Fn(InstanceContext) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let c = counterexample(effectively_once::check(
        semantics,
        verifier,
        factory.clone(),
    ));
    let compared = compare_on_broker(semantics, verifier, provider, &c.scenario, factory).unwrap();
    println!("{}\n{compared}", c.scenario);
    assert_eq!(compared.agrees(), Some(true), "{compared}");
    assert!(!compared.simulator.violations.is_empty(), "{compared}");
}

/// Runs `count` sampled scenarios with faults on the simulator and on `provider`; every
/// verdict must agree. Returns the comparisons.
pub fn assert_sampled_scenarios_agree<F, Fut>(
    provider: &BrokerProvider,
    semantics: Semantics,
    verifier: &Verifier,
    count: usize,
    factory: F,
) -> Vec<effectively_once::check::Differential>
where
    F: Fn(InstanceContext) -> Fut + Clone + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let scenarios = broker_scenarios(verifier, provider, count);
    assert_eq!(scenarios.len(), count, "sampled scenarios");
    scenarios
        .iter()
        .map(|scenario| {
            let compared =
                compare_on_broker(semantics, verifier, provider, scenario, factory.clone())
                    .unwrap();
            println!("{scenario}\n{compared}");
            assert_eq!(compared.agrees(), Some(true), "{scenario}\n{compared}");
            compared
        })
        .collect()
}
