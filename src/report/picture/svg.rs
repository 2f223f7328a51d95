//! One case's timeline as an SVG: the time axis, the generations, and a lane per instance and
//! for the cluster, each with its instances' lives and its marks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::Duration;

use super::escape;
use super::layout::{COLUMN, LANE, LEFT, Layout, Life, Pause, Placed, TOP};
use super::marks::Glyph;
use crate::history::HistoryEvent;
use crate::report::Case;

/// The hatching of a pause, with the id `id`.
pub(super) fn hatch(id: &str) -> String {
    format!(
        r##"<defs><pattern id="{id}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#e0e7ff"/><line x1="0" y1="0" x2="0" y2="6" stroke="#6366f1" stroke-width="2"/></pattern></defs>"##
    )
}

/// The mark's centre below its lane's top.
const CENTRE: i64 = 24;

/// `6.014s`, or with microseconds when the instant is not a whole millisecond.
pub(super) fn time(at: Duration) -> String {
    let micros = at.as_micros();
    if micros % 1000 == 0 {
        format!("{}.{:03}s", micros / 1_000_000, (micros % 1_000_000) / 1000)
    } else {
        format!("{}.{:06}s", micros / 1_000_000, micros % 1_000_000)
    }
}

/// The shape of `glyph`, centred on the origin.
pub(super) fn glyph(glyph: Glyph) -> &'static str {
    match glyph {
        Glyph::Dot => r#"<circle class="g" r="6"/>"#,
        Glyph::Square => r#"<rect class="g" x="-6" y="-6" width="12" height="12"/>"#,
        Glyph::Diamond => r#"<path class="g" d="M0,-8L8,0L0,8L-8,0Z"/>"#,
        Glyph::Cross => r#"<path class="g" d="M-7,-7L7,7M7,-7L-7,7"/>"#,
        Glyph::Start => r#"<path class="g" d="M-5,-7L7,0L-5,7Z"/>"#,
        Glyph::Bolt => r#"<path class="g" d="M2,-10L-7,2L-1,2L-3,10L7,-3L1,-3Z"/>"#,
        Glyph::Ring => r#"<circle class="g" r="6"/>"#,
        Glyph::Tick => r#"<rect class="g" x="-2" y="-8" width="4" height="16"/>"#,
        Glyph::Txn => {
            r#"<rect class="g" x="-7" y="-7" width="14" height="14" rx="3"/><text class="t" y="4">T</text>"#
        }
        Glyph::Flag => r#"<path class="g" d="M-4,9L-4,-9L8,-5L-4,-1"/>"#,
    }
}

/// What the highlighting needs to know about a case: the event ids its violations name and
/// the effects that took effect more than once.
struct Verdict {
    offending: BTreeSet<String>,
    duplicated: BTreeSet<(String, String)>,
}

impl Verdict {
    fn new(case: &Case<'_>) -> Self {
        let offending = case
            .violations
            .iter()
            .flat_map(|v| v.event_ids.iter().cloned())
            .collect();
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for event in case.history.events() {
            if let HistoryEvent::Effect {
                sink,
                event_id,
                outcome,
                ..
            } = event
            {
                if outcome.took_effect() {
                    *counts.entry((sink.clone(), event_id.clone())).or_default() += 1;
                }
            }
        }
        let duplicated = counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k)
            .collect();
        Verdict {
            offending,
            duplicated,
        }
    }

    /// The classes `placed` gets beyond its kind: `dup` for an effect that took effect again,
    /// `off` for a mark of an event the violations name.
    fn classes(&self, placed: &Placed<'_>) -> String {
        let mut classes = String::new();
        if let HistoryEvent::Effect {
            sink,
            event_id,
            outcome,
            ..
        } = &placed.entry.event
        {
            if outcome.took_effect() && self.duplicated.contains(&(sink.clone(), event_id.clone()))
            {
                classes.push_str(" dup");
            }
        }
        if placed
            .mark
            .events
            .iter()
            .any(|e| self.offending.contains(e))
        {
            classes.push_str(" off");
        }
        classes
    }
}

/// The tooltip of `placed`: its timeline line, and the events it belongs to.
fn tooltip(placed: &Placed<'_>) -> String {
    let mut text = placed.entry.to_string().trim().to_string();
    match placed.mark.events.as_slice() {
        [] => {}
        [one] => write!(text, "\nevent {one}").unwrap_or_default(),
        many => write!(text, "\nevents {}", many.join(", ")).unwrap_or_default(),
    }
    text
}

fn draw_life(out: &mut String, layout: &Layout<'_>, life: &Life) {
    let y = layout.y(life.lane) + CENTRE;
    let x0 = layout.x(life.first) - COLUMN / 2 + 3;
    let x1 = layout.x(life.last) + COLUMN / 2 - 3;
    writeln!(
        out,
        r#"<rect class="life{}" x="{x0}" y="{}" width="{}" height="22" rx="11"><title>{}#{}</title></rect>"#,
        if life.crashed { " crashed" } else { "" },
        y - 11,
        (x1 - x0).max(6),
        escape(&layout.lanes[life.lane]),
        life.number
    )
    .ok();
}

fn draw_pause(out: &mut String, layout: &Layout<'_>, pause: &Pause, hatch: &str) {
    let y = layout.y(pause.lane) + CENTRE;
    let x0 = layout.x(pause.first);
    let x1 = layout.x(pause.last);
    writeln!(
        out,
        r#"<rect class="pause" fill="url(#{hatch})" x="{x0}" y="{}" width="{}" height="14"><title>{} {}</title></rect>"#,
        y - 7,
        (x1 - x0).max(4),
        escape(&layout.lanes[pause.lane]),
        escape(&pause.what)
    )
    .ok();
}

fn draw_mark(out: &mut String, layout: &Layout<'_>, verdict: &Verdict, placed: &Placed<'_>) {
    let x = layout.x(placed.column);
    let y = layout.y(placed.lane) + CENTRE;
    // Alternate rows keep the labels of neighbouring columns apart.
    let label_y = if placed.column % 2 == 0 { 22 } else { 33 };
    writeln!(
        out,
        r#"<g class="mark {}{}" data-ev="{}" data-entry="{}" transform="translate({x},{y})"><title>{}</title><circle class="halo" r="12"/>{}<text class="label" y="{label_y}">{}</text></g>"#,
        escape(&placed.mark.class),
        verdict.classes(placed),
        escape(&placed.mark.events.join(" ")),
        placed.index + 1,
        escape(&tooltip(placed)),
        glyph(placed.mark.glyph),
        escape(&placed.mark.label),
    )
    .ok();
}

/// The timeline of `case`, the `index`th on its page (its ids are unique on the page).
pub(super) fn timeline(case: &Case<'_>, index: usize) -> String {
    let hatch_id = format!("hatch-{index}");
    let layout = Layout::new(case);
    let verdict = Verdict::new(case);
    let (width, height) = (layout.width(), layout.height());
    let bottom = layout.y(layout.lanes.len());
    let mut out = String::new();
    writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#
    )
    .ok();
    out.push_str(&hatch(&hatch_id));
    out.push('\n');
    // The lanes' backgrounds and names.
    for (lane, name) in layout.lanes.iter().enumerate() {
        let y = layout.y(lane);
        writeln!(
            out,
            r#"<rect class="band{}" x="0" y="{y}" width="{width}" height="{LANE}"/><text class="lane-name" x="10" y="{}">{}</text>"#,
            if lane % 2 == 0 { " even" } else { "" },
            y + CENTRE + 5,
            escape(name)
        )
        .ok();
    }
    // The time axis: one tick per instant.
    out.push_str("<g class=\"axis\">\n");
    for (column, at) in &layout.instants {
        let x = layout.x(*column);
        writeln!(
            out,
            r#"<line class="tick" x1="{x}" y1="{}" x2="{x}" y2="{bottom}"/><text class="time" transform="translate({x},{}) rotate(-40)">{}</text>"#,
            TOP - 6,
            TOP - 10,
            time(*at)
        )
        .ok();
    }
    writeln!(
        out,
        r#"<text class="axis-name" x="10" y="{}">{}</text></g>"#,
        TOP - 12,
        case.clock()
    )
    .ok();
    // A new generation: a line across every lane.
    for placed in &layout.placed {
        if let Some(generation) = placed.mark.generation {
            let x = layout.x(placed.column);
            writeln!(
                out,
                r#"<line class="genline" x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom}"><title>generation {generation} starts</title></line>"#
            )
            .ok();
        }
    }
    for (lane, name) in layout.lanes.iter().enumerate() {
        let y = layout.y(lane) + CENTRE;
        writeln!(
            out,
            r#"<g class="lane" data-lane="{}"><line class="base" x1="{LEFT}" y1="{y}" x2="{width}" y2="{y}"/>"#,
            escape(name)
        )
        .ok();
        for life in layout.lives.iter().filter(|l| l.lane == lane) {
            draw_life(&mut out, &layout, life);
        }
        for pause in layout.pauses.iter().filter(|p| p.lane == lane) {
            draw_pause(&mut out, &layout, pause, &hatch_id);
        }
        for placed in layout.placed.iter().filter(|p| p.lane == lane) {
            draw_mark(&mut out, &layout, &verdict, placed);
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}
