//! Judging one case: run a scenario, read its ledger, apply the invariants.

use std::future::Future;

use super::Verifier;
use crate::broker::self_check::Capability;
use crate::error::Error;
use crate::history::{HistoryEvent, Operation, PublishedEvent, RecordPosition, poison_payload};
use crate::invariant::{NO_SINK, RunRecord, Semantics, Violation};
use crate::ledger::{Ledger, Observed, StoreEffectError};
use crate::run::{InputRecord, InstanceContext, InstanceExit, Simulation, SimulationBuilder};
use crate::scenario::{Event, Scenario};
use crate::simulation::Outcome;

/// One scenario's run and its verdict.
#[derive(Debug)]
pub struct CaseRun {
    /// The scenario.
    pub scenario: Scenario,
    /// Where each event landed.
    pub published: Vec<PublishedEvent>,
    /// What happened.
    pub outcome: Outcome,
    /// The effect attempts.
    pub ledger: Ledger,
    /// The sinks whose effects counted.
    pub sinks: Vec<String>,
    /// The broken invariants, in the order they were checked but liveness last (empty: the
    /// case passed).
    pub violations: Vec<Violation>,
    /// On a real broker: what the invariants found that the broker's shortfalls could explain
    /// (see [`NotCheckable`]); never counted as a consumer bug.
    pub not_checkable: Vec<NotCheckable>,
}

/// A violation on a real broker that lacks a guarantee the invariant relies on: "not
/// checkable on this broker", neither a pass nor a consumer bug.
#[derive(Clone, Debug)]
pub struct NotCheckable {
    /// What the invariant found.
    pub violation: Violation,
    /// The broker's shortfalls, from its self-check.
    pub reason: String,
}

impl std::fmt::Display for NotCheckable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} not checkable on this broker: {}",
            self.violation.invariant, self.reason
        )?;
        write!(f, "  (it found: {}", self.violation.summary)?;
        for detail in &self.violation.details {
            write!(f, "; {detail}")?;
        }
        f.write_str(")")
    }
}

/// The guarantees an invariant's verdict relies on, beyond groups and commits.
fn relies_on(invariant: &str, outcome: &Outcome) -> &'static [Capability] {
    const TRANSACTIONS: &[Capability] = &[
        Capability::HidesAbortedRecords,
        Capability::StoresTransactionalOffsets,
        Capability::FencesZombies,
    ];
    match invariant {
        // The outputs are read as read_committed, with the transactions' offsets and fencing.
        "exactly-once" | "offsets match outputs" => TRANSACTIONS,
        // A read_committed consumer handed an aborted record is the broker's doing; a
        // read_uncommitted one's is the consumer's on any broker.
        "no aborted read"
            if outcome.history().events().any(|e| {
                matches!(
                    e,
                    HistoryEvent::Delivered {
                        read_committed: true,
                        ..
                    }
                )
            }) =>
        {
            &[Capability::HidesAbortedRecords]
        }
        // A consumer that commits its offsets with its transactions catches up only if the
        // broker stores them.
        "liveness"
            if outcome
                .operations()
                .contains_key(&Operation::SendOffsetsToTransaction) =>
        {
            &[Capability::StoresTransactionalOffsets]
        }
        _ => &[],
    }
}

/// Whether the broker refused a commit because the group was rebalancing (a refusal the kit
/// did not inject): a broker that refuses what Kafka accepts (a commit from the revoke
/// callback, see [`Capability::AcceptsCommitsDuringRebalance`]) moves the group's offsets
/// differently.
fn refused_a_commit_while_rebalancing(outcome: &Outcome) -> bool {
    outcome.history().events().any(|e| {
        matches!(e, HistoryEvent::CommitRejected { error, .. }
            if error.contains("RebalanceInProgress") && !error.starts_with("injected"))
    })
}

/// Whether an invariant's verdict depends on where the group's committed offsets went
/// (redeliveries, losses, catching up); those that judge what was done with a record do not.
fn rests_on_the_groups_offsets(invariant: &str) -> bool {
    !matches!(invariant, "no phantom effect" | "no aborted read")
}

/// Splits the violations into those that stand and those the broker's shortfalls leave
/// undecided.
fn split_not_checkable(
    violations: Vec<Violation>,
    outcome: &Outcome,
) -> (Vec<Violation>, Vec<NotCheckable>) {
    let Some(found) = outcome.broker_self_check() else {
        return (violations, Vec::new());
    };
    let mut stand = Vec::new();
    let mut undecided = Vec::new();
    let refused_while_rebalancing = refused_a_commit_while_rebalancing(outcome);
    for violation in violations {
        let mut relied_on = relies_on(&violation.invariant, outcome).to_vec();
        if refused_while_rebalancing && rests_on_the_groups_offsets(&violation.invariant) {
            relied_on.push(Capability::AcceptsCommitsDuringRebalance);
        }
        let shortfalls: Vec<String> = relied_on
            .iter()
            .filter_map(|c| found.shortfall(*c))
            .collect();
        if shortfalls.is_empty() {
            stand.push(violation);
        } else {
            undecided.push(NotCheckable {
                violation,
                reason: shortfalls.join("; "),
            });
        }
    }
    (stand, undecided)
}

/// A simulation of `scenario`: the topic, the instances and their start times, the input
/// records (payloads rendered by `encode`, keyed by the event's key, partitioned by the
/// producer's default partitioner at run time) and the faults, anchored to input records.
pub(crate) fn simulation_of(
    scenario: &Scenario,
    topic: &str,
    encode: &dyn Fn(&Event) -> Vec<u8>,
) -> SimulationBuilder {
    let mut builder = Simulation::builder();
    builder
        .seed(scenario.seed)
        .topic(topic, scenario.partitions)
        .instances(scenario.instances)
        .faults(scenario.fault_schedule());
    for join in &scenario.late_joins {
        builder.start_at(join.instance, join.at);
    }
    for input in scenario.inputs() {
        let e = &scenario.events[input.event];
        let payload = if e.poison {
            poison_payload(&e.event.event_id)
        } else {
            encode(&e.event)
        };
        let mut record = InputRecord::new(topic)
            .key(e.event.key.clone())
            .payload(payload);
        if let Some(commit) = input.transaction {
            record = record.in_transaction(commit);
        }
        if input.transaction != Some(false) {
            record = record.event_id(e.event.event_id.clone());
        }
        builder.produce(record);
    }
    builder
}

/// Where each event of `scenario` landed, from the positions of the run's input records
/// (in the order [`Scenario::inputs`] lists them).
pub(crate) fn published(
    scenario: &Scenario,
    landed: &[Option<RecordPosition>],
) -> Vec<PublishedEvent> {
    let mut published: Vec<PublishedEvent> = scenario
        .events
        .iter()
        .map(|e| PublishedEvent {
            event_id: e.event.event_id.clone(),
            key: e.event.key.clone(),
            positions: Vec::new(),
            aborted: None,
            poison: e.poison,
        })
        .collect();
    for (input, at) in scenario.inputs().into_iter().zip(landed) {
        let Some(at) = at else {
            continue; // never written: the run stopped first
        };
        let event = &mut published[input.event];
        match input.transaction {
            Some(false) => event.aborted = Some(at.clone()),
            _ => event.positions.push(at.clone()),
        }
    }
    published
}

/// Runs one scenario with `verifier`'s settings and judges it against `semantics`.
///
/// Use it to pin a scenario in a test, or to replay a counterexample's
/// [`scenario`](crate::Counterexample::scenario).
pub fn run_scenario<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    scenario: &Scenario,
    factory: F,
) -> Result<CaseRun, Error>
where
    F: Fn(InstanceContext) -> Fut + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    run_case(semantics, verifier, scenario, factory, Detail::Report)
}

/// How much of a run its caller needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Detail {
    /// The verdict alone: the search's cases.
    Verdict,
    /// Everything a report shows: its timeline names the rows each store transaction wrote.
    Report,
}

/// [`run_scenario`], with as much `detail` as the caller needs.
pub(crate) fn run_case<F, Fut>(
    semantics: Semantics,
    verifier: &Verifier,
    scenario: &Scenario,
    factory: F,
    detail: Detail,
) -> Result<CaseRun, Error>
where
    F: Fn(InstanceContext) -> Fut + 'static,
    Fut: Future + 'static,
    Fut::Output: InstanceExit,
{
    let mut builder = simulation_of(scenario, &verifier.topic, &*verifier.encode);
    for output in &verifier.outputs {
        builder.topic(output.topic(), output.partitions());
    }
    // Room for every pause and late join, then twice the liveness bound: a group that has
    // not caught up by then has already broken liveness. The pauses' sum covers them however
    // they stack (liveness counts from the end of the last disturbance, stacked pauses added).
    let latest_join = scenario
        .late_joins
        .iter()
        .map(|j| j.at)
        .max()
        .unwrap_or_default();
    builder.time_limit(scenario.pause_total() + latest_join + 2 * verifier.liveness.bound);
    if let Some(query) = &verifier.progress_query {
        builder.progress_from_store(query.clone());
    }
    // Which rows each store transaction wrote is read again after every commit (O(rows) each
    // time) for the report's timeline, picture and diagnoses; the built-in invariants read the
    // final store. A verdict skips it, unless an invariant of the user's might look.
    if detail == Detail::Report || !verifier.extra.is_empty() {
        for effect in &verifier.store_effects {
            builder.store_effect(effect.name(), effect.query());
        }
    }
    if let Some(tweak) = &verifier.tweak {
        tweak(&mut builder);
    }
    let simulation = builder.build()?;
    let outcome = match &verifier.broker {
        Some(provider) => simulation.run_on(provider, factory)?,
        None => simulation.run(factory)?,
    };
    let published = published(scenario, &outcome.inputs);
    let mut ledger = Ledger::from_history(outcome.history());
    for effect in &verifier.store_effects {
        let observed = outcome
            .read_store(|conn| Ok(effect.observe(conn)))
            .map_err(StoreEffectError::from)
            .and_then(|observed| observed);
        ledger.observe(
            effect.name(),
            Observed::Store,
            observed.map_err(|e| e.to_string()),
        );
    }
    for output in &verifier.outputs {
        let counts = output.observe(outcome.cluster());
        ledger.observe(output.topic(), Observed::Topic, Ok(counts));
    }
    let sinks = if !verifier.sinks.is_empty() {
        let mut sinks = verifier.sinks.clone();
        sinks.extend(verifier.store_effects.iter().map(|e| e.name().to_string()));
        sinks.extend(verifier.outputs.iter().map(|o| o.topic().to_string()));
        sinks
    } else if ledger.sinks().is_empty() {
        vec![NO_SINK.to_string()]
    } else {
        ledger.sinks()
    };
    let record = RunRecord {
        published: &published,
        history: outcome.history(),
        ledger: &ledger,
        sinks: &sinks,
        cluster: outcome.cluster(),
    };
    let violations = verifier
        .invariants(semantics)
        .iter()
        .filter_map(|i| i.check(&record))
        .collect();
    let (mut violations, not_checkable) = split_not_checkable(violations, &outcome);
    // A liveness failure never hides a safety violation: safety first.
    violations.sort_by_key(|v| v.invariant == "liveness");
    Ok(CaseRun {
        scenario: scenario.clone(),
        published,
        outcome,
        ledger,
        sinks,
        violations,
        not_checkable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::tests::event;

    /// Runs `scenario` on topic `t` with consumers that do nothing, and says where its events
    /// landed.
    fn run_and_publish(scenario: &Scenario) -> (Outcome, Vec<PublishedEvent>) {
        let outcome = simulation_of(scenario, "t", &Event::to_json)
            .build()
            .unwrap()
            .run(|_| async {})
            .unwrap();
        let published = published(scenario, &outcome.inputs);
        (outcome, published)
    }

    #[test]
    fn an_aborted_first_copy_and_the_markers_take_offsets_and_the_events_learn_where_they_landed() {
        let mut aborted = event(1, "k");
        aborted.aborted_first = true;
        let scenario = Scenario {
            seed: 0,
            partitions: 1,
            instances: 1,
            late_joins: vec![],
            events: vec![event(0, "k"), aborted, event(2, "k")],
            faults: vec![],
        };
        let (outcome, published) = run_and_publish(&scenario);
        let at = |offset| RecordPosition {
            topic: "t".into(),
            partition: 0,
            offset,
        };
        assert_eq!(published[1].aborted, Some(at(1)));
        assert_eq!(published[1].positions, [at(3)]);
        assert_eq!(published[2].positions, [at(5)]);
        let log: Vec<(bool, bool)> = outcome
            .cluster()
            .records("t", 0)
            .iter()
            .map(|r| (r.control, r.aborted))
            .collect();
        assert_eq!(
            log,
            [
                (false, false),
                (false, true),
                (true, false),
                (false, false),
                (true, false),
                (false, false)
            ]
        );
    }

    #[test]
    fn events_land_by_crc32_of_the_key_at_dense_offsets_and_duplicates_take_two() {
        let mut twice = event(1, "k0");
        twice.produced_twice = true;
        let scenario = Scenario {
            seed: 0,
            partitions: 3,
            instances: 1,
            late_joins: vec![],
            events: vec![event(0, "k0"), twice, event(2, "k0")],
            faults: vec![],
        };
        let p = (crc32fast::hash(b"k0") % 3) as i32;
        let (_, published) = run_and_publish(&scenario);
        let offsets: Vec<Vec<(i32, i64)>> = published
            .iter()
            .map(|e| {
                e.positions
                    .iter()
                    .map(|r| (r.partition, r.offset))
                    .collect()
            })
            .collect();
        assert_eq!(
            offsets,
            vec![vec![(p, 0)], vec![(p, 1), (p, 2)], vec![(p, 3)]]
        );
    }
}
