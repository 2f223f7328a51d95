//! The ledger as a SQLite file in WAL mode, which consumer processes append to concurrently.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{EffectRecord, Ledger};
use crate::history::{EffectOutcome, Incarnation, InstanceId};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS effects (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    at_micros       INTEGER NOT NULL,
    instance        INTEGER NOT NULL,
    incarnation     INTEGER NOT NULL,
    generation      INTEGER,
    sink            TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    idempotency_key TEXT,
    outcome         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS effects_by_key ON effects (sink, idempotency_key);
";

fn outcome_name(outcome: EffectOutcome) -> &'static str {
    match outcome {
        EffectOutcome::Performed => "performed",
        EffectOutcome::Failed => "failed",
        EffectOutcome::PerformedReportedFailed => "performed-reported-failed",
        EffectOutcome::Deduplicated => "deduplicated",
    }
}

fn outcome_from(name: &str) -> Option<EffectOutcome> {
    Some(match name {
        "performed" => EffectOutcome::Performed,
        "failed" => EffectOutcome::Failed,
        "performed-reported-failed" => EffectOutcome::PerformedReportedFailed,
        "deduplicated" => EffectOutcome::Deduplicated,
        _ => return None,
    })
}

/// A ledger file several processes append to at once (SQLite in WAL mode; each writer waits up
/// to 10 s for the write lock). An idempotency key seen before makes the attempt
/// [`EffectOutcome::Deduplicated`], across processes.
#[derive(Debug)]
pub struct SqliteLedger {
    path: PathBuf,
    conn: Connection,
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger file at `path`.
    pub fn open(path: impl AsRef<Path>) -> rusqlite::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteLedger { path, conn })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one attempt and returns the outcome recorded. An attempt that would take effect
    /// with an idempotency key that already took effect on the same sink is recorded, and
    /// returned, as [`EffectOutcome::Deduplicated`], atomically across processes.
    pub fn record(&self, attempt: &EffectRecord) -> rusqlite::Result<EffectOutcome> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let mut outcome = attempt.outcome;
        if let (Some(key), true) = (&attempt.idempotency_key, outcome.took_effect()) {
            let seen: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM effects WHERE sink = ?1 AND idempotency_key = ?2 \
                     AND outcome IN ('performed', 'performed-reported-failed') LIMIT 1",
                    params![attempt.sink, key],
                    |row| row.get(0),
                )
                .optional()?;
            if seen.is_some() {
                outcome = EffectOutcome::Deduplicated;
            }
        }
        tx.execute(
            "INSERT INTO effects (at_micros, instance, incarnation, generation, sink, event_id, \
             idempotency_key, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                i64::try_from(attempt.at.as_micros()).unwrap_or(i64::MAX),
                attempt.incarnation.instance.0,
                attempt.incarnation.number,
                attempt.generation,
                attempt.sink,
                attempt.event_id,
                attempt.idempotency_key,
                outcome_name(outcome),
            ],
        )?;
        tx.commit()?;
        Ok(outcome)
    }

    /// Every attempt recorded so far, in the order they were appended.
    pub fn read(&self) -> rusqlite::Result<Ledger> {
        let mut stmt = self.conn.prepare(
            "SELECT at_micros, instance, incarnation, generation, sink, event_id, \
             idempotency_key, outcome FROM effects ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |row| {
            let outcome: String = row.get(7)?;
            Ok(EffectRecord {
                at: Duration::from_micros(row.get::<_, i64>(0)?.max(0) as u64),
                incarnation: Incarnation {
                    instance: InstanceId(row.get(1)?),
                    number: row.get(2)?,
                },
                generation: row.get(3)?,
                sink: row.get(4)?,
                event_id: row.get(5)?,
                idempotency_key: row.get(6)?,
                outcome: outcome_from(&outcome).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        7,
                        rusqlite::types::Type::Text,
                        format!("unknown effect outcome {outcome:?}").into(),
                    )
                })?,
            })
        })?;
        Ok(Ledger::new(rows.collect::<rusqlite::Result<_>>()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(instance: u32, event: &str, key: Option<&str>) -> EffectRecord {
        EffectRecord {
            at: Duration::from_millis(1),
            incarnation: Incarnation {
                instance: InstanceId(instance),
                number: 1,
            },
            generation: None,
            sink: "payment".into(),
            event_id: event.into(),
            idempotency_key: key.map(str::to_string),
            outcome: EffectOutcome::Performed,
        }
    }

    #[test]
    fn concurrent_writers_in_separate_connections_lose_nothing_and_share_idempotency_keys() {
        let dir = std::env::temp_dir().join(format!(
            "effectively-once-ledger-test-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.db");
        let _ = std::fs::remove_file(&path);
        SqliteLedger::open(&path).unwrap();
        let writers: Vec<_> = (0..4u32)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let ledger = SqliteLedger::open(&path).unwrap();
                    for n in 0..50 {
                        // Every writer charges the same 10 keys, plus its own unkeyed effects.
                        ledger
                            .record(&attempt(
                                w,
                                &format!("k{}", n % 10),
                                Some(&format!("k{}", n % 10)),
                            ))
                            .unwrap();
                        ledger
                            .record(&attempt(w, &format!("w{w}-{n}"), None))
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        let ledger = SqliteLedger::open(&path).unwrap().read().unwrap();
        assert_eq!(ledger.records().len(), 4 * 50 * 2);
        let effective = ledger.effective_counts("payment");
        for n in 0..10 {
            assert_eq!(effective[&format!("k{n}")], 1, "key k{n} took effect once");
        }
        assert_eq!(effective.len(), 10 + 4 * 50);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
