//! Verdicts: a pass with its statistics, or a minimal counterexample with its timeline.

use std::fmt;
use std::path::{Path, PathBuf};

use std::time::Duration;

use super::shard::Shard;
use crate::history::{History, PublishedEvent};
use crate::invariant::{Semantics, Violation};
use crate::report::diagnosis::diagnose;
pub use crate::report::diagnosis::{Diagnosis, DiagnosisKind};
use crate::report::timeline::lanes;
use crate::report::{Case, picture};
use crate::scenario::Scenario;

/// A passed check.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Passed {
    /// The semantics checked.
    pub semantics: Semantics,
    /// How many generated cases ran and passed.
    pub cases: u32,
    /// The seed they were generated from.
    pub seed: u64,
    /// The slice of the seed's cases they were ([`Shard::WHOLE`] unless split).
    pub shard: Shard,
    /// How many injected faults fired over all cases.
    pub faults_fired: u64,
    /// How many instance crashes happened over all cases.
    pub crashes: u64,
    /// With a real broker ([`Verifier::broker`](super::Verifier::broker)): the comparison of
    /// sampled scenarios on it.
    pub broker: Option<String>,
}

/// `1 event`, `2 events`.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "effectively-once check passed: {} held in {} (seed {}{}; {} fired, {})",
            self.semantics,
            counted(self.cases.into(), "case", "cases"),
            self.seed,
            shard_note(self.shard),
            counted(self.faults_fired, "fault", "faults"),
            counted(self.crashes, "crash", "crashes"),
        )?;
        if let Some(broker) = &self.broker {
            write!(f, "\n{broker}")?;
        }
        Ok(())
    }
}

/// `, shard 2/8` after a seed when the cases were split, nothing otherwise.
fn shard_note(shard: Shard) -> String {
    if shard.is_whole() {
        String::new()
    } else {
        format!(", shard {shard}")
    }
}

/// How a report names what replays it: the seed, and the shard when the cases were split.
fn replay_words(seed: u64, shard: Shard) -> String {
    if shard.is_whole() {
        format!(
            "seed {seed} (set {}=<n> to explore others)",
            super::SEED_ENV
        )
    } else {
        format!(
            "seed {seed}, shard {shard} ({}={shard}; set {}=<n> to explore others)",
            super::SHARD_ENV,
            super::SEED_ENV
        )
    }
}

/// A minimal failing scenario and everything needed to understand and replay it. Its
/// [`Display`](fmt::Display) is the report the assertions panic with; the same seed gives the
/// same bytes.
#[derive(Debug)]
#[non_exhaustive]
pub struct Counterexample {
    /// The semantics checked.
    pub semantics: Semantics,
    /// The broken invariants of the minimal scenario, most telling first.
    pub violations: Vec<Violation>,
    /// The minimal scenario.
    pub scenario: Scenario,
    /// Where the minimal scenario's events landed in its run (empty when the consumer hung
    /// the thread).
    pub published: Vec<PublishedEvent>,
    /// The first failing scenario, before shrinking.
    pub shrunk_from: Scenario,
    /// How many shrinking runs it took.
    pub shrink_steps: u32,
    /// How many cases passed before the first failure.
    pub passed_before: u32,
    /// The minimal scenario's history; `None` when the consumer hung the thread.
    pub history: Option<History>,
    /// The `tracing` output of the minimal scenario's run.
    pub logs: String,
    /// The seed the cases were generated from.
    pub seed: u64,
    /// The slice of the seed's cases the check ran ([`Shard::WHOLE`] unless split).
    pub shard: Shard,
    /// The input topic.
    pub topic: String,
    /// Where proptest saved the failing case, if it did.
    pub saved_in: Option<String>,
    /// True when the consumer blocked the thread for longer than the case timeout.
    pub hung: bool,
    /// With a real broker ([`Verifier::broker`](super::Verifier::broker)): the minimal
    /// scenario's run on it, compared with the simulator's.
    pub broker: Option<String>,
    /// The other invariants the search found broken, each with its own minimal scenario.
    others: Vec<Counterexample>,
    /// When two runs of a minimal scenario gave different histories: the first difference
    /// (the consumer draws on something the seed does not decide).
    nondeterminism: Option<String>,
    /// Where the picture of this counterexample (and the others) was written, or why not.
    picture: Option<PictureFile>,
}

/// The report's picture, written or not.
#[derive(Debug)]
enum PictureFile {
    /// Written to `path`, printed as `shown`.
    Written { path: PathBuf, shown: String },
    /// Not written, for this reason.
    Failed(String),
}

/// How to replay a check's verdict: its seed, its input topic, and where proptest saved the
/// failing case.
#[derive(Clone, Debug)]
pub(crate) struct Replay {
    pub seed: u64,
    pub shard: Shard,
    pub topic: String,
    pub saved_in: Option<String>,
}

impl Counterexample {
    /// The report of a minimal `scenario`, shrunk for the invariant named `target`, that broke
    /// `violations` (`target` not among them: it passed when run again) with `history`, found
    /// after `passed_before` passing cases from `first`. The target comes first, the other
    /// violations keep their order.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        semantics: Semantics,
        target: &str,
        mut violations: Vec<Violation>,
        scenario: Scenario,
        published: Vec<PublishedEvent>,
        history: History,
        replay: Replay,
        first: &Scenario,
        passed_before: u32,
        shrink_steps: u32,
        logs: String,
    ) -> Self {
        match violations.iter().position(|v| v.invariant == target) {
            Some(index) => {
                let first = violations.remove(index);
                violations.insert(0, first);
            }
            None if violations.is_empty() => violations.push(Violation {
                invariant: "determinism".into(),
                summary: "the minimal case failed during the search but passed when run again: \
                          the consumer behaves non-deterministically (a `select!` without \
                          `biased;`, wall-clock time, an unseeded random number)"
                    .into(),
                event_ids: Vec::new(),
                details: Vec::new(),
            }),
            None => violations.insert(
                0,
                Violation {
                    invariant: "determinism".into(),
                    summary: format!(
                        "the minimal case broke {target} during the search but not when run \
                         again: the consumer behaves non-deterministically (a `select!` without \
                         `biased;`, wall-clock time, an unseeded random number)"
                    ),
                    event_ids: Vec::new(),
                    details: Vec::new(),
                },
            ),
        }
        Counterexample {
            semantics,
            violations,
            scenario,
            published,
            shrunk_from: first.clone(),
            shrink_steps,
            passed_before,
            history: Some(history),
            logs,
            seed: replay.seed,
            shard: replay.shard,
            topic: replay.topic,
            saved_in: replay.saved_in,
            hung: false,
            broker: None,
            others: Vec::new(),
            nondeterminism: None,
            picture: None,
        }
    }

    /// Notes that a second run of the minimal scenario gave another history: `difference`
    /// says where.
    pub(crate) fn with_nondeterminism(mut self, difference: Option<String>) -> Self {
        self.nondeterminism = difference;
        self
    }

    /// The report of a case whose consumer blocked the thread for longer than `timeout`.
    pub(crate) fn hung(
        semantics: Semantics,
        timeout: Duration,
        replay: Replay,
        scenario: Option<Scenario>,
    ) -> Self {
        let scenario = scenario.unwrap_or_else(|| Scenario {
            seed: 0,
            partitions: 1,
            instances: 1,
            late_joins: Vec::new(),
            events: Vec::new(),
            faults: Vec::new(),
        });
        Counterexample {
            semantics,
            violations: vec![Violation {
                invariant: "liveness".into(),
                summary: format!(
                    "the consumer blocked its thread for more than {}s of wall-clock time \
                     (a busy loop or a blocking call that never awaits); the simulation cannot \
                     preempt it, so this case was not shrunk",
                    timeout.as_secs_f64()
                ),
                event_ids: Vec::new(),
                details: Vec::new(),
            }],
            shrunk_from: scenario.clone(),
            scenario,
            published: Vec::new(),
            shrink_steps: 0,
            passed_before: 0,
            history: None,
            logs: String::new(),
            seed: replay.seed,
            shard: replay.shard,
            topic: replay.topic,
            saved_in: None,
            hung: true,
            broker: None,
            others: Vec::new(),
            nondeterminism: None,
            picture: None,
        }
    }

    /// The first (most telling) broken invariant: a safety invariant before liveness.
    pub fn violation(&self) -> &Violation {
        &self.violations[0]
    }

    /// The other invariants the search found broken (distinct by name, safety before
    /// liveness), each with its own minimal counterexample, shrunk for that invariant; the
    /// report prints them after this one.
    pub fn other_violations(&self) -> &[Counterexample] {
        &self.others
    }

    /// The known anti-patterns this counterexample's history matches (a new group starting at
    /// `latest`, committing `offset` instead of `offset + 1`, a commit moving the group's
    /// offset backwards, offsets stored before processing over a failed effect,
    /// `store_offset` without commits, a dedup mark written outside the effect's transaction,
    /// outputs sent outside the transaction), each one sentence citing the timeline lines
    /// that show it; the report prints them after the violations. Empty when none matches, or
    /// when the consumer hung the thread (no history).
    pub fn diagnoses(&self) -> Vec<Diagnosis> {
        self.case().map_or_else(Vec::new, |case| diagnose(&case))
    }

    /// Adds the counterexamples of the other invariants the search found broken.
    pub(crate) fn with_others(mut self, others: Vec<Counterexample>) -> Self {
        self.others = others;
        self
    }

    /// Where the picture of the report was written: a self-contained HTML page with a
    /// timeline of this counterexample and of the [others](Self::other_violations), under
    /// `target/effectively-once/` (see [`Verifier::picture`](super::Verifier::picture)).
    /// `None` when it was not drawn or could not be written (the report says why).
    pub fn picture(&self) -> Option<&Path> {
        match &self.picture {
            Some(PictureFile::Written { path, .. }) => Some(path),
            _ => None,
        }
    }

    /// Draws the picture of this counterexample and the others into one page and writes it
    /// to `<target dir>/effectively-once/`, named after the running test (the thread's name,
    /// which libtest sets to the test's path, and the executable) and the violated invariant,
    /// so the same check writes the same file. An IO error is noted in the report, never a
    /// panic.
    pub(crate) fn draw_picture(&mut self) {
        let empty = History::default();
        let cases: Vec<Case<'_>> = std::iter::once(&*self)
            .chain(&self.others)
            .map(|c| Case {
                scenario: &c.scenario,
                published: &c.published,
                history: c.history.as_ref().unwrap_or(&empty),
                violations: &c.violations,
                real_time: false,
            })
            .collect();
        let replay = format!(
            "{} gives this page again",
            replay_words(self.seed, self.shard)
        );
        let html = picture::render(&cases, &replay);
        let exe = std::env::current_exe().ok();
        let name = picture::file_name(
            exe.as_deref(),
            std::thread::current().name(),
            &self.violation().invariant,
        );
        self.picture = Some(match picture::write(&picture::target_dir(), &name, &html) {
            Ok(path) => PictureFile::Written {
                shown: picture::shown(&path),
                path,
            },
            Err(e) => PictureFile::Failed(e.to_string()),
        });
    }
}

/// `text` in lines of at most `width` characters, broken at spaces (a longer word stands
/// alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

impl Counterexample {
    /// The minimal case as the report's parts read it; `None` when the consumer hung the
    /// thread (no history).
    fn case(&self) -> Option<Case<'_>> {
        self.history.as_ref().map(|history| Case {
            scenario: &self.scenario,
            published: &self.published,
            history,
            violations: &self.violations,
            real_time: false,
        })
    }

    /// The violations, the minimal scenario, its timeline and its logs; `also` for the other
    /// invariants' counterexamples.
    fn fmt_case(&self, f: &mut fmt::Formatter<'_>, also: bool) -> fmt::Result {
        let v = self.violation();
        if also {
            writeln!(
                f,
                "effectively-once check also failed: {} violated, in a minimal scenario of its \
                 own: {}",
                v.invariant, v.summary
            )?;
        } else {
            writeln!(
                f,
                "effectively-once check failed: {} violated: {}",
                v.invariant, v.summary
            )?;
        }
        for line in &v.details {
            writeln!(f, "  {line}")?;
        }
        for other in &self.violations[1..] {
            writeln!(f, "also {} violated: {}", other.invariant, other.summary)?;
            for line in &other.details {
                writeln!(f, "  {line}")?;
            }
        }
        let diagnoses = self.diagnoses();
        if !diagnoses.is_empty() {
            writeln!(f)?;
            writeln!(f, "diagnosis:")?;
            for diagnosis in &diagnoses {
                for (i, line) in wrap(&diagnosis.sentence, 96).iter().enumerate() {
                    writeln!(f, "  {}{line}", if i == 0 { "- " } else { "  " })?;
                }
            }
        }
        writeln!(f)?;
        if self.hung {
            writeln!(f, "scenario that hung:")?;
        } else {
            writeln!(
                f,
                "minimal scenario (shrunk from {} and {} in {}; {} before it):",
                counted(self.shrunk_from.events.len() as u64, "event", "events"),
                counted(self.shrunk_from.faults.len() as u64, "fault", "faults"),
                counted(self.shrink_steps.into(), "step", "steps"),
                counted(self.passed_before.into(), "passing case", "passing cases"),
            )?;
        }
        let scenario = self.scenario.with_positions(&self.published).to_string();
        for line in scenario.lines() {
            writeln!(f, "  {line}")?;
        }
        if let Some(case) = self.case() {
            writeln!(f)?;
            writeln!(f, "timeline (virtual time; #n is the incarnation):")?;
            for line in lanes(&case).lines() {
                writeln!(f, "  {line}")?;
            }
        }
        if !self.logs.is_empty() {
            writeln!(f)?;
            writeln!(f, "logs of the minimal run:")?;
            let lines: Vec<&str> = self.logs.lines().collect();
            const MAX: usize = 200;
            if lines.len() > MAX {
                writeln!(f, "  ... {} earlier lines omitted", lines.len() - MAX)?;
            }
            for line in &lines[lines.len().saturating_sub(MAX)..] {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_case(f, false)?;
        for other in &self.others {
            writeln!(f)?;
            other.fmt_case(f, true)?;
        }
        writeln!(f)?;
        let differences: Vec<&String> = std::iter::once(self)
            .chain(&self.others)
            .filter_map(|c| c.nondeterminism.as_ref())
            .collect();
        if let Some(difference) = differences.first() {
            writeln!(
                f,
                "effectively-once: this consumer is NOT deterministic: two runs of the same \
                 minimal scenario gave different histories ({difference}). The seed does not \
                 decide everything it does: an unbiased `tokio::select!` (add `biased;`, or \
                 build the tests with RUSTFLAGS=\"--cfg tokio_unstable\" so that the seed \
                 seeds tokio's random generator), wall-clock time, an unseeded random number, \
                 a HashMap's order or another thread. The report may differ when replayed."
            )?;
        }
        write!(
            f,
            "replay: {}: {} gives this report again",
            if differences.is_empty() {
                "the check is deterministic"
            } else {
                "if the consumer were deterministic"
            },
            replay_words(self.seed, self.shard),
        )?;
        match &self.saved_in {
            Some(file) => writeln!(f, "; the case is saved in {file} and replays first")?,
            None => writeln!(f)?,
        }
        match &self.picture {
            Some(PictureFile::Written { shown, .. }) => writeln!(f, "picture: {shown}")?,
            Some(PictureFile::Failed(why)) => writeln!(f, "picture: not written: {why}")?,
            None => {}
        }
        if let Some(broker) = &self.broker {
            write!(f, "\n{broker}")?;
        }
        Ok(())
    }
}
