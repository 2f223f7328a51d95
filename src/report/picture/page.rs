//! The HTML page around the timelines: the verdict, the minimal scenario, the legend, the
//! style and the small script that lights up every mark of the event under the pointer.

use std::fmt::Write;

use super::marks::Glyph;
use super::{escape, svg};
use crate::report::Case;
use crate::report::diagnosis::diagnose;

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 24px 40px; color: #0f172a; background: #fff; }
h1 { font-size: 20px; margin: 18px 0 4px; }
h2 { font-size: 17px; color: #b91c1c; margin: 28px 0 6px; }
h3 { font-size: 14px; margin: 16px 0 4px; }
.replay, .hint, .note { color: #475569; margin: 2px 0; }
.violation ul { margin: 2px 0 6px; font-family: ui-monospace, monospace; font-size: 12px; }
pre { background: #f8fafc; border: 1px solid #e2e8f0; padding: 8px; overflow-x: auto; font-size: 12px; margin: 4px 0; }
.scroll { overflow-x: auto; border: 1px solid #e2e8f0; }
svg.timeline { display: block; font: 10px system-ui, sans-serif; }
.band { fill: #fff; } .band.even { fill: #f8fafc; }
.lane-name { font-weight: bold; font-size: 13px; fill: #334155; }
.base { stroke: #94a3b8; stroke-dasharray: 3 4; }
.tick { stroke: #e2e8f0; }
.time { fill: #475569; }
.axis-name { fill: #94a3b8; font-style: italic; }
.genline { stroke: #9333ea; stroke-dasharray: 6 4; stroke-width: 1.5; opacity: 0.55; }
.life { fill: #dcfce7; stroke: #86efac; } .life.crashed { fill: #fee2e2; stroke: #fca5a5; }
.pause { stroke: #6366f1; stroke-width: 0.8; opacity: 0.8; }
.mark { cursor: default; }
.mark .label { text-anchor: middle; fill: #334155; font-size: 9px; }
.mark .halo { fill: none; stroke: none; }
.mark.off .halo { fill: #fde68a; stroke: #f59e0b; }
.mark.dup .halo { fill: #fecaca; stroke: #dc2626; stroke-width: 2; }
.mark.hl .halo { fill: #bfdbfe; stroke: #2563eb; stroke-width: 2; }
.mark.dup .label, .mark.off .label { font-weight: bold; fill: #0f172a; }
.mark .g { fill: #64748b; stroke: #1e293b; stroke-width: 0.8; }
.recv .g { fill: #2563eb; }
.effect.performed .g { fill: #16a34a; }
.effect.ambiguous .g { fill: #f97316; }
.effect.failed .g { fill: #fff; stroke: #64748b; stroke-width: 1.5; stroke-dasharray: 2 1; }
.effect.deduplicated .g { fill: #cbd5e1; }
.commit .g { fill: #0d9488; }
.commit.bad .g { fill: #fff; stroke: #dc2626; stroke-width: 2; }
.crash .g { fill: none; stroke: #dc2626; stroke-width: 4; }
.start .g { fill: #22c55e; }
.fault .g { fill: #facc15; stroke: #a16207; }
.member .g, .rebalance .g { fill: #fff; stroke: #9333ea; stroke-width: 2; }
.member.bad .g { stroke: #dc2626; }
.generation .g { fill: #9333ea; }
.assign .g { fill: #7c3aed; } .assign.bad .g { fill: #dc2626; }
.produce .g { fill: #475569; } .produce.bad .g { fill: #f97316; }
.txn .g { fill: #e0f2fe; stroke: #0369a1; } .txn.ok .g { fill: #bbf7d0; }
.txn.bad .g { fill: #fecaca; stroke: #dc2626; }
.t { font-size: 10px; font-weight: bold; text-anchor: middle; fill: #0c4a6e; }
.store .g { fill: #a16207; } .store.bad .g { fill: #fff; stroke: #dc2626; stroke-width: 2; }
.end .g { fill: #16a34a; } .end.bad .g { fill: #dc2626; }
.exit .g { fill: #64748b; } .exit.bad .g { fill: #dc2626; }
.seek .g { fill: #94a3b8; }
.chip { display: inline-block; padding: 1px 8px; margin: 2px; border-radius: 10px; background: #f1f5f9; border: 1px solid #cbd5e1; font-family: ui-monospace, monospace; font-size: 12px; }
.chip.off { background: #fde68a; border-color: #f59e0b; }
.chip.hl { background: #bfdbfe; border-color: #2563eb; }
.legend ul { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: 0 16px; }
.legend li { display: flex; align-items: center; gap: 4px; }
"#;

/// Lights up every mark (and event chip) of the events under the pointer, within one case,
/// and those of the event a `#event=<id>` fragment names; flags the page as rendered at its
/// end.
const SCRIPT: &str = r#"
(function () {
  "use strict";
  function ids(el) {
    return (el.getAttribute("data-ev") || "").split(" ").filter(function (s) { return s.length > 0; });
  }
  var named = /^#event=(.+)$/.exec(window.location.hash);
  var pinned = named ? [decodeURIComponent(named[1])] : [];
  document.querySelectorAll("section.case").forEach(function (section) {
    var all = section.querySelectorAll("[data-ev]");
    function light(events, on) {
      all.forEach(function (el) {
        if (ids(el).some(function (e) { return events.indexOf(e) >= 0; })) {
          el.classList.toggle("hl", on);
        }
      });
    }
    all.forEach(function (el) {
      var events = ids(el);
      if (events.length === 0) { return; }
      el.addEventListener("mouseenter", function () { light(events, true); });
      el.addEventListener("mouseleave", function () { light(events, false); light(pinned, true); });
    });
    light(pinned, true);
  });
  document.body.dataset.marks = String(document.querySelectorAll("svg.timeline .mark").length);
  document.body.dataset.rendered = "ok";
})();
"#;

/// The legend: each kind of mark and what it means.
const LEGEND: &[(Glyph, &str, &str)] = &[
    (
        Glyph::Dot,
        "recv",
        "recv: a record handed to the consumer (@offset)",
    ),
    (
        Glyph::Square,
        "effect performed",
        "effect performed (the event id)",
    ),
    (
        Glyph::Square,
        "effect ambiguous",
        "effect performed but reported failed",
    ),
    (
        Glyph::Square,
        "effect failed",
        "effect failed (nothing happened)",
    ),
    (
        Glyph::Square,
        "effect deduplicated",
        "effect deduplicated by its idempotency key",
    ),
    (
        Glyph::Square,
        "effect performed dup",
        "an effect that took effect more than once",
    ),
    (
        Glyph::Dot,
        "recv off",
        "a mark of an event the violation names",
    ),
    (
        Glyph::Diamond,
        "commit",
        "commit accepted (=the next offset to consume)",
    ),
    (Glyph::Diamond, "commit bad", "commit rejected or failed"),
    (
        Glyph::Start,
        "start",
        "instance started (#incarnation); its bar is that life",
    ),
    (
        Glyph::Cross,
        "crash",
        "crash or panic (the life's bar turns red)",
    ),
    (
        Glyph::Bolt,
        "fault",
        "injected fault (crash< before, crash> after the call)",
    ),
    (
        Glyph::Ring,
        "member",
        "joined or left the group, session timed out",
    ),
    (
        Glyph::Ring,
        "rebalance",
        "the coordinator starts a rebalance",
    ),
    (
        Glyph::Ring,
        "generation",
        "a new generation (dashed line across the lanes)",
    ),
    (
        Glyph::Tick,
        "assign",
        "partitions assigned (+p from offset) or revoked (−p)",
    ),
    (
        Glyph::Tick,
        "produce",
        "record produced (input: @offset; output: →topic)",
    ),
    (
        Glyph::Txn,
        "txn ok",
        "transaction (init, T✓ committed, T✗ aborted)",
    ),
    (
        Glyph::Square,
        "store",
        "durable-store transaction committed (db)",
    ),
    (
        Glyph::Flag,
        "end",
        "the end of the run (quiesced, time limit, all stopped)",
    ),
];

fn legend(out: &mut String) {
    out.push_str("<section class=\"legend\"><h3>legend</h3><ul>\n");
    // What is not a mark: a life and a pause.
    out.push_str(
        r#"<li><svg width="30" height="26" viewBox="-15 -13 30 26"><rect class="life" x="-14" y="-8" width="28" height="16" rx="8"/></svg>a life of the instance (red when it crashed)</li>"#,
    );
    writeln!(
        out,
        r#"<li><svg width="30" height="26" viewBox="-15 -13 30 26">{}<rect class="pause" fill="url(#hatch-legend)" x="-14" y="-6" width="28" height="12"/></svg>the instance frozen or stalled by a fault</li>"#,
        svg::hatch("hatch-legend")
    )
    .ok();
    for (glyph, class, text) in LEGEND {
        writeln!(
            out,
            r#"<li><svg width="30" height="26" viewBox="-15 -13 30 26"><g class="mark {class}"><circle class="halo" r="12"/>{}</g></svg>{}</li>"#,
            svg::glyph(*glyph),
            escape(text)
        )
        .ok();
    }
    out.push_str("</ul></section>\n");
}

fn case_section(out: &mut String, index: usize, case: &Case<'_>) {
    writeln!(out, r#"<section class="case" data-case="{index}">"#).ok();
    let headline = case
        .violations
        .first()
        .map_or("no invariant", |v| &v.invariant);
    if index == 0 {
        writeln!(out, "<h2>{} violated</h2>", escape(headline)).ok();
    } else {
        writeln!(
            out,
            "<h2>also {} violated, in a minimal scenario of its own</h2>",
            escape(headline)
        )
        .ok();
    }
    for v in case.violations {
        writeln!(
            out,
            r#"<div class="violation"><p><b>{}</b>: {}</p><ul>"#,
            escape(&v.invariant),
            escape(&v.summary)
        )
        .ok();
        for line in &v.details {
            writeln!(out, "<li>{}</li>", escape(line)).ok();
        }
        out.push_str("</ul></div>\n");
    }
    let diagnoses = diagnose(case);
    if !diagnoses.is_empty() {
        out.push_str("<h3>diagnosis</h3>\n<ul class=\"diagnosis\">");
        for diagnosis in &diagnoses {
            writeln!(out, "<li>{}</li>", escape(&diagnosis.sentence)).ok();
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<h3>minimal scenario</h3>\n");
    writeln!(
        out,
        r#"<pre class="scenario">{}</pre>"#,
        escape(&case.scenario_text())
    )
    .ok();
    let offending: Vec<&String> = case
        .violations
        .iter()
        .flat_map(|v| v.event_ids.iter())
        .collect();
    out.push_str(r#"<p class="events">events:"#);
    for event in case.published {
        let at: Vec<String> = event
            .positions
            .iter()
            .map(|p| format!("p{}@{}", p.partition, p.offset))
            .collect();
        writeln!(
            out,
            r#" <span class="chip{}" data-ev="{}">{} {}</span>"#,
            if offending.contains(&&event.event_id) {
                " off"
            } else {
                ""
            },
            escape(&event.event_id),
            escape(&event.event_id),
            escape(&at.join(" "))
        )
        .ok();
    }
    out.push_str("</p>\n<h3>timeline</h3>\n");
    if case.history.entries().is_empty() {
        out.push_str(
            "<p class=\"note\">No history to draw: the consumer blocked its thread and the \
             run was abandoned.</p>\n",
        );
    } else {
        writeln!(
            out,
            "<p class=\"hint\">Columns follow the history's order; each tick is an instant of \
             {}. Hover a mark for its timeline line; every mark of the same event lights up \
             with it (add <code>#event=&lt;id&gt;</code> to the address to keep one \
             lit).</p>\n<div class=\"scroll\">",
            if case.real_time {
                "the run (seconds since it started)"
            } else {
                "virtual time"
            }
        )
        .ok();
        out.push_str(&svg::timeline(case, index));
        out.push_str("</div>\n<details><summary>the timeline as text</summary><pre>");
        out.push_str(&escape(&case.history.to_string()));
        out.push_str("</pre></details>\n");
    }
    out.push_str("</section>\n");
}

/// The page of `cases` (the first the most telling), `replay` telling how to get it again.
pub(super) fn page(cases: &[Case<'_>], replay: &str) -> String {
    let headline = cases
        .first()
        .and_then(|c| c.violations.first())
        .map_or("counterexample", |v| &v.invariant);
    let mut out = String::new();
    writeln!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>effectively-once check failed: {} violated</title>\n<style>{STYLE}</style>\n</head>\n<body>",
        escape(headline)
    )
    .ok();
    writeln!(
        out,
        "<header><h1>effectively-once check failed: {} violated</h1><p class=\"replay\">{}</p></header>",
        escape(headline),
        escape(replay)
    )
    .ok();
    for (index, case) in cases.iter().enumerate() {
        case_section(&mut out, index, case);
    }
    legend(&mut out);
    writeln!(out, "<script>{SCRIPT}</script>\n</body>\n</html>").ok();
    out
}
