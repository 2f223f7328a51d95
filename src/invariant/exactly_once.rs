//! Each input event's outputs are committed exactly once, in every output topic.

use super::{Invariant, RunRecord, Violation};

/// Each published event (poison records aside) has exactly one committed output on every
/// counted output topic (and took effect exactly once on any other counted sink): nothing
/// lost, nothing duplicated, and no transaction torn, with its outputs on some topics and not
/// on others.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExactlyOnce;

impl Invariant for ExactlyOnce {
    fn name(&self) -> &str {
        "exactly-once"
    }

    fn check(&self, run: &RunRecord<'_>) -> Option<Violation> {
        let (mut details, event_ids, lost, duplicated) = run.count_violations(|n| n == 1);
        let topics = run.output_counts();
        let mut torn = 0;
        for event in run.expecting_effects() {
            let mut with = Vec::new();
            let mut without = Vec::new();
            for (topic, counts) in &topics {
                match counts.get(&event.event_id).copied().unwrap_or(0) {
                    0 => without.push(topic.as_str()),
                    _ => with.push(topic.as_str()),
                }
            }
            if !with.is_empty() && !without.is_empty() {
                torn += 1;
                details.push(format!(
                    "{}: torn: outputs in {}, none in {}  TORN",
                    event.event_id,
                    with.join(", "),
                    without.join(", ")
                ));
            }
        }
        if details.is_empty() {
            return None;
        }
        let torn = if torn > 0 {
            format!(", {torn} torn")
        } else {
            String::new()
        };
        Some(Violation {
            invariant: self.name().into(),
            summary: format!(
                "{} event{} did not have exactly one committed output on every output topic \
                 (outputs: {lost} lost, {duplicated} duplicated{torn})",
                event_ids.len(),
                if event_ids.len() == 1 { "" } else { "s" },
            ),
            event_ids,
            details,
        })
    }
}
