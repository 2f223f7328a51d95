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
    /// The history's times are wall-clock time since a run of real processes started (a
    /// black-box run), not the simulation's virtual time; its scenario has no seed.
    pub real_time: bool,
}

impl Case<'_> {
    /// What the history's times are, for the time axis' label.
    pub(crate) fn clock(&self) -> &'static str {
        if self.real_time {
            "wall time"
        } else {
            "virtual time"
        }
    }

    /// The instances the lanes stand for: the first one's number and how many. A simulated
    /// run's lanes are `i0`, `i1`, ... for the scenario's instances and any the history
    /// names; a black-box run numbers its instances from 1, so its lanes start there.
    pub(crate) fn lanes(&self) -> (u32, u32) {
        let ids = || {
            self.history
                .entries()
                .iter()
                .filter_map(|e| e.incarnation.map(|i| i.instance.0))
        };
        let first = if self.real_time {
            ids().min().unwrap_or(0)
        } else {
            0
        };
        let last = ids().max().map_or(0, |id| id + 1);
        (
            first,
            (last.saturating_sub(first)).max(self.scenario.instances),
        )
    }

    /// The scenario as text, its events' positions filled in; a black-box run's without the
    /// simulation seed it does not have.
    pub(crate) fn scenario_text(&self) -> String {
        let text = self.scenario.with_positions(self.published).to_string();
        if self.real_time {
            let seed = format!(", simulation seed {}", self.scenario.seed);
            text.replacen(&seed, "", 1)
        } else {
            text
        }
    }
}
