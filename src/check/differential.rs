//! The same scenario on the simulator and on a real broker, and whether their verdicts agree.
//!
//! The simulator is the reference; a disagreement is a finding either way: a broker that does
//! not behave as Kafka does (its self-check usually says which guarantee it lacks), or a
//! simulator that is not faithful to it.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use super::Verifier;
use super::judge::{CaseRun, run_scenario};
use crate::broker::{BrokerError, BrokerProvider};
use crate::error::Error;
use crate::history::{Fault, Operation};
use crate::invariant::Semantics;
use crate::run::{InstanceContext, InstanceExit};
use crate::scenario::Scenario;

/// One scenario's verdicts on the simulator and on a real broker.
#[derive(Debug)]
pub struct Differential {
    /// The broker.
    pub provider: BrokerProvider,
    /// The run on the simulator.
    pub simulator: CaseRun,
    /// The run on the broker, or why the scenario cannot run there.
    pub broker: Result<CaseRun, String>,
    /// The broker run's wall time (broker start included).
    pub broker_wall: Duration,
}

fn broken(run: &CaseRun) -> BTreeSet<&str> {
    run.violations
        .iter()
        .map(|v| v.invariant.as_str())
        .collect()
}

impl Differential {
    /// Whether the verdicts agree: the same invariants broken on both, leaving out those the
    /// broker cannot support (its not-checkable ones). `None` when the scenario could not run
    /// on the broker.
    pub fn agrees(&self) -> Option<bool> {
        let broker = self.broker.as_ref().ok()?;
        let undecided: BTreeSet<&str> = broker
            .not_checkable
            .iter()
            .map(|n| n.violation.invariant.as_str())
            .collect();
        let simulator: BTreeSet<&str> = broken(&self.simulator)
            .difference(&undecided)
            .copied()
            .collect();
        Some(simulator == broken(broker))
    }
}

fn verdict(run: &CaseRun) -> String {
    if run.violations.is_empty() {
        "passed".to_string()
    } else {
        let names: Vec<&str> = broken(run).into_iter().collect();
        format!("violated {}", names.join(", "))
    }
}

impl fmt::Display for Differential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let agreement = match self.agrees() {
            Some(true) => "the verdicts agree",
            Some(false) => "THE VERDICTS DISAGREE",
            None => "not run on the broker",
        };
        writeln!(f, "on the simulator and on {}: {agreement}", self.provider)?;
        writeln!(f, "  simulator: {}", verdict(&self.simulator))?;
        match &self.broker {
            Ok(run) => {
                writeln!(
                    f,
                    "  {}: {} ({:.1}s wall time)",
                    self.provider,
                    verdict(run),
                    self.broker_wall.as_secs_f64()
                )?;
                for undecided in &run.not_checkable {
                    writeln!(f, "  {undecided}")?;
                }
                if self.agrees() == Some(false) {
                    for v in run.violations.iter().chain(&self.simulator.violations) {
                        writeln!(f, "  {}: {}", v.invariant, v.summary)?;
                    }
                    writeln!(f, "  timeline on the broker (real time):")?;
                    write!(f, "{}", run.outcome.history())?;
                }
            }
            Err(why) => writeln!(f, "  {}: cannot run it: {why}", self.provider)?,
        }
        Ok(())
    }
}

/// Runs `scenario` on the simulator and on `provider`'s broker and compares the verdicts.
/// `verifier`'s own broker setting is ignored.
pub fn compare_on_broker<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    provider: &BrokerProvider,
    scenario: &Scenario,
    factory: F,
) -> Result<Differential, Error>
where
    F: Fn(InstanceContext) -> Fut + Clone + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let mut on_simulator = verifier.clone();
    on_simulator.broker = None;
    let simulator = run_scenario(semantics, &on_simulator, scenario, factory.clone())?;
    let mut on_broker = verifier.clone();
    on_broker.broker = Some(provider.clone());
    let started = Instant::now();
    let broker = match run_scenario(semantics, &on_broker, scenario, factory) {
        Ok(run) => Ok(run),
        // The scenario needs what the broker cannot do: a finding, not a failure to set up.
        Err(Error::Broker(
            e @ (BrokerError::Unsupported(_)
            | BrokerError::UnexpectedOffset {
                transactional: true,
                ..
            }),
        )) => Err(e.to_string()),
        Err(e) => return Err(e),
    };
    Ok(Differential {
        provider: provider.clone(),
        simulator,
        broker,
        broker_wall: started.elapsed(),
    })
}

/// Whether a scenario can run on `provider`: no frozen process (librdkafka heartbeats on its
/// own threads), no fault on librdkafka's own auto-commit, no stall longer than 20 s (it takes
/// its length in wall time), and broker restarts only on brokers the kit started (the mock
/// cluster, a container), none longer than 500 ms.
pub fn runs_on_a_broker(scenario: &Scenario, provider: &BrokerProvider) -> bool {
    scenario.faults.iter().all(|f| match f.fault {
        Fault::Freeze(_) => false,
        Fault::Stall(delay) if delay > crate::simulation::MAX_BROKER_STALL => false,
        Fault::BrokerRestart(down) => {
            !matches!(provider, BrokerProvider::External { .. })
                && down <= crate::simulation::MAX_BROKER_OUTAGE
        }
        _ => f.operation != Operation::AutoCommit,
    })
}

/// `count` scenarios of `verifier`'s space (from its seed) that can run on `provider`
/// ([`runs_on_a_broker`]), at least one fault each where the space has faults.
pub fn broker_scenarios(
    verifier: &Verifier,
    provider: &BrokerProvider,
    count: usize,
) -> Vec<Scenario> {
    let strategy = verifier.space.strategy();
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&verifier.seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed),
    );
    let mut scenarios = Vec::new();
    // Bounded: a space whose every scenario freezes a process yields none.
    for _ in 0..count * 50 {
        if scenarios.len() == count {
            break;
        }
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            break;
        };
        let scenario = tree.current();
        let faulty = !scenario.faults.is_empty() || verifier.space.kinds().is_empty();
        if runs_on_a_broker(&scenario, provider) && faulty {
            scenarios.push(scenario);
        }
    }
    scenarios
}
