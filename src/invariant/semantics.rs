//! The delivery semantics a consumer can claim, and the invariants each one checks.

use std::fmt;

use super::{
    AtLeastOnce, AtMostOnce, EffectivelyOnce, ExactlyOnce, Invariant, Liveness, NoAbortedRead,
    NoPhantomEffect, OffsetsMatchOutputs,
};

/// The delivery semantics a consumer claims, each with its set of invariants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Semantics {
    /// Each event's effect happens exactly once: nothing lost, nothing duplicated.
    EffectivelyOnce,
    /// Each event's effect happens at least once: nothing lost; duplicates allowed.
    AtLeastOnce,
    /// Each event's effect happens at most once: nothing duplicated; losses allowed.
    AtMostOnce,
    /// A consume-transform-produce pipeline: each input event's outputs are committed exactly
    /// once on every output topic, with the input offsets committed if and only if the outputs
    /// are. Needs at least one [`OutputTopic`](crate::ledger::OutputTopic).
    ExactlyOnce,
}

impl Semantics {
    /// The invariants checked for this semantic: liveness (the group gets to the end of the
    /// input; a check reports it after any safety invariant a case also breaks, and an event
    /// a stuck group never committed past is pending, not lost, so a wedged consumer is
    /// reported as such rather than as a loss),
    /// the delivery property itself, no phantom effect, no aborted read, and for
    /// [`ExactlyOnce`](Semantics::ExactlyOnce) offsets that match the outputs.
    pub fn invariants(self) -> Vec<Box<dyn Invariant>> {
        let delivery: Box<dyn Invariant> = match self {
            Semantics::EffectivelyOnce => Box::new(EffectivelyOnce),
            Semantics::AtLeastOnce => Box::new(AtLeastOnce),
            Semantics::AtMostOnce => Box::new(AtMostOnce),
            Semantics::ExactlyOnce => Box::new(ExactlyOnce),
        };
        let mut all: Vec<Box<dyn Invariant>> = vec![
            Box::new(Liveness::default()),
            delivery,
            Box::new(NoPhantomEffect),
            Box::new(NoAbortedRead),
        ];
        if self == Semantics::ExactlyOnce {
            all.push(Box::new(OffsetsMatchOutputs));
        }
        all
    }
}

impl fmt::Display for Semantics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Semantics::EffectivelyOnce => "effectively-once",
            Semantics::AtLeastOnce => "at-least-once",
            Semantics::AtMostOnce => "at-most-once",
            Semantics::ExactlyOnce => "exactly-once",
        })
    }
}
