//! Checking a consumer: generate scenarios, run each on the simulator, judge the history,
//! shrink a failure for each distinct broken invariant and report them, safety first.
//!
//! [`check`](crate::check()) is the function, [`Verifier`] its settings; the
//! `assert_*!` macros panic with the [`Counterexample`] it returns. This
//! module holds the rest: the checks of the other semantics, one scenario's run and verdict
//! ([`run_scenario`]), the comparison with a real broker ([`compare_on_broker`]) and the
//! environment variables the defaults come from.
//!
//! Inside, the check is split by what each part does: `config` (the verifier), `search`
//! (proptest's generation, on a watched worker thread), `judge` (one scenario's run and the
//! invariants), `shrink` (the passes after proptest's), `report` (the verdict as text).

mod ahead;
pub(crate) mod black_box;
mod case_key;
pub(crate) mod config;
mod differential;
pub(crate) mod entry;
mod judge;
pub(crate) mod report;
mod search;
pub(crate) mod shard;
mod shrink;

pub use black_box::{BlackBox, BlackBoxCounterexample, BlackBoxError, BlackBoxPassed};
pub(crate) use config::Verifier;
pub use differential::{Differential, broker_scenarios, compare_on_broker, runs_on_a_broker};
pub(crate) use entry::CheckError;
pub use entry::{check_at_least_once, check_at_most_once, check_exactly_once};
pub use judge::{CaseRun, NotCheckable, run_scenario};
pub(crate) use report::{Counterexample, Passed};
pub use report::{Diagnosis, DiagnosisKind};
pub use shard::Shard;

/// The environment variable that overrides the default seed (0).
pub const SEED_ENV: &str = "EFFECTIVELY_ONCE_SEED";
/// The environment variable that picks a slice of the cases, `<index>/<count>` (such as
/// `2/8`): see [`Verifier::shard`](crate::Verifier::shard).
pub const SHARD_ENV: &str = "EFFECTIVELY_ONCE_SHARD";
/// The environment variable that overrides how many threads judge cases (default: the
/// machine's available parallelism): see [`Verifier::threads`](crate::Verifier::threads).
pub const THREADS_ENV: &str = "EFFECTIVELY_ONCE_THREADS";
/// The environment variable that overrides the per-case wall-clock limit, in seconds.
pub const CASE_TIMEOUT_ENV: &str = "EFFECTIVELY_ONCE_CASE_TIMEOUT";
/// The environment variable that turns the counterexample's picture off (`0`) or on (`1`,
/// the default): see [`Verifier::picture`](crate::Verifier::picture).
pub const PICTURE_ENV: &str = "EFFECTIVELY_ONCE_PICTURE";
