//! Effects that are records on an output topic: a pipeline's outputs, an outbox relay's
//! published events.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::history::{ClusterSnapshot, LoggedRecord, poison_event_id};

type EventIdOf = Arc<dyn Fn(&LoggedRecord) -> Option<String> + Send + Sync>;

/// A topic the consumer under test writes to, and how to tell which input event an output
/// record is for. After each run the kit reads the topic as a `read_committed` consumer
/// would (no markers, no records of aborted or still-open transactions) and counts the records
/// per event: each input event should have exactly one.
///
/// A record `event_id` cannot attribute (it returns `None`) is, if it is a verbatim copy of a
/// poison record ([`poison_event_id`]), that poison record's (a consumer may forward what it
/// cannot parse to a dead-letter or output topic); otherwise it counts under the id
/// `unattributable <topic>[<partition>]@<offset>`, which no input event has: it shows up as
/// a phantom effect.
///
/// ```
/// use effectively_once::ledger::OutputTopic;
///
/// // Outputs are JSON objects that carry the input's `event_id`.
/// let outputs = OutputTopic::new("task-summaries", 2, |record| {
///     let value: serde_json::Value = serde_json::from_slice(record.payload.as_deref()?).ok()?;
///     Some(value.get("event_id")?.as_str()?.to_string())
/// });
/// assert_eq!(outputs.topic(), "task-summaries");
/// ```
#[derive(Clone)]
pub struct OutputTopic {
    topic: String,
    partitions: i32,
    event_id: EventIdOf,
}

impl fmt::Debug for OutputTopic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputTopic")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl OutputTopic {
    /// The output topic `topic` with `partitions` partitions (the simulation creates it);
    /// `event_id` names the input event an output record is for.
    pub fn new(
        topic: impl Into<String>,
        partitions: i32,
        event_id: impl Fn(&LoggedRecord) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        OutputTopic {
            topic: topic.into(),
            partitions,
            event_id: Arc::new(event_id),
        }
    }

    /// The output topic `topic` whose records are JSON objects carrying the input's
    /// `event_id` as a string field, the shape the kit's own payloads have (the black box's
    /// default payload, the CLI's `--output-topic`).
    ///
    /// ```
    /// use effectively_once::ledger::OutputTopic;
    ///
    /// let outputs = OutputTopic::json_event_id("task-summaries", 1);
    /// assert_eq!(outputs.topic(), "task-summaries");
    /// ```
    pub fn json_event_id(topic: impl Into<String>, partitions: i32) -> Self {
        OutputTopic::new(topic, partitions, |record| {
            let value: serde_json::Value =
                serde_json::from_slice(record.payload.as_deref()?).ok()?;
            Some(value.get("event_id")?.as_str()?.to_string())
        })
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// How many partitions the simulation gives it.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// How many committed records each event has on the topic in `cluster`.
    pub fn observe(&self, cluster: &ClusterSnapshot) -> BTreeMap<String, usize> {
        self.count(cluster.committed_records(&self.topic))
    }

    /// How many of `records` (the topic's committed records, with their partitions) each
    /// event has.
    pub(crate) fn count<'a>(
        &self,
        records: impl IntoIterator<Item = (i32, &'a LoggedRecord)>,
    ) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (partition, record) in records {
            let event_id = (self.event_id)(record)
                .or_else(|| {
                    let payload = record.payload.as_deref()?;
                    poison_event_id(payload).map(str::to_string)
                })
                .unwrap_or_else(|| {
                    format!(
                        "unattributable {}[{partition}]@{}",
                        self.topic, record.offset
                    )
                });
            *counts.entry(event_id).or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{InputRecord, Simulation};

    #[test]
    fn counts_what_read_committed_reads_attributes_poison_copies_and_names_the_rest() {
        let mut b = Simulation::builder();
        b.topic("out", 1);
        for payload in ["a", "b", "a", "?"] {
            b.produce(InputRecord::new("out").payload(payload));
        }
        b.produce(InputRecord::new("out").payload(crate::history::poison_payload("evt-9")));
        let outcome = b.build().unwrap().run(|_| async {}).unwrap();
        let outputs = OutputTopic::new("out", 1, |r| {
            let p = String::from_utf8(r.payload.clone()?).ok()?;
            (p != "?").then_some(p)
        });
        assert_eq!(
            outputs.observe(outcome.cluster()),
            BTreeMap::from([
                ("a".to_string(), 2),
                ("b".to_string(), 1),
                ("evt-9".to_string(), 1),
                ("unattributable out[0]@3".to_string(), 1)
            ])
        );
    }
}
