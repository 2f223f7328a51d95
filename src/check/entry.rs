//! The entry points: check a consumer, confirm the verdict on a broker, and the support the
//! assertion macros call.

use std::future::Future;
use std::sync::Arc;

use crate::broker::BrokerProvider;
use crate::error::Error;
use crate::invariant::Semantics;
use crate::run::{InstanceContext, InstanceExit};
use differential::Differential;

use super::{Counterexample, Passed, Verifier, differential, search};

/// Why a check did not pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The consumer broke an invariant; the counterexample is minimal.
    #[error("{0}")]
    Violated(Box<Counterexample>),
    /// The verifier's settings make no sense.
    #[error("effectively-once: invalid verifier setting: {0}")]
    InvalidConfig(String),
    /// A simulation could not be set up or run.
    #[error("effectively-once: the simulation failed: {0}")]
    Simulation(#[from] Error),
    /// A scenario's verdict on the real broker differs from the simulator's, and the broker's
    /// self-check does not explain it: a broker that is not Kafka, or a simulator that is
    /// not faithful; both runs are in the report.
    #[error("effectively-once: {0}")]
    BrokerDisagrees(Box<Differential>),
    /// The check stopped for a reason of its own (proptest aborted, the worker died).
    #[error("effectively-once: the check was aborted: {0}")]
    Aborted(String),
}

impl CheckError {
    /// The counterexample, when the consumer broke an invariant.
    pub fn counterexample(&self) -> Option<&Counterexample> {
        match self {
            CheckError::Violated(c) => Some(c),
            _ => None,
        }
    }
}

/// Checks that `factory`'s consumer has the delivery `semantics`, over `verifier.cases`
/// generated scenarios; on a violation, shrinks it and returns the minimal counterexample.
///
/// `factory` starts one instance of the consumer from its [`InstanceContext`], as in
/// [`Simulation::run`](crate::Simulation::run); it runs on a worker thread, so it must be
/// `Send + Sync + 'static` (the futures it returns need not be `Send`).
pub fn check<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    factory: F,
) -> Result<Passed, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    verifier.validate()?;
    if semantics == Semantics::ExactlyOnce && verifier.outputs.is_empty() {
        return Err(CheckError::InvalidConfig(
            "exactly-once is judged on output topics: declare at least one with \
             `Verifier::output_topic`"
                .into(),
        ));
    }
    // The search and the shrinking run on the simulator; a real broker confirms the verdict.
    let mut on_simulator = verifier.clone();
    on_simulator.broker = None;
    let factory = Arc::new(factory);
    let result = search::run(semantics, on_simulator, factory.clone());
    let mut result = match &verifier.broker {
        None => result,
        Some(provider) => confirm_on_broker(semantics, verifier, provider, result, move |ctx| {
            factory(ctx)
        }),
    };
    // On the calling thread: the picture is named after the test running on it.
    if let Err(CheckError::Violated(c)) = &mut result {
        if verifier.picture {
            c.draw_picture();
        }
    }
    result
}

/// Replays the counterexample, or on a pass [`Verifier::broker_cases`] sampled scenarios, on
/// the broker; a disagreement with the simulator is an error of its own.
fn confirm_on_broker<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    provider: &BrokerProvider,
    result: Result<Passed, CheckError>,
    factory: F,
) -> Result<Passed, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Clone + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    match result {
        Err(CheckError::Violated(mut c)) if !c.hung => {
            let compared = differential::compare_on_broker(
                semantics,
                verifier,
                provider,
                &c.scenario,
                factory,
            )?;
            if compared.agrees() == Some(false) {
                return Err(CheckError::BrokerDisagrees(Box::new(compared)));
            }
            c.broker = Some(compared.to_string());
            Err(CheckError::Violated(c))
        }
        Ok(mut passed) => {
            let scenarios =
                differential::broker_scenarios(verifier, provider, verifier.broker_cases);
            let mut lines = Vec::new();
            let mut agreed = 0;
            for scenario in &scenarios {
                let compared = differential::compare_on_broker(
                    semantics,
                    verifier,
                    provider,
                    scenario,
                    factory.clone(),
                )?;
                match compared.agrees() {
                    Some(false) => return Err(CheckError::BrokerDisagrees(Box::new(compared))),
                    Some(true) => agreed += 1,
                    None => {}
                }
                lines.push(compared.to_string());
            }
            passed.broker = Some(format!(
                "{agreed} of {} sampled scenarios agreed on {provider}:\n{}",
                scenarios.len(),
                lines.join("")
            ));
            Ok(passed)
        }
        other => other,
    }
}

/// [`check`] with [`Semantics::EffectivelyOnce`].
pub fn check_effectively_once<F, Fut>(verifier: &Verifier, factory: F) -> Result<Passed, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    check(Semantics::EffectivelyOnce, verifier, factory)
}

/// [`check`] with [`Semantics::AtLeastOnce`].
pub fn check_at_least_once<F, Fut>(verifier: &Verifier, factory: F) -> Result<Passed, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    check(Semantics::AtLeastOnce, verifier, factory)
}

/// [`check`] with [`Semantics::ExactlyOnce`].
pub fn check_exactly_once<F, Fut>(verifier: &Verifier, factory: F) -> Result<Passed, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    check(Semantics::ExactlyOnce, verifier, factory)
}

/// [`check`] with [`Semantics::AtMostOnce`].
pub fn check_at_most_once<F, Fut>(verifier: &Verifier, factory: F) -> Result<Passed, CheckError>
where
    F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    check(Semantics::AtMostOnce, verifier, factory)
}

#[doc(hidden)]
pub mod _macro_support {
    use super::*;

    /// What the `assert_*!` macros call: checks and panics with the report.
    #[track_caller]
    pub fn assert_semantics<F, Fut>(
        semantics: Semantics,
        verifier: &Verifier,
        factory: F,
        file: &'static str,
    ) where
        F: Fn(InstanceContext) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: InstanceExit,
    {
        let mut verifier = verifier.clone();
        if verifier.source_file.is_none() {
            verifier.source_file(file);
        }
        if let Err(e) = check(semantics, &verifier, factory) {
            panic!("{e}");
        }
    }
}
