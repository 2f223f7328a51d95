//! Scaling a check out: cases judged on several threads give the report of one thread, and a
//! check split into shards runs disjoint slices of the one case stream, each replayable alone.

use effectively_once::check::Shard;
use effectively_once::{CheckError, FaultKind, Semantics, Verifier, check, check_effectively_once};

use crate::fixtures::services::*;
use crate::support::{counterexample, verifier};

fn on_threads(threads: usize) -> Verifier {
    let mut v = verifier();
    v.threads(threads).picture(false);
    v
}

#[test]
fn a_report_is_byte_identical_on_one_thread_and_on_four() {
    for (semantics, name) in [
        (Semantics::EffectivelyOnce, "commit after"),
        (Semantics::EffectivelyOnce, "auto-commit"),
        (Semantics::AtLeastOnce, "commit before"),
    ] {
        let report = |threads| {
            let v = on_threads(threads);
            let result = match name {
                "commit after" => check(semantics, &v, commit_after_service),
                "auto-commit" => check(semantics, &v, auto_commit_service),
                _ => check(semantics, &v, commit_before_service),
            };
            counterexample(result).to_string()
        };
        assert_eq!(report(1), report(4), "{name}");
    }
}

#[test]
fn a_passing_check_counts_the_same_cases_faults_and_crashes_on_any_number_of_threads() {
    let passed = |threads| {
        let mut v = on_threads(threads);
        v.cases(60).faults(&FaultKind::ALL);
        check_effectively_once(&v, idempotency_key_service).unwrap_or_else(|e| panic!("{e}"))
    };
    let one = passed(1);
    assert!(one.crashes > 0, "{one}");
    assert_eq!(one, passed(2));
    assert_eq!(one, passed(3));
}

#[test]
fn zero_threads_is_a_configuration_error() {
    let v = on_threads(0);
    match check_effectively_once(&v, idempotency_key_service) {
        Err(CheckError::InvalidConfig(why)) => assert!(why.contains("threads"), "{why}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

fn sharded(index: u32, count: u32) -> Verifier {
    let mut v = on_threads(1);
    v.cases(64)
        .shard(Shard::new(index, count).expect("an existing shard"));
    v
}

/// Case `j` of a split check's stream is case `j / n` of shard `j mod n + 1` of `n`, whatever
/// `n`: the shard that holds the first failing case of a coarser split meets the same case
/// first, shrinks it the same way, names itself in the report and replays byte for byte.
#[test]
fn shards_slice_one_indexed_stream_and_each_failure_replays_from_its_shard() {
    let first = counterexample(check_effectively_once(
        &sharded(2, 2),
        dedup_after_effect_service,
    ));
    // The count includes the failing case itself.
    let j = u64::from(first.passed_before - 1) * 2 + 1;
    for count in [4u32, 8] {
        let index = (j % u64::from(count)) as u32 + 1;
        let mut v = sharded(index, count);
        let found = counterexample(check_effectively_once(&v, dedup_after_effect_service));
        assert_eq!(
            found.shrunk_from, first.shrunk_from,
            "shard {index}/{count} meets case {j} of the stream"
        );
        assert_eq!(
            u64::from(found.passed_before - 1),
            j / u64::from(count),
            "shard {index}/{count}"
        );
        assert_eq!(
            found.scenario, first.scenario,
            "and shrinks it the same way"
        );
        let report = found.to_string();
        assert!(
            report.contains(&format!(
                "seed 0, shard {index}/{count} (EFFECTIVELY_ONCE_SHARD={index}/{count}; set EFFECTIVELY_ONCE_SEED=<n> to explore others)"
            )),
            "{report}"
        );
        v.threads(3);
        let again = counterexample(check_effectively_once(&v, dedup_after_effect_service));
        assert_eq!(
            again.to_string(),
            report,
            "replayed on another thread count"
        );
    }
}

#[test]
fn shards_of_a_passing_check_each_run_their_own_cases_and_say_which_shard_they_were() {
    let mut v = on_threads(2);
    v.cases(30).faults(&FaultKind::ALL);
    let whole =
        check_effectively_once(&v, idempotency_key_service).unwrap_or_else(|e| panic!("{e}"));
    assert!(!whole.to_string().contains("shard"), "{whole}");
    let shards: Vec<_> = (1..=3)
        .map(|i| {
            v.shard(Shard::new(i, 3).expect("an existing shard"));
            check_effectively_once(&v, idempotency_key_service).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    for (i, passed) in shards.iter().enumerate() {
        assert_eq!(passed.cases, 30);
        assert_eq!(passed.shard, Shard::new(i as u32 + 1, 3).unwrap());
        assert!(
            passed
                .to_string()
                .contains(&format!("(seed 0, shard {}/3;", i + 1)),
            "{passed}"
        );
    }
    assert_ne!(
        (shards[0].faults_fired, shards[0].crashes),
        (shards[1].faults_fired, shards[1].crashes),
        "different slices of the stream"
    );
}
