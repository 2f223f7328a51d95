//! Effect sinks: the recorded, interceptable stand-ins for the outside world a consumer acts on
//! (an email service, a payment API).

use std::sync::Arc;

use crate::history::Operation;
use crate::history::{EffectOutcome, HistoryEvent};
use crate::run::core::{Crashed, Interception, unwind_crash};
use crate::run::freeze::thawed;

/// A failed effect-sink call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EffectError {
    /// The effect did not happen.
    #[error("{sink} failed for event {event_id:?}: the effect did not happen")]
    Failed {
        /// The sink's name.
        sink: String,
        /// The event the effect was for.
        event_id: String,
    },
    /// The call timed out: the effect may have happened (it did, in the simulator).
    #[error("{sink} timed out for event {event_id:?}: the effect may have happened")]
    TimedOut {
        /// The sink's name.
        sink: String,
        /// The event the effect was for.
        event_id: String,
    },
}

/// A side effect's destination in a simulation: every call is recorded in the history and is
/// an interception point ([`Operation::Effect`](crate::Operation::Effect)).
///
/// Implement your own effect trait (`EmailSender`, `PaymentGateway`) for `EffectSink` in tests
/// and for the real client in production. Sinks of the same name share their idempotency keys
/// across instances and restarts, as a payment provider does.
#[derive(Clone)]
pub struct EffectSink {
    interception: Interception,
    name: Arc<str>,
}

impl std::fmt::Debug for EffectSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EffectSink")
            .field("name", &self.name)
            .field("incarnation", &self.interception.incarnation)
            .finish()
    }
}

impl EffectSink {
    pub(crate) fn new(interception: Interception, name: &str) -> Self {
        EffectSink {
            interception,
            name: name.into(),
        }
    }

    /// The sink's name, as the history shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Performs the effect for `event_id`. Each call that succeeds (or times out after the
    /// work was done) is one more effect in the outside world.
    pub async fn perform(&self, event_id: &str) -> Result<(), EffectError> {
        self.call(event_id, None).await
    }

    /// Performs the effect unless `idempotency_key` was used before on a sink of this name, in
    /// which case nothing new happens and the call succeeds, as payment APIs behave.
    pub async fn perform_idempotent(
        &self,
        event_id: &str,
        idempotency_key: &str,
    ) -> Result<(), EffectError> {
        self.call(event_id, Some(idempotency_key)).await
    }

    async fn call(&self, event_id: &str, key: Option<&str>) -> Result<(), EffectError> {
        let effect = Operation::Effect;
        // Names the call in a crash's cause; kept across the await, so no `format_args!`.
        let what = EffectCall {
            sink: &self.name,
            event_id,
        };
        let incarnation = self.interception.incarnation;
        // A frozen process makes no call (this one comes from a task outside the freeze gate).
        thawed(&self.interception.run, incarnation).await;
        let prepared = {
            let mut run = self.interception.run.lock();
            let anchor = run.record_of_event(incarnation, event_id);
            match run.intercept_call(effect, incarnation, anchor.as_ref(), &what) {
                Err(Crashed) => None,
                Ok(injection) => {
                    if let Some(freeze) = injection.freeze {
                        // The process freezes right here, before the call proceeds.
                        run.freeze(incarnation, freeze);
                    }
                    let wait = injection.stall.unwrap_or_default() + run.latency();
                    Some((injection, wait))
                }
            }
        };
        self.interception.react_and_publish();
        let Some((injection, wait)) = prepared else {
            unwind_crash()
        };
        thawed(&self.interception.run, incarnation).await;
        tokio::time::sleep(wait).await;
        let result = {
            let mut run = self.interception.run.lock();
            if !run.alive(incarnation) {
                None
            } else {
                let outcome = if injection.fail {
                    EffectOutcome::Failed
                } else if key.is_some_and(|k| {
                    !run.idempotency_keys
                        .insert((self.name.to_string(), k.to_string()))
                }) {
                    EffectOutcome::Deduplicated
                } else if injection.ambiguous {
                    EffectOutcome::PerformedReportedFailed
                } else {
                    EffectOutcome::Performed
                };
                run.record(
                    Some(incarnation),
                    HistoryEvent::Effect {
                        sink: self.name.to_string(),
                        event_id: event_id.to_string(),
                        idempotency_key: key.map(str::to_string),
                        outcome,
                    },
                );
                run.complete_call(&injection, incarnation, &what)
                    .ok()
                    .map(|()| outcome)
            }
        };
        self.interception.react_and_publish();
        let sink = self.name.to_string();
        let event_id = event_id.to_string();
        match result {
            None => unwind_crash(),
            Some(EffectOutcome::Failed) => Err(EffectError::Failed { sink, event_id }),
            Some(_) if injection.ambiguous => Err(EffectError::TimedOut { sink, event_id }),
            Some(_) => Ok(()),
        }
    }
}

/// An effect call, as a crash's cause names it: `effect email(evt-0)`.
struct EffectCall<'a> {
    sink: &'a str,
    event_id: &'a str,
}

impl std::fmt::Display for EffectCall<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}({})", Operation::Effect, self.sink, self.event_id)
    }
}
