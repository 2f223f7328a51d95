//! Helpers shared by the broker tests.

use std::future::Future;
use std::io::Write;

use effectively_once::broker::{BrokerProvider, DEFAULT_KAFKA_IMAGE};
use effectively_once::check::{broker_scenarios, compare_on_broker};
use effectively_once::{InstanceContext, InstanceExit, Semantics, Verifier};

/// Set (to anything but `0`) by `ci/test.sh`: a container test that cannot run fails instead
/// of reporting that it was skipped.
const REQUIRE_CONTAINERS: &str = "EFFECTIVELY_ONCE_REQUIRE_CONTAINERS";

/// The container provider the tests use, or why they cannot run here: the `containers`
/// feature, Docker and a local image (`EFFECTIVELY_ONCE_KAFKA_IMAGE`, default
/// [`DEFAULT_KAFKA_IMAGE`]; no registry is reachable on every machine) are needed.
pub fn container() -> Result<BrokerProvider, String> {
    if !cfg!(feature = "containers") {
        return Err(
            "built without the `containers` feature (`cargo test --features \
                    containers`, as ci/test.sh does)"
                .into(),
        );
    }
    let image = std::env::var("EFFECTIVELY_ONCE_KAFKA_IMAGE")
        .unwrap_or_else(|_| DEFAULT_KAFKA_IMAGE.to_string());
    match std::process::Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
    {
        Err(e) => Err(format!("Docker is not available ({e})")),
        Ok(out) if !out.status.success() => Err(format!(
            "image {image} is not available locally ({}): pull it, or run ci/test.sh \
             (`EFFECTIVELY_ONCE_KAFKA_IMAGE=$(ci/tansu-image.sh)` builds a local Tansu image)",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => Ok(BrokerProvider::Container { image }),
    }
}

/// [`container`], or, when the container tests cannot run here, a note saying why and a
/// return from the test (a failure under `EFFECTIVELY_ONCE_REQUIRE_CONTAINERS`).
macro_rules! require_container {
    () => {
        match $crate::support::container() {
            Ok(provider) => provider,
            Err(why) => {
                $crate::support::skipped(&why);
                return;
            }
        }
    };
}
pub(crate) use require_container;

/// Reports a container test that cannot run here; fails it where containers are required.
pub fn skipped(why: &str) {
    let required = std::env::var(REQUIRE_CONTAINERS).is_ok_and(|v| v != "0");
    if required {
        panic!("{REQUIRE_CONTAINERS} is set, but the container tests cannot run: {why}");
    }
    // Straight to the process's stderr: libtest would capture an `eprintln!` of a passing test.
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(std::io::stderr(), "effectively-once: {test} SKIPPED: {why}");
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
