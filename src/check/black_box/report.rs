//! A black-box check's verdicts as the user reads them: [`BlackBoxPassed`], and the
//! [`BlackBoxCounterexample`] with the same parts as a simulated check's report: the
//! violation, diagnoses of known anti-patterns, the timeline in lanes with repeats folded, the
//! picture (a self-contained HTML page under `target/effectively-once/`), plus what only a
//! process has: the fault's place, each incarnation's output.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::JudgedProcessRun;
use crate::check::SEED_ENV;
use crate::history::Operation;
use crate::invariant::{Semantics, Violation};
use crate::process::{BlackBoxCase, BlackBoxOutcome, CrashPoint, FaultPlan};
use crate::report::Case;
use crate::report::diagnosis::{Diagnosis, diagnose};
use crate::report::picture;
use crate::report::timeline::lanes;
use crate::scenario::{Event, Scenario, ScenarioFault, StreamEvent};

/// A black-box check that found nothing.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BlackBoxPassed {
    /// The semantics checked.
    pub semantics: Semantics,
    /// The program, as one line.
    pub command: String,
    /// How many runs were judged: the pilot, the enumeration's and the random ones.
    pub runs: usize,
    /// How many of them were outages: an effect the program retried in the same process
    /// failing several times in a row.
    pub outage_runs: usize,
    /// How many of them were random two-fault runs.
    pub random_runs: usize,
    /// The seed the random runs' plans were drawn from.
    pub seed: u64,
    /// How long the check took.
    pub took: Duration,
}

impl fmt::Display for BlackBoxPassed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut made = vec![
            "a pilot".to_string(),
            "one per crash point and fault kind".into(),
        ];
        if self.outage_runs > 0 {
            made.push(format!(
                "{} outage{} of a retried effect",
                self.outage_runs,
                if self.outage_runs == 1 { "" } else { "s" }
            ));
        }
        if self.random_runs > 0 {
            made.push(format!(
                "{} random two-fault runs from seed {}",
                self.random_runs, self.seed
            ));
        }
        write!(
            f,
            "effectively-once black-box check passed: `{}` held {} in {} runs ({}) in {:.1} s",
            self.command,
            self.semantics,
            self.runs,
            made.join(", "),
            self.took.as_secs_f64()
        )
    }
}

/// What a black-box check found wrong: the run that broke the semantics.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BlackBoxCounterexample {
    /// The semantics checked.
    pub semantics: Semantics,
    /// The program, as one line.
    pub command: String,
    /// The faults the run fired, and where.
    pub fault: String,
    /// The seed of the random plan that found it (`None`: the enumeration found it).
    pub seed: Option<u64>,
    /// The broken invariant.
    pub violation: Violation,
    /// The other invariants the run broke.
    pub also: Vec<Violation>,
    /// The known anti-patterns the run's history matches, each one sentence citing the
    /// timeline lines that show it.
    pub diagnoses: Vec<Diagnosis>,
    /// The failing run's input events, after shrinking.
    pub events: Vec<String>,
    /// How many events the input held before shrinking.
    pub shrunk_from: usize,
    /// How many runs the check made (the pilot, the crash points up to this one, shrinking).
    pub runs: usize,
    /// The run's timeline: one lane per instance, repeated cycles folded.
    pub timeline: String,
    /// Each incarnation's output.
    pub output: String,
    /// Where the picture of the run was written (`None` when it was not drawn or could not
    /// be written; the report says why).
    pub picture: Option<PathBuf>,
    /// The picture's line in the report.
    picture_line: Option<String>,
}

/// A failing run, as the check found it.
pub(super) struct FailingRun<'a> {
    pub semantics: Semantics,
    pub command: String,
    pub case: &'a BlackBoxCase,
    pub outcome: &'a BlackBoxOutcome,
    pub judged: &'a JudgedProcessRun,
    /// The broken invariant to lead with.
    pub invariant: &'a str,
    /// The faults the run fired and where (`None`: the pilot).
    pub fault: Option<&'a FaultPlan>,
    /// The seed of the random plan it ran (`None`: an enumerated plan or the pilot).
    pub seed: Option<u64>,
    /// The events before shrinking, and the runs made.
    pub shrunk_from: usize,
    pub runs: usize,
}

impl FailingRun<'_> {
    /// The counterexample, with its picture drawn when `draw`.
    pub(super) fn report(&self, draw: bool) -> BlackBoxCounterexample {
        // What fired, of what was planned: a plan's later point may never be reached.
        let fired = self.fault.map(|plan| plan.fired(self.outcome));
        let scenario = scenario_of(self.case, fired.as_ref());
        let mut violations = self.judged.violations.clone();
        if let Some(i) = violations
            .iter()
            .position(|v| v.invariant == self.invariant)
        {
            let lead = violations.remove(i);
            violations.insert(0, lead);
        }
        let case = Case {
            scenario: &scenario,
            published: &self.judged.published,
            history: &self.judged.history,
            violations: &violations,
            real_time: true,
        };
        let (picture, picture_line) = if draw { self.draw(&case) } else { (None, None) };
        BlackBoxCounterexample {
            semantics: self.semantics,
            command: self.command.clone(),
            fault: match (self.fault, &fired) {
                (Some(plan), Some(fired)) if fired.0.is_empty() => {
                    format!("none fired (planned: {plan})")
                }
                (_, Some(fired)) => fired.to_string(),
                _ => "none (the pilot run)".into(),
            },
            seed: self.seed,
            violation: violations[0].clone(),
            also: violations[1..].to_vec(),
            diagnoses: diagnose(&case),
            events: self
                .case
                .events
                .iter()
                .map(|e| e.event_id.clone())
                .collect(),
            shrunk_from: self.shrunk_from,
            runs: self.runs,
            timeline: lanes(&case),
            output: outputs(self.outcome),
            picture,
            picture_line,
        }
    }

    /// Writes the picture under the target directory, named after the running test (or
    /// program) and the invariant, as a simulated check's.
    fn draw(&self, case: &Case<'_>) -> (Option<PathBuf>, Option<String>) {
        let replay = format!(
            "effectively-once check -- {} runs the program again (real processes: the timings \
             differ from run to run)",
            self.command
        );
        let html = picture::render(std::slice::from_ref(case), &replay);
        let exe = std::env::current_exe().ok();
        let name = picture::file_name(
            exe.as_deref(),
            std::thread::current().name(),
            &format!("black-box.{}", case.violations[0].invariant),
        );
        match picture::write(&picture::target_dir(), &name, &html) {
            Ok(path) => {
                let line = format!("picture: {}", picture::shown(&path));
                (Some(path), Some(line))
            }
            Err(e) => (None, Some(format!("picture: not written: {e}"))),
        }
    }
}

/// The run's input as a scenario (what the report's parts read): one partition per instance,
/// the events with their payloads, and the fault when it is anchored to an event's effect
/// (a fault at the n-th request of an api is the history's to tell).
fn scenario_of(case: &BlackBoxCase, plan: Option<&FaultPlan>) -> Scenario {
    let events: Vec<StreamEvent> = case
        .events
        .iter()
        .map(|e| StreamEvent {
            event: Event {
                event_id: e.event_id.clone(),
                key: e.key.clone(),
                payload: serde_json::from_slice(&e.payload).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(&e.payload).into_owned())
                }),
            },
            produced_twice: false,
            poison: false,
            aborted_first: false,
        })
        .collect();
    let faults = plan
        .map(|plan| plan.0.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|(point, fault)| match point {
            CrashPoint::Effect { event_id, call } => case
                .events
                .iter()
                .position(|e| &e.event_id == event_id)
                .map(|event| ScenarioFault {
                    event,
                    operation: Operation::Effect,
                    occurrence: *call,
                    fault: *fault,
                }),
            CrashPoint::Wire { .. } => None,
        })
        .collect();
    Scenario {
        seed: 0,
        partitions: i32::try_from(case.instances).unwrap_or(i32::MAX),
        instances: case.instances,
        late_joins: Vec::new(),
        events,
        faults,
    }
}

/// The most lines of one incarnation's output a report shows (its last ones).
const OUTPUT_LINES: usize = 50;

/// The most incarnations whose output a report shows: the first and the last halves.
const OUTPUT_LIVES: usize = 10;

/// Each incarnation's output, headed by its name: its last [`OUTPUT_LINES`] lines, of the
/// first and last incarnations when there are more than [`OUTPUT_LIVES`] (a crash loop).
pub(super) fn outputs(outcome: &BlackBoxOutcome) -> String {
    let mut text = String::new();
    let lives = &outcome.lives;
    for (n, life) in lives.iter().enumerate() {
        let left_out = lives.len().saturating_sub(OUTPUT_LIVES);
        if left_out > 0 && n >= OUTPUT_LIVES / 2 && n < OUTPUT_LIVES / 2 + left_out {
            if n == OUTPUT_LIVES / 2 {
                text.push_str(&format!(
                    "--- ... {left_out} incarnations left out ... ---\n"
                ));
            }
            continue;
        }
        text.push_str(&format!("--- {} ---\n", life.incarnation));
        let lines: Vec<&str> = life.output.lines().collect();
        let hidden = lines.len().saturating_sub(OUTPUT_LINES);
        if hidden > 0 {
            text.push_str(&format!("[... {hidden} earlier lines ...]\n"));
        }
        for line in &lines[hidden..] {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

impl fmt::Display for BlackBoxCounterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "effectively-once black-box check FAILED: `{}` is not {}",
            self.command, self.semantics
        )?;
        writeln!(f, "fault: {}", self.fault)?;
        if let Some(seed) = self.seed {
            writeln!(
                f,
                "found by a random plan from seed {seed} (`{SEED_ENV}={seed}` or \
                 `BlackBox::seed({seed})` draws the same plans)"
            )?;
        }
        write!(f, "input: {}", self.events.join(", "))?;
        if self.events.len() < self.shrunk_from {
            write!(f, " (shrunk from {} events)", self.shrunk_from)?;
        }
        writeln!(f, "; found in {} runs", self.runs)?;
        write!(f, "{}", self.violation)?;
        for other in &self.also {
            write!(f, "also {other}")?;
        }
        if !self.diagnoses.is_empty() {
            writeln!(f, "\ndiagnosis:")?;
            for d in &self.diagnoses {
                writeln!(f, "  - {d}")?;
            }
        }
        writeln!(
            f,
            "\ntimeline (seconds since the run started; iN#n is instance N's n-th process):"
        )?;
        for line in self.timeline.lines() {
            writeln!(f, "  {line}")?;
        }
        write!(f, "\noutput:\n{}", self.output)?;
        if let Some(line) = &self.picture_line {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::outputs;
    use crate::history::{Incarnation, InstanceId};
    use crate::process::{BlackBoxOutcome, Ending, Life};

    fn outcome(lives: usize, lines: usize) -> BlackBoxOutcome {
        BlackBoxOutcome {
            ending: Ending::CaughtUp,
            attempts: Vec::new(),
            wire: Vec::new(),
            lives: (1..=lives as u32)
                .map(|number| Life {
                    incarnation: Incarnation {
                        instance: InstanceId(1),
                        number,
                    },
                    started: Duration::ZERO,
                    ended_at: None,
                    output: (0..lines)
                        .map(|n| format!("{number}: line {n}\n"))
                        .collect(),
                    ended: None,
                })
                .collect(),
            malformed: Vec::new(),
            problems: Vec::new(),
            ends: BTreeMap::new(),
            landed: Vec::new(),
            effect_faults_fired: Vec::new(),
            stopped_at: Duration::ZERO,
            left_behind: Default::default(),
        }
    }

    #[test]
    fn a_crash_loops_output_shows_its_first_and_last_incarnations_and_their_last_lines() {
        let text = outputs(&outcome(50, 80));
        assert!(text.starts_with("--- i1#1 ---\n[... 30 earlier lines ...]\n1: line 30\n"));
        assert!(text.contains("--- i1#5 ---") && !text.contains("--- i1#6 ---"));
        assert!(text.contains("--- ... 40 incarnations left out ... ---\n--- i1#46 ---"));
        assert!(text.ends_with("50: line 79\n"));
        assert_eq!(text.lines().count(), 10 * (1 + 1 + 50) + 1);
        // Short outputs as they are.
        assert_eq!(
            outputs(&outcome(1, 2)),
            "--- i1#1 ---\n1: line 0\n1: line 1\n"
        );
    }
}
