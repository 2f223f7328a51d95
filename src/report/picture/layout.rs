//! Where each mark goes: its lane (the cluster, then one per instance) and its column.
//!
//! The x axis is the history's order, packed, not linear time. A minimal counterexample
//! crowds a dozen entries into one virtual instant (a rebalance: joins, a new generation,
//! assignments) and then waits seconds for a session timeout; a linear scale would pile the
//! first on one pixel and spend the page on the second. So every distinct timestamp gets a
//! group of columns, labelled with its time, and a gap before the next group; inside a group
//! each entry takes the first column after the previous entry's that is free in its lane.
//! Time never runs backwards along the axis, entries of different lanes at the same instant
//! line up vertically, and no two marks of one lane overlap.

use std::collections::BTreeMap;
use std::time::Duration;

use super::marks::{self, Mark, Records};
use crate::history::{Fault, HistoryEntry, HistoryEvent, human_duration};
use crate::report::Case;

/// The width of a column, in pixels.
pub(super) const COLUMN: i64 = 30;
/// The extra space before each new instant.
pub(super) const GAP: i64 = 14;
/// The lane names' margin.
pub(super) const LEFT: i64 = 78;
/// The time axis' height above the lanes.
pub(super) const TOP: i64 = 64;
/// A lane's height.
pub(super) const LANE: i64 = 62;
/// The margin after the last column.
pub(super) const RIGHT: i64 = 64;

/// One shown entry, placed.
pub(super) struct Placed<'a> {
    /// Its index in the history (0-based).
    pub index: usize,
    /// The entry.
    pub entry: &'a HistoryEntry,
    /// How it is drawn.
    pub mark: Mark,
    /// Its column.
    pub column: usize,
    /// Its lane: 0 for the cluster, 1 + the instance index for an instance.
    pub lane: usize,
}

/// One life of an instance on its lane, from its start to its crash, panic or exit.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Life {
    /// The lane.
    pub lane: usize,
    /// The incarnation number.
    pub number: u32,
    /// The first column.
    pub first: usize,
    /// The last column (the end of the picture while it still ran).
    pub last: usize,
    /// Whether it ended in a crash or a panic.
    pub crashed: bool,
}

/// A stretch of a lane where the instance was frozen or stalled by a fault.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Pause {
    /// The lane.
    pub lane: usize,
    /// The fault's column.
    pub first: usize,
    /// The column of the lane's first entry once the pause is over (the end of the picture
    /// when there is none).
    pub last: usize,
    /// What it was: `frozen 1min`, `stalled 6min`.
    pub what: String,
}

/// The picture's grid.
pub(super) struct Layout<'a> {
    /// The lanes' names: `cluster`, `i0`, `i1`, ...
    pub lanes: Vec<String>,
    /// The shown entries, in order.
    pub placed: Vec<Placed<'a>>,
    /// Each instant's first column and time, in order.
    pub instants: Vec<(usize, Duration)>,
    /// The instant each column belongs to.
    instant_of: Vec<usize>,
    /// The instances' lives.
    pub lives: Vec<Life>,
    /// The faults' freezes and stalls.
    pub pauses: Vec<Pause>,
}

impl<'a> Layout<'a> {
    pub(super) fn new(case: &Case<'a>) -> Self {
        let records = Records::new(case.published);
        let entries = case.history.entries();
        let (first, count) = case.lanes();
        let mut lanes = vec!["cluster".to_string()];
        lanes.extend((first..first + count).map(|i| format!("i{i}")));
        let mut placed = Vec::new();
        let mut instants: Vec<(usize, Duration)> = Vec::new();
        let mut instant_of = Vec::new();
        let mut free = vec![0usize; lanes.len()];
        let mut previous = 0;
        for (index, entry) in entries.iter().enumerate() {
            let Some(mark) = marks::mark(entry, &records) else {
                continue;
            };
            let lane = entry
                .incarnation
                .map_or(0, |i| (i.instance.0 - first) as usize + 1);
            if instants.last().is_none_or(|(_, at)| *at != entry.at) {
                instants.push((instant_of.len(), entry.at));
            }
            let start = instants.last().map_or(0, |(first, _)| *first);
            let column = start.max(free[lane]).max(previous);
            while instant_of.len() <= column {
                instant_of.push(instants.len() - 1);
            }
            free[lane] = column + 1;
            previous = column;
            placed.push(Placed {
                index,
                entry,
                mark,
                column,
                lane,
            });
        }
        let end = instant_of.len().saturating_sub(1);
        let lives = lives(&placed, end);
        let pauses = pauses(&placed, end);
        Layout {
            lanes,
            placed,
            instants,
            instant_of,
            lives,
            pauses,
        }
    }

    /// How many columns there are.
    pub(super) fn columns(&self) -> usize {
        self.instant_of.len()
    }

    /// The centre of `column`.
    pub(super) fn x(&self, column: usize) -> i64 {
        let instant = self.instant_of.get(column).copied().unwrap_or(0);
        LEFT + GAP + column as i64 * COLUMN + instant as i64 * GAP + COLUMN / 2
    }

    /// The picture's width.
    pub(super) fn width(&self) -> i64 {
        match self.columns() {
            0 => LEFT + RIGHT + COLUMN,
            n => self.x(n - 1) + COLUMN / 2 + RIGHT,
        }
    }

    /// The top of `lane`.
    pub(super) fn y(&self, lane: usize) -> i64 {
        TOP + lane as i64 * LANE
    }

    /// The picture's height.
    pub(super) fn height(&self) -> i64 {
        self.y(self.lanes.len()) + 8
    }
}

/// Each incarnation's span: from its first entry to the crash, panic or exit that ends it;
/// one that never ended runs to `end`. Entries the coordinator records for a dead incarnation
/// later (its session timing out) stay outside its span.
fn lives(placed: &[Placed<'_>], end: usize) -> Vec<Life> {
    let mut spans: BTreeMap<(usize, u32), Life> = BTreeMap::new();
    for p in placed {
        let Some(inc) = p.entry.incarnation else {
            continue;
        };
        let life = spans.entry((p.lane, inc.number)).or_insert(Life {
            lane: p.lane,
            number: inc.number,
            first: p.column,
            last: usize::MAX,
            crashed: false,
        });
        if life.last != usize::MAX {
            continue;
        }
        match &p.entry.event {
            HistoryEvent::InstanceCrashed { .. } | HistoryEvent::InstancePanicked { .. } => {
                life.last = p.column;
                life.crashed = true;
            }
            HistoryEvent::InstanceExited { .. } => life.last = p.column,
            _ => {}
        }
    }
    spans
        .into_values()
        .map(|mut life| {
            if life.last == usize::MAX {
                life.last = end.max(life.first);
            }
            life
        })
        .collect()
}

/// Each freeze or stall: from its fault to the lane's first entry once it is over.
fn pauses(placed: &[Placed<'_>], end: usize) -> Vec<Pause> {
    let mut pauses = Vec::new();
    for (i, p) in placed.iter().enumerate() {
        let HistoryEvent::FaultInjected { fault, .. } = &p.entry.event else {
            continue;
        };
        let what = match fault {
            Fault::Freeze(d) => format!("frozen {}", human_duration(*d)),
            Fault::Stall(d) => format!("stalled {}", human_duration(*d)),
            _ => continue,
        };
        let over = p.entry.at + fault.pause();
        let last = placed[i + 1..]
            .iter()
            .find(|q| q.lane == p.lane && q.entry.at >= over)
            .map_or(end, |q| q.column);
        pauses.push(Pause {
            lane: p.lane,
            first: p.column,
            last,
            what,
        });
    }
    pauses
}
