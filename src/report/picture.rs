//! The picture of a counterexample: a self-contained HTML page (no external resource, no
//! network) with an SVG timeline per minimal case, one lane per instance plus the cluster.
//!
//! Deliveries, effects (duplicates and the violation's events highlighted), commits with
//! their offsets, crashes and restarts (each incarnation's life a bar on its lane),
//! rebalances and generations, injected faults, produced records, transactions and the run's
//! end are marks; each carries its timeline line and its event as a tooltip, and a small
//! script lights up every mark of the event under the pointer. The same case gives the same
//! bytes: no clock, no hash order.
//!
//! `layout` places the marks (why the x axis is the history's order and not linear time is
//! said there), `marks` decides what each entry looks like, `svg` draws a timeline, `page`
//! wraps the timelines in the page, and `file` writes it under the target directory.

mod file;
mod layout;
mod marks;
mod page;
mod svg;

pub(crate) use file::{file_name, shown, target_dir, write};

use super::Case;

/// `text` safe inside HTML or SVG text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page of `cases`, the most telling first (the others are the other invariants' own
/// minimal cases); `replay` is the line that tells how to get it again.
pub(crate) fn render(cases: &[Case<'_>], replay: &str) -> String {
    page::page(cases, replay)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::{
        CommitKind, EffectOutcome, History, HistoryEntry, HistoryEvent, Incarnation, InstanceId,
        PublishedEvent, TopicPartition,
    };
    use crate::invariant::Violation;
    use crate::scenario::{Event, Scenario, StreamEvent};

    fn scenario(event_id: &str) -> Scenario {
        Scenario {
            seed: 0,
            partitions: 1,
            instances: 2,
            late_joins: Vec::new(),
            events: vec![StreamEvent {
                event: Event {
                    event_id: event_id.into(),
                    key: "k<0>".into(),
                    payload: serde_json::json!({}),
                },
                produced_twice: false,
                poison: false,
                aborted_first: false,
            }],
            faults: Vec::new(),
        }
    }

    /// A history of `event_id` emailed twice by i0, across a crash.
    fn history(event_id: &str) -> History {
        let tp = TopicPartition::new("t", 0);
        let i0 = |number| {
            Some(Incarnation {
                instance: InstanceId(0),
                number,
            })
        };
        let mut history = History::default();
        let mut push = |ms, incarnation, event| {
            history.push(HistoryEntry {
                at: Duration::from_millis(ms),
                incarnation,
                event,
            })
        };
        let effect = || HistoryEvent::Effect {
            sink: "email".into(),
            event_id: event_id.into(),
            idempotency_key: None,
            outcome: EffectOutcome::Performed,
        };
        push(0, i0(1), HistoryEvent::InstanceStarted);
        push(
            5,
            i0(1),
            HistoryEvent::Delivered {
                position: tp.at(0),
                key: None,
                read_committed: false,
            },
        );
        push(10, i0(1), effect());
        push(
            10,
            i0(1),
            HistoryEvent::InstanceCrashed {
                cause: "fault: crash <after> & \"x\"".into(),
            },
        );
        push(1010, i0(2), HistoryEvent::InstanceStarted);
        push(
            6010,
            None,
            HistoryEvent::GenerationStarted {
                group: "g".into(),
                generation: 2,
                protocol: "range".into(),
                assignment: Vec::new(),
            },
        );
        push(
            6012,
            i0(2),
            HistoryEvent::Delivered {
                position: tp.at(0),
                key: None,
                read_committed: false,
            },
        );
        push(6014, i0(2), effect());
        push(
            6014,
            i0(2),
            HistoryEvent::OffsetsCommitted {
                group: "g".into(),
                generation: 2,
                offsets: vec![(tp.clone(), 1)],
                kind: CommitKind::Sync,
            },
        );
        push(16014, None, HistoryEvent::Quiesced);
        history
    }

    fn page_of(event_id: &str) -> String {
        let scenario = scenario(event_id);
        let history = history(event_id);
        let published = vec![PublishedEvent {
            event_id: event_id.into(),
            key: "k<0>".into(),
            positions: vec![TopicPartition::new("t", 0).at(0)],
            aborted: None,
            poison: false,
        }];
        let violations = vec![Violation {
            invariant: "effectively-once".into(),
            summary: "1 event <duplicated> & \"more\"".into(),
            event_ids: vec![event_id.into()],
            details: vec![format!("{event_id}: email took effect 2 times  DUPLICATED")],
        }];
        let case = Case {
            scenario: &scenario,
            published: &published,
            history: &history,
            violations: &violations,
            real_time: false,
        };
        render(&[case], "replay: seed 0")
    }

    #[test]
    fn the_same_case_renders_the_same_bytes() {
        let page = page_of("evt-0");
        assert_eq!(page, page_of("evt-0"));
        assert_eq!(page.matches("data-lane=").count(), 3, "cluster, i0, i1");
        assert_eq!(
            page.matches("class=\"mark effect performed dup off\"")
                .count(),
            2
        );
        assert_eq!(
            page.matches("class=\"life crashed\"").count(),
            1,
            "i0#1 crashed"
        );
        assert_eq!(page.matches("class=\"genline\"").count(), 1);
        assert!(
            page.contains(
                "<title>6.014000s  i0#2     effect email(evt-0): performed\nevent evt-0</title>"
            ),
            "a mark's tooltip is its timeline line and its event"
        );
        assert!(page.contains("document.body.dataset.rendered = \"ok\""));
        for external in ["src=", "href=", "@import"] {
            assert!(!page.contains(external), "no external resource: {external}");
        }
        assert_eq!(
            page.matches("url(").count(),
            page.matches("url(#").count(),
            "only references within the page"
        );
    }

    #[test]
    fn text_is_escaped() {
        let page = page_of("evt-<x>&\"'");
        assert!(!page.contains("<x>"), "raw markup from an event id");
        assert!(page.contains("evt-&lt;x&gt;&amp;&quot;&#39;"));
        assert!(page.contains("1 event &lt;duplicated&gt; &amp; &quot;more&quot;"));
        assert!(page.contains("crash &lt;after&gt; &amp; &quot;x&quot;"));
        assert_eq!(escape("a<b>&'\""), "a&lt;b&gt;&amp;&#39;&quot;");
    }
}
