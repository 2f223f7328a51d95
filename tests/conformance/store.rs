//! The durable consumer store: SQLite state that survives crashes, with intercepted commits.

use std::time::Duration;

use effectively_once::history::{HistoryEvent, Incarnation, InstanceId, StoreRows};
use effectively_once::{
    Anchor, DurableStore, Fault, FaultSchedule, InstanceContext, Operation, Outcome, Simulation,
};
use rusqlite::{Connection, ErrorCode};

use crate::support::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS rows (id TEXT PRIMARY KEY, incarnation INTEGER)";

/// Opens the store and creates the table (one intercepted commit: `StoreCommit` occurrence 1
/// of each incarnation's life).
fn open(ctx: &InstanceContext) -> rusqlite::Result<DurableStore> {
    let mut store = ctx.durable_store()?;
    store.transaction(|tx| tx.execute(SCHEMA, []).map(drop))?;
    Ok(store)
}

fn insert(store: &mut DurableStore, id: &str, incarnation: u32) -> rusqlite::Result<()> {
    store.transaction(|tx| {
        tx.execute(
            "INSERT INTO rows (id, incarnation) VALUES (?1, ?2)",
            (id, incarnation),
        )
        .map(drop)
    })
}

fn ids(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT id FROM rows ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

fn stored_ids(outcome: &Outcome) -> Vec<String> {
    outcome.read_store(ids).expect("readable store")
}

fn count(outcome: &Outcome, f: impl Fn(&HistoryEvent) -> bool) -> usize {
    outcome.history().events().filter(|e| f(e)).count()
}

fn committed(e: &HistoryEvent) -> bool {
    matches!(e, HistoryEvent::StoreCommitted { .. })
}

/// What a commit that inserted row `id` wrote to the watched store effect `rows`.
fn wrote(id: &str) -> Vec<StoreRows> {
    vec![StoreRows {
        effect: "rows".into(),
        added: vec![id.into()],
        removed: Vec::new(),
    }]
}

fn is_io_error(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::SystemIoFailure)
}

/// One instance: incarnation 1 opens the store and inserts `a` (its second store commit), then
/// performs an effect; later incarnations note what they find and insert `b`. The rows are
/// watched as the store effect `rows`.
fn insert_then_restart(faults: FaultSchedule, notes: Notes) -> Outcome {
    let mut b = Simulation::builder();
    b.faults(faults).store_effect("rows", "SELECT id FROM rows");
    let outcome = b
        .build()
        .unwrap()
        .run(move |ctx| {
            let notes = notes.clone();
            async move {
                let n = ctx.incarnation().number;
                let mut store = open(&ctx)?;
                if n == 1 {
                    let result = insert(&mut store, "a", n);
                    notes.push(format!(
                        "#1 insert: {}",
                        match &result {
                            Ok(()) => "ok".to_string(),
                            Err(e) if is_io_error(e) => "io error".to_string(),
                            Err(e) => format!("other error {e}"),
                        }
                    ));
                    notes.push(format!("#1 sees {:?}", store.read(ids)?));
                    // A crash fault on this effect ends incarnation 1 where a test wants it.
                    ctx.effect_sink("e").perform("done-1").await?;
                    return Err::<(), BoxError>("incarnation 1 finished".into());
                }
                notes.push(format!("#{n} sees {:?}", store.read(ids)?));
                insert(&mut store, "b", n)?;
                Ok(())
            }
        })
        .unwrap();
    show(&outcome);
    outcome
}

fn crash_on_the_effect() -> FaultSchedule {
    FaultSchedule::new().with(Anchor::on(Operation::Effect), Fault::CrashBefore)
}

#[test]
fn data_committed_by_one_incarnation_survives_its_crash_and_is_visible_to_the_next_and_to_the_outcome()
 {
    let notes = Notes::default();
    let outcome = insert_then_restart(crash_on_the_effect(), notes.clone());
    assert!(outcome.unfired_faults().is_empty());
    assert_eq!(
        notes.all(),
        vec!["#1 insert: ok", r#"#1 sees ["a"]"#, r#"#2 sees ["a"]"#]
    );
    assert_eq!(
        count(&outcome, |e| matches!(
            e,
            HistoryEvent::InstanceCrashed { .. }
        )),
        1
    );
    assert_eq!(stored_ids(&outcome), ["a", "b"]);
    let incarnations: Vec<(String, u32)> = outcome
        .read_store(|c| {
            c.prepare("SELECT id, incarnation FROM rows ORDER BY id")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .unwrap();
    assert_eq!(incarnations, vec![("a".into(), 1), ("b".into(), 2)]);
    // Schema + insert by #1, schema + insert by #2; the inserts name their rows.
    assert_eq!(count(&outcome, committed), 4);
    let wrote: Vec<String> = outcome
        .history()
        .events()
        .filter(|e| committed(e))
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        wrote,
        [
            "store transaction committed",
            "store transaction committed: rows +a",
            "store transaction committed",
            "store transaction committed: rows +b",
        ]
    );
}

#[test]
fn a_failed_store_commit_rolls_back_and_returns_an_error() {
    let notes = Notes::default();
    let faults = crash_on_the_effect().with(
        Anchor::on(Operation::StoreCommit).occurrence(2),
        Fault::Fail,
    );
    let outcome = insert_then_restart(faults, notes.clone());
    assert!(outcome.unfired_faults().is_empty());
    assert_eq!(
        notes.all(),
        vec!["#1 insert: io error", "#1 sees []", "#2 sees []"]
    );
    assert_eq!(stored_ids(&outcome), ["b"]);
    assert_eq!(
        count(&outcome, |e| *e
            == HistoryEvent::StoreCommitFailed {
                committed: false,
                wrote: Vec::new()
            }),
        1
    );
    assert_eq!(
        count(&outcome, |e| matches!(
            e,
            HistoryEvent::StoreCommitFailed {
                committed: true,
                ..
            }
        )),
        0
    );
}

#[test]
fn an_ambiguous_store_commit_is_applied_but_returns_an_error() {
    let notes = Notes::default();
    let faults = crash_on_the_effect().with(
        Anchor::on(Operation::StoreCommit).occurrence(2),
        Fault::Ambiguous,
    );
    let outcome = insert_then_restart(faults, notes.clone());
    assert!(outcome.unfired_faults().is_empty());
    assert_eq!(
        notes.all(),
        vec![
            "#1 insert: io error",
            r#"#1 sees ["a"]"#,
            r#"#2 sees ["a"]"#
        ]
    );
    assert_eq!(stored_ids(&outcome), ["a", "b"]);
    assert_eq!(
        count(&outcome, |e| *e
            == HistoryEvent::StoreCommitFailed {
                committed: true,
                wrote: wrote("a")
            }),
        1
    );
}

#[test]
fn a_crash_before_the_store_commit_loses_the_transaction() {
    let notes = Notes::default();
    let faults = FaultSchedule::new().with(
        Anchor::on(Operation::StoreCommit).occurrence(2),
        Fault::CrashBefore,
    );
    let outcome = insert_then_restart(faults, notes.clone());
    assert!(outcome.unfired_faults().is_empty());
    // Incarnation 1 never got an answer from its commit: it died inside it.
    assert_eq!(notes.all(), vec!["#2 sees []"]);
    assert_eq!(stored_ids(&outcome), ["b"]);
    let entries = outcome.history().entries();
    let crash = entries
        .iter()
        .position(|e| matches!(e.event, HistoryEvent::InstanceCrashed { .. }))
        .expect("crashed");
    assert_eq!(
        entries[crash].incarnation,
        Some(Incarnation {
            instance: InstanceId(0),
            number: 1
        })
    );
    // Incarnation 1 committed only its schema transaction.
    assert_eq!(
        entries[..crash]
            .iter()
            .filter(|e| committed(&e.event))
            .count(),
        1
    );
}

#[test]
fn a_crash_after_the_store_commit_keeps_the_transaction() {
    let notes = Notes::default();
    let faults = FaultSchedule::new().with(
        Anchor::on(Operation::StoreCommit).occurrence(2),
        Fault::CrashAfter,
    );
    let outcome = insert_then_restart(faults, notes.clone());
    assert!(outcome.unfired_faults().is_empty());
    assert_eq!(notes.all(), vec![r#"#2 sees ["a"]"#]);
    assert_eq!(stored_ids(&outcome), ["a", "b"]);
    let entries = outcome.history().entries();
    let crash = entries
        .iter()
        .position(|e| matches!(e.event, HistoryEvent::InstanceCrashed { .. }))
        .expect("crashed");
    assert_eq!(
        entries[crash - 1].event,
        HistoryEvent::StoreCommitted { wrote: wrote("a") }
    );
}

#[test]
fn an_error_inside_the_transaction_rolls_it_back() {
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        Simulation::builder()
            .build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let mut store = open(&ctx)?;
                    let result: rusqlite::Result<()> = store.transaction(|tx| {
                        tx.execute("INSERT INTO rows (id) VALUES ('a')", [])?;
                        tx.execute("INSERT INTO rows (id) VALUES ('a')", [])?; // duplicate key
                        Ok(())
                    });
                    notes.push(format!("{}", result.is_err()));
                    notes.push(format!("{:?}", store.read(ids)?));
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    assert_eq!(notes.all(), vec!["true", "[]"]);
    assert!(stored_ids(&outcome).is_empty());
    assert_eq!(count(&outcome, committed), 1, "only the schema committed");
}

#[test]
fn durable_store_read_refuses_writes() {
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        Simulation::builder()
            .build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let mut store = open(&ctx)?;
                    insert(&mut store, "a", 1)?;
                    for sql in [
                        "INSERT INTO rows (id) VALUES ('sneaky')",
                        "UPDATE rows SET incarnation = 9",
                        "DELETE FROM rows",
                        "CREATE TABLE other (x)",
                    ] {
                        let result = store.read(|c| c.execute(sql, []));
                        notes.push(match result {
                            Err(rusqlite::Error::SqliteFailure(f, _)) => format!("{:?}", f.code),
                            Err(e) => format!("other error {e}"),
                            Ok(n) => format!("wrote {n}"),
                        });
                    }
                    notes.push(format!("{:?}", store.read(ids)?));
                    // Writes through a transaction still work afterwards.
                    insert(&mut store, "b", 1)?;
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    assert_eq!(
        notes.all(),
        vec!["ReadOnly", "ReadOnly", "ReadOnly", "ReadOnly", r#"["a"]"#]
    );
    assert_eq!(stored_ids(&outcome), ["a", "b"]);
    let incarnations: Vec<Option<i64>> = outcome
        .read_store(|c| {
            c.prepare("SELECT incarnation FROM rows ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
        .unwrap();
    assert_eq!(
        incarnations,
        vec![Some(1), Some(1)],
        "no update went through"
    );
}

#[test]
fn a_spawned_task_of_a_crashed_incarnation_cannot_write_to_the_store() {
    let notes = Notes::default();
    let outcome = {
        let notes = notes.clone();
        let mut b = Simulation::builder();
        b.faults(crash_on_the_effect());
        b.build()
            .unwrap()
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let n = ctx.incarnation().number;
                    let mut store = open(&ctx)?;
                    if n == 1 {
                        let mut late = ctx.durable_store()?;
                        let notes = notes.clone();
                        tokio::task::spawn_local(async move {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            notes.push("late write attempted");
                            let _ = insert(&mut late, "late", 1);
                            notes.push("late write returned");
                        });
                        ctx.effect_sink("e").perform("crash here").await?;
                    }
                    insert(&mut store, &format!("from-{n}"), n)?;
                    // Stay alive past the late write.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap()
    };
    show(&outcome);
    assert!(outcome.unfired_faults().is_empty());
    assert_eq!(notes.all(), vec!["late write attempted"]);
    assert_eq!(stored_ids(&outcome), ["from-2"]);
}

#[test]
fn every_instance_shares_the_scenarios_store_and_each_run_starts_empty() {
    let notes = Notes::default();
    let mut b = Simulation::builder();
    b.instances(3);
    let sim = b.build().unwrap();
    for run in 0..2 {
        let notes = notes.clone();
        let outcome = sim
            .run(move |ctx| {
                let notes = notes.clone();
                async move {
                    let i = ctx.instance().0;
                    // Instances take turns: 1 s apart.
                    tokio::time::sleep(Duration::from_secs(u64::from(i))).await;
                    let mut store = open(&ctx)?;
                    notes.push(format!("run {run} i{i} sees {:?}", store.read(ids)?));
                    insert(&mut store, &format!("i{i}"), 1)?;
                    Ok::<(), BoxError>(())
                }
            })
            .unwrap();
        assert_eq!(stored_ids(&outcome), ["i0", "i1", "i2"]);
    }
    assert_eq!(
        notes.all(),
        vec![
            "run 0 i0 sees []",
            r#"run 0 i1 sees ["i0"]"#,
            r#"run 0 i2 sees ["i0", "i1"]"#,
            "run 1 i0 sees []",
            r#"run 1 i1 sees ["i0"]"#,
            r#"run 1 i2 sees ["i0", "i1"]"#,
        ]
    );
}
