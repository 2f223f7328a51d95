//! Consumers written the way real programs are (`fixtures/corpus`): each bug is caught and
//! its correct twin passes.

use std::time::{Duration, Instant};

use effectively_once::check::{CaseRun, check_at_least_once, check_exactly_once, run_scenario};
use effectively_once::history::HistoryEvent;
use effectively_once::scenario::{Event, Scenario, ScenarioFault, StreamEvent};
use effectively_once::{
    CheckError, Counterexample, Fault, FaultKind, InstanceContext, Operation, Passed, Semantics,
    Verifier, check_effectively_once,
};

use crate::fixtures::corpus::base_producer_forwarder::{self, CommitOn};
use crate::fixtures::corpus::commit_on_revoke::{self, Store as RevokeStore};
use crate::fixtures::corpus::forwarder::{self, Order};
use crate::fixtures::corpus::graceful_shutdown::{self, InFlight};
use crate::fixtures::corpus::linger_batch::{self, Offsets};
use crate::fixtures::corpus::partition_tasks::{self, Commit as QueueCommit};
use crate::fixtures::corpus::per_partition::{self, Commit};
use crate::fixtures::corpus::retry_backoff::{self, Key};
use crate::fixtures::corpus::slow_auto_commit::{self, Store as SlowStore};
use crate::fixtures::corpus::stream_loop::{self, Loop};
use crate::fixtures::corpus::sync_poll::{self, Order as PollOrder};
use crate::fixtures::corpus::transactional_batch::{self, OnRevoke};
use crate::fixtures::corpus::txn_rewind::{self, OnAbort};
use crate::fixtures::notification::{BoxError, EMAIL};
use crate::support::*;

fn forwarder_verifier() -> Verifier {
    let mut v = notification_verifier();
    for output in forwarder::outputs() {
        v.output_topic(output);
    }
    v
}

/// Two events, the first a poison record, one instance, no fault.
fn poison_then_event() -> Scenario {
    let event = |n: usize, poison| StreamEvent {
        event: Event {
            event_id: format!("evt-{n}"),
            key: "k0".into(),
            payload: serde_json::json!({ "value": n }),
        },
        produced_twice: false,
        poison,
        aborted_first: false,
    };
    Scenario {
        seed: 3,
        partitions: 1,
        instances: 1,
        late_joins: Vec::new(),
        events: vec![event(0, true), event(1, false)],
        faults: Vec::new(),
    }
}

#[test]
fn a_verbatim_copy_of_a_poison_record_is_attributed_to_it_not_a_phantom() {
    let run = run_scenario(
        Semantics::AtLeastOnce,
        &forwarder_verifier(),
        &poison_then_event(),
        |ctx| forwarder::instance(ctx, Order::CommitAfterAcks),
    )
    .unwrap();
    assert_eq!(run.violations, [], "{}", run.outcome.history());
    let copies = run
        .ledger
        .observed(forwarder::DOWNSTREAM[0])
        .expect("observed")
        .expect("read");
    assert_eq!(copies.get("evt-0"), Some(&1), "{copies:?}");
}

#[test]
fn the_forwarder_that_commits_after_the_acks_is_at_least_once() {
    let passed = check_at_least_once(&forwarder_verifier(), |ctx| {
        forwarder::instance(ctx, Order::CommitAfterAcks)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(passed.faults_fired > passed.cases as u64 / 2, "{passed}");
    // A failed commit, then a crash right after the rewind's seek: the next incarnation
    // starts from the committed offsets all the same.
    let scenario = one_fault(3, 2, Operation::CommitTransaction, Fault::Fail);
    let mut scenario = Scenario {
        faults: scenario
            .faults
            .into_iter()
            .chain([ScenarioFault {
                event: 2,
                operation: Operation::Seek,
                occurrence: 1,
                fault: Fault::CrashAfter,
            }])
            .collect(),
        ..scenario
    };
    scenario.instances = 1;
    let run = run_scenario(
        Semantics::ExactlyOnce,
        &transactional_faults(),
        &scenario,
        |ctx| txn_rewind::instance(ctx, OnAbort::Rewind),
    )
    .unwrap();
    let history = run.outcome.history().to_string();
    println!("{history}");
    assert!(
        history.contains("CRASHED (fault: crash after seek)"),
        "{history}"
    );
    assert!(run.violations.is_empty(), "{history}");
}

#[test]
fn the_forwarder_that_commits_first_loses_records() {
    let c = counterexample(check_at_least_once(&forwarder_verifier(), |ctx| {
        forwarder::instance(ctx, Order::CommitFirst)
    }));
    assert_eq!(c.violation().invariant, "at-least-once", "{c}");
}

/// The base-producer forwarder's verifier: its downstream topic counted per event.
fn base_forwarder_verifier() -> Verifier {
    let mut v = notification_verifier();
    v.output_topic(base_producer_forwarder::output());
    v
}

#[test]
fn the_base_producer_forwarder_that_commits_after_its_delivery_reports_is_at_least_once() {
    assert_passed(check_at_least_once(&base_forwarder_verifier(), |ctx| {
        base_producer_forwarder::instance(ctx, CommitOn::Delivery)
    }));
}

#[test]
fn the_base_producer_forwarder_that_commits_after_send_loses_records() {
    let c = counterexample(check_at_least_once(&base_forwarder_verifier(), |ctx| {
        base_producer_forwarder::instance(ctx, CommitOn::Send)
    }));
    assert_violates(&c, "at-least-once", "LOST");
}

#[test]
fn a_failed_delivery_is_sent_again_by_the_base_producer_forwarder_and_lost_by_its_twin() {
    let scenario = one_fault(3, 1, Operation::Send, Fault::Fail);
    let run = |commit| {
        run_scenario(
            Semantics::AtLeastOnce,
            &base_forwarder_verifier(),
            &scenario,
            move |ctx| base_producer_forwarder::instance(ctx, commit),
        )
        .unwrap()
    };
    let correct = run(CommitOn::Delivery);
    let history = correct.outcome.history().to_string();
    assert_eq!(correct.violations, [], "{history}");
    assert!(history.contains("FAULT: the send"), "{history}");
    let twin = run(CommitOn::Send);
    let history = twin.outcome.history().to_string();
    let invariants: Vec<_> = twin
        .violations
        .iter()
        .map(|v| v.invariant.as_str())
        .collect();
    assert_eq!(invariants, ["at-least-once"], "{history}");
}

/// The violation is `invariant`, and its report marks an event `marker` (LOST, DUPLICATED).
fn assert_violates(c: &Counterexample, invariant: &str, marker: &str) {
    assert_eq!(c.violation().invariant, invariant, "{c}");
    assert!(
        c.violation().details.iter().any(|d| d.ends_with(marker)),
        "{c}"
    );
}

/// Passed the default case count, most cases with a fault that fired.
fn assert_passed(result: Result<Passed, CheckError>) {
    let passed = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(passed.cases, 256, "proptest's default case count");
    assert!(passed.faults_fired > passed.cases as u64 / 2, "{passed}");
}

/// `events` events on one partition, one instance, and `fault` on the first `operation` of
/// event `at`.
fn one_fault(events: usize, at: usize, operation: Operation, fault: Fault) -> Scenario {
    let mut scenario = poison_then_event();
    scenario.events = (0..events)
        .map(|n| {
            let mut event = scenario.events[1].clone();
            event.event.event_id = format!("evt-{n}");
            event
        })
        .collect();
    scenario.faults = vec![ScenarioFault {
        event: at,
        operation,
        occurrence: 1,
        fault,
    }];
    scenario
}

/// Runs `scenario` with the email verifier.
fn run_case<Fut>(
    semantics: Semantics,
    scenario: &Scenario,
    instance: impl Fn(InstanceContext) -> Fut + 'static,
) -> CaseRun
where
    Fut: std::future::Future<Output = Result<(), BoxError>> + 'static,
{
    run_scenario(semantics, &verifier(), scenario, instance).unwrap()
}

/// The case's only violation is `invariant`, marking an event `marker`.
fn assert_only_violation(run: &CaseRun, invariant: &str, marker: &str) {
    let history = run.outcome.history();
    assert_eq!(run.violations.len(), 1, "{history}");
    assert_eq!(run.violations[0].invariant, invariant, "{history}");
    assert!(
        run.violations[0].details[0].ends_with(marker),
        "{:?}",
        run.violations[0]
    );
}

// ----- a select! batch loop with a linger timer -----

#[test]
fn the_linger_batch_loop_that_stores_offsets_after_the_batch_is_at_least_once() {
    assert_passed(check_at_least_once(&verifier(), |ctx| {
        linger_batch::instance(ctx, Offsets::StoreAfterBatch)
    }));
}

#[test]
fn the_linger_batch_loop_on_librdkafkas_auto_store_loses_the_batch() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        linger_batch::instance(ctx, Offsets::AutoStore)
    }));
    assert_violates(&c, "at-least-once", "LOST");
}

#[test]
fn the_linger_timer_that_drops_a_stalled_or_frozen_recv_loses_nothing() {
    // evt-0 waits in the batch while the recv of evt-1 is slow (the process alive) or the
    // process is frozen in it for less than the session timeout: the linger timer fires
    // first and drops that recv.
    for fault in [
        Fault::Stall(Duration::from_secs(10)),
        Fault::Freeze(Duration::from_secs(10)),
    ] {
        let slow = one_fault(2, 1, Operation::Recv, fault);
        let run = run_case(Semantics::AtLeastOnce, &slow, |ctx| {
            linger_batch::instance(ctx, Offsets::StoreAfterBatch)
        });
        let history = run.outcome.history();
        assert_eq!(run.violations, [], "{fault:?}:\n{history}");
    }
}

// ----- StreamExt loops over consumer.stream() -----

#[test]
fn the_stream_loop_that_commits_each_chunk_after_its_emails_is_at_least_once() {
    assert_passed(check_at_least_once(&verifier(), |ctx| {
        stream_loop::instance(ctx, Loop::ChunksThenCommit)
    }));
}

#[test]
fn the_concurrent_stream_loop_that_commits_each_record_as_it_completes_loses_records() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        stream_loop::instance(ctx, Loop::ConcurrentCommitEach)
    }));
    assert_violates(&c, "at-least-once", "LOST");
}

// ----- a synchronous poll loop (rdkafka's BaseConsumer) on a thread of its own -----

#[test]
fn the_sync_poll_loop_that_commits_after_its_idempotent_email_is_effectively_once() {
    assert_passed(check_effectively_once(&verifier(), |ctx| {
        sync_poll::instance(ctx, PollOrder::EffectFirst)
    }));
}

#[test]
fn the_sync_poll_loop_that_commits_before_its_email_loses_emails() {
    let c = counterexample(check_effectively_once(&verifier(), |ctx| {
        sync_poll::instance(ctx, PollOrder::CommitFirst)
    }));
    assert_violates(&c, "effectively-once", "LOST");
}

// ----- one spawned task per partition -----

#[test]
fn per_partition_tasks_that_commit_what_is_done_are_at_least_once() {
    assert_passed(check_at_least_once(&verifier(), |ctx| {
        per_partition::instance(ctx, Commit::WhenDone)
    }));
}

#[test]
fn per_partition_tasks_that_commit_on_dispatch_lose_records() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        per_partition::instance(ctx, Commit::OnDispatch)
    }));
    assert_violates(&c, "at-least-once", "LOST");
}

// ----- one task per partition, each on its partition's own queue -----

#[test]
fn partition_queue_tasks_that_commit_each_record_after_its_email_are_at_least_once() {
    assert_passed(check_at_least_once(&verifier(), |ctx| {
        partition_tasks::instance(ctx, QueueCommit::Message)
    }));
}

#[test]
fn partition_queue_tasks_that_commit_the_consumer_state_lose_other_partitions_records() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        partition_tasks::instance(ctx, QueueCommit::ConsumerState)
    }));
    assert_violates(&c, "at-least-once", "LOST");
}

// ----- a graceful shutdown on a signal -----

#[test]
fn a_graceful_shutdown_that_finishes_the_record_in_flight_is_at_least_once() {
    assert_passed(check_at_least_once(&verifier(), |ctx| {
        graceful_shutdown::instance(ctx, InFlight::Finish)
    }));
}

#[test]
fn a_shutdown_that_abandons_the_record_in_flight_and_commits_its_position_loses_it() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        graceful_shutdown::instance(ctx, InFlight::Abandon)
    }));
    assert_violates(&c, "at-least-once", "LOST");
}

#[test]
fn a_shutdown_during_a_slow_email_loses_it_only_if_the_record_is_abandoned() {
    // The email of evt-0 takes 6 minutes; the consumer is told to stop after 5 s.
    let slow = one_fault(
        1,
        0,
        Operation::Effect,
        Fault::Stall(Duration::from_secs(6 * 60)),
    );
    let abandoned = run_case(Semantics::AtLeastOnce, &slow, |ctx| {
        graceful_shutdown::instance(ctx, InFlight::Abandon)
    });
    assert_only_violation(&abandoned, "at-least-once", "LOST");
    let finished = run_case(Semantics::AtLeastOnce, &slow, |ctx| {
        graceful_shutdown::instance(ctx, InFlight::Finish)
    });
    let history = finished.outcome.history();
    assert_eq!(finished.violations, [], "{history}");
}

// ----- retries with exponential backoff -----

#[test]
fn retries_with_the_event_id_as_idempotency_key_are_effectively_once() {
    assert_passed(check_effectively_once(&verifier(), |ctx| {
        retry_backoff::instance(ctx, Key::EventId)
    }));
}

#[test]
fn retries_without_an_idempotency_key_duplicate() {
    let c = counterexample(check_effectively_once(&verifier(), |ctx| {
        retry_backoff::instance(ctx, Key::None)
    }));
    assert_violates(&c, "effectively-once", "DUPLICATED");
}

#[test]
fn a_retry_after_a_timed_out_email_sends_it_again_without_any_crash() {
    let timed_out = one_fault(1, 0, Operation::Effect, Fault::Ambiguous);
    let plain = run_case(Semantics::EffectivelyOnce, &timed_out, |ctx| {
        retry_backoff::instance(ctx, Key::None)
    });
    let history = plain.outcome.history();
    assert_eq!(
        history.effect_counts(EMAIL).get("evt-0"),
        Some(&2),
        "{history}"
    );
    assert!(
        !history
            .entries()
            .iter()
            .any(|e| matches!(e.event, HistoryEvent::InstanceCrashed { .. })),
        "{history}"
    );
    assert_only_violation(&plain, "effectively-once", "DUPLICATED");
    let keyed = run_case(Semantics::EffectivelyOnce, &timed_out, |ctx| {
        retry_backoff::instance(ctx, Key::EventId)
    });
    let history = keyed.outcome.history();
    assert_eq!(keyed.violations, [], "{history}");
    assert_eq!(
        history.effect_counts(EMAIL).get("evt-0"),
        Some(&1),
        "{history}"
    );
}

// ----- auto-commit with an effect slower than the commit interval -----

#[test]
fn auto_commit_that_stores_offsets_after_a_slow_effect_is_at_least_once() {
    assert_passed(check_at_least_once(&verifier(), |ctx| {
        slow_auto_commit::instance(ctx, SlowStore::AfterEffect)
    }));
}

#[test]
fn auto_commit_with_an_effect_slower_than_the_interval_loses_records() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        slow_auto_commit::instance(ctx, SlowStore::OnReceive)
    }));
    assert_violates(&c, "at-least-once", "LOST");
}

// ----- commit on revoke -----

#[test]
fn commit_on_revoke_of_processed_offsets_is_at_least_once() {
    assert_passed(check_at_least_once(&verifier(), |ctx| {
        commit_on_revoke::instance(ctx, RevokeStore::AfterProcessing)
    }));
}

#[test]
fn commit_on_revoke_of_processed_offsets_under_cooperative_sticky_is_at_least_once() {
    assert_passed(check_at_least_once(&verifier(), |ctx| {
        commit_on_revoke::cooperative_instance(ctx, RevokeStore::AfterProcessing)
    }));
}

#[test]
fn commit_on_revoke_of_processed_offsets_as_static_members_is_at_least_once() {
    assert_passed(check_at_least_once(&verifier(), |ctx| {
        commit_on_revoke::static_instance(ctx, RevokeStore::AfterProcessing)
    }));
}

#[test]
fn commit_on_revoke_of_offsets_stored_at_receive_as_static_members_loses_records() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        commit_on_revoke::static_instance(ctx, RevokeStore::OnReceive)
    }));
    assert_violates(&c, "at-least-once", "LOST");
}

#[test]
fn commit_on_revoke_of_offsets_stored_at_receive_under_cooperative_sticky_loses_records() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        commit_on_revoke::cooperative_instance(ctx, RevokeStore::OnReceive)
    }));
    assert_violates(&c, "at-least-once", "LOST");
}

#[test]
fn commit_on_revoke_of_offsets_stored_at_receive_loses_the_record_that_failed_on_close() {
    let c = counterexample(check_at_least_once(&verifier(), |ctx| {
        commit_on_revoke::instance(ctx, RevokeStore::OnReceive)
    }));
    assert_violates(&c, "at-least-once", "LOST");
}

#[test]
fn the_commit_on_revoke_when_the_consumer_closes_after_a_failed_email_commits_it() {
    let failed = one_fault(1, 0, Operation::Effect, Fault::Fail);
    let stored_at_receive = run_case(Semantics::AtLeastOnce, &failed, |ctx| {
        commit_on_revoke::instance(ctx, RevokeStore::OnReceive)
    });
    assert_only_violation(&stored_at_receive, "at-least-once", "LOST");
}

#[test]
fn the_commit_on_revoke_of_processed_offsets_survives_a_failed_email() {
    let failed = one_fault(1, 0, Operation::Effect, Fault::Fail);
    let run = run_case(Semantics::AtLeastOnce, &failed, |ctx| {
        commit_on_revoke::instance(ctx, RevokeStore::AfterProcessing)
    });
    let history = run.outcome.history();
    assert_eq!(run.violations, [], "{history}");
}

// ----- every correct twin, at length -----

/// Checks one correct twin for `cases` cases with `v`; prints its figures and returns its
/// name if it failed.
fn long_check(
    name: &str,
    mut v: Verifier,
    cases: u32,
    result: impl FnOnce(&Verifier) -> Result<Passed, CheckError>,
) -> Option<String> {
    v.cases(cases);
    let start = Instant::now();
    let result = result(&v);
    let took = start.elapsed();
    match result {
        Ok(passed) => {
            eprintln!("{name}: {passed} in {took:.1?}");
            None
        }
        Err(e) => {
            eprintln!("{name}: FAILED after {took:.1?}:\n{e}");
            Some(name.to_string())
        }
    }
}

#[test]
#[ignore = "long: 10,000 cases per correct twin (run in release)"]
fn every_correct_twin_passes_ten_thousand_cases() {
    const CASES: u32 = 10_000;
    let failed: Vec<String> = [
        long_check("forwarder", forwarder_verifier(), CASES, |v| {
            check_at_least_once(v, |ctx| forwarder::instance(ctx, Order::CommitAfterAcks))
        }),
        long_check(
            "base producer forwarder",
            base_forwarder_verifier(),
            CASES,
            |v| {
                check_at_least_once(v, |ctx| {
                    base_producer_forwarder::instance(ctx, CommitOn::Delivery)
                })
            },
        ),
        long_check("linger batch", verifier(), CASES, |v| {
            check_at_least_once(v, |ctx| {
                linger_batch::instance(ctx, Offsets::StoreAfterBatch)
            })
        }),
        long_check("per-partition tasks", verifier(), CASES, |v| {
            check_at_least_once(v, |ctx| per_partition::instance(ctx, Commit::WhenDone))
        }),
        long_check("graceful shutdown", verifier(), CASES, |v| {
            check_at_least_once(v, |ctx| graceful_shutdown::instance(ctx, InFlight::Finish))
        }),
        long_check("retry with backoff", verifier(), CASES, |v| {
            check_effectively_once(v, |ctx| retry_backoff::instance(ctx, Key::EventId))
        }),
        long_check("slow auto-commit", verifier(), CASES, |v| {
            check_at_least_once(v, |ctx| {
                slow_auto_commit::instance(ctx, SlowStore::AfterEffect)
            })
        }),
        long_check("commit on revoke", verifier(), CASES, |v| {
            check_at_least_once(v, |ctx| {
                commit_on_revoke::instance(ctx, RevokeStore::AfterProcessing)
            })
        }),
        long_check("commit on revoke, cooperative", verifier(), CASES, |v| {
            check_at_least_once(v, |ctx| {
                commit_on_revoke::cooperative_instance(ctx, RevokeStore::AfterProcessing)
            })
        }),
        long_check("commit on revoke, static members", verifier(), CASES, |v| {
            check_at_least_once(v, |ctx| {
                commit_on_revoke::static_instance(ctx, RevokeStore::AfterProcessing)
            })
        }),
        long_check("stream chunks", verifier(), CASES, |v| {
            check_at_least_once(v, |ctx| stream_loop::instance(ctx, Loop::ChunksThenCommit))
        }),
        long_check("sync poll loop", verifier(), CASES, |v| {
            check_effectively_once(v, |ctx| sync_poll::instance(ctx, PollOrder::EffectFirst))
        }),
        long_check("partition queue tasks", verifier(), CASES, |v| {
            check_at_least_once(v, |ctx| {
                partition_tasks::instance(ctx, QueueCommit::Message)
            })
        }),
        long_check("transactional rewind", transactional_faults(), CASES, |v| {
            check_exactly_once(v, |ctx| txn_rewind::instance(ctx, OnAbort::Rewind))
        }),
        long_check("transactional batches", pipeline_verifier(), CASES, |v| {
            check_exactly_once(v, |ctx| transactional_batch::instance(ctx, OnRevoke::Abort))
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert_eq!(failed, Vec::<String>::new(), "false alarms");
}

/// The output topics of the transactional forwarders, counted as `read_committed` reads them.
fn pipeline_verifier() -> Verifier {
    let mut v = notification_verifier();
    for output in crate::fixtures::pipeline::outputs() {
        v.output_topic(output);
    }
    v
}

#[test]
fn transactional_batches_aborted_on_revoke_are_exactly_once() {
    assert_passed(check_exactly_once(&pipeline_verifier(), |ctx| {
        transactional_batch::instance(ctx, OnRevoke::Abort)
    }));
}

#[test]
fn transactional_batches_left_open_on_revoke_duplicate_their_outputs() {
    let c = counterexample(check_exactly_once(&pipeline_verifier(), |ctx| {
        transactional_batch::instance(ctx, OnRevoke::KeepOpen)
    }));
    assert_violates(&c, "exactly-once", "DUPLICATED");
}

/// The transactional fault kinds, and crashes around every call.
const TRANSACTIONAL_KINDS: [FaultKind; 7] = [
    FaultKind::Crash,
    FaultKind::CommitFailure,
    FaultKind::AmbiguousCommit,
    FaultKind::Zombie,
    FaultKind::TransactionTimeout,
    FaultKind::LostAck,
    FaultKind::LateJoin,
];

/// [`TRANSACTIONAL_KINDS`] on the batching pipeline that rewinds with `seek` after an abort.
/// The seek happens only after a failed transaction, never in the fault-free pilot run the
/// verifier restricts faults to: the operations are given, the seek among them.
fn transactional_faults() -> Verifier {
    use Operation::*;
    let mut space = effectively_once::scenario::ScenarioSpace::default();
    space.faults(&TRANSACTIONAL_KINDS).operations(&[
        Recv,
        Send,
        InitTransactions,
        BeginTransaction,
        SendOffsetsToTransaction,
        CommitTransaction,
        AbortTransaction,
        Seek,
    ]);
    let mut v = pipeline_verifier();
    v.space(space);
    v
}

#[test]
fn a_transactional_loop_that_seeks_back_to_the_committed_offsets_after_an_abort_is_exactly_once() {
    let passed = check_exactly_once(&transactional_faults(), |ctx| {
        txn_rewind::instance(ctx, OnAbort::Rewind)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(passed.faults_fired > passed.cases as u64 / 2, "{passed}");
}

#[test]
fn a_transactional_loop_that_carries_on_after_an_abort_loses_the_aborted_batch() {
    let mut v = pipeline_verifier();
    v.faults(&TRANSACTIONAL_KINDS);
    let c = counterexample(check_exactly_once(&v, |ctx| {
        txn_rewind::instance(ctx, OnAbort::CarryOn)
    }));
    println!("{c}");
    assert_violates(&c, "exactly-once", "LOST");
    assert!(
        c.scenario
            .faults
            .iter()
            .any(|f| f.operation == Operation::CommitTransaction),
        "{c}"
    );
}
