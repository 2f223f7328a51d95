//! What a counterexample's report shows beyond its verdict: the timeline with repeated cycles
//! folded, the picture (a self-contained HTML page with an SVG timeline), and diagnoses of
//! known anti-patterns. Each part reads a finished [`Case`] and nothing else: the history, the
//! scenario and the verdict, never the run or a backend.

pub(crate) mod diagnosis;
pub(crate) mod picture;
pub(crate) mod timeline;

use crate::history::{History, PublishedEvent};
use crate::invariant::Violation;
use crate::scenario::Scenario;

/// A minimal failing case as the report's parts read it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Case<'a> {
    /// The minimal scenario.
    pub scenario: &'a Scenario,
    /// Where its events landed.
    pub published: &'a [PublishedEvent],
    /// Its run's history.
    pub history: &'a History,
    /// The invariants it broke, most telling first.
    pub violations: &'a [Violation],
}
