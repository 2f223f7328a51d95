//! Durable consumer state: a SQLite database that survives the instance's crashes.
//!
//! In a simulation each scenario gets one in-memory database that every instance opens with
//! [`InstanceContext::durable_store`](crate::InstanceContext::durable_store). A crash closes the
//! instance's connection (an open transaction rolls back, as when a process dies); committed
//! data stays for the restarted instance. Transaction commits are interception points
//! ([`Operation::StoreCommit`](crate::Operation::StoreCommit)): a commit can fail, be applied but
//! reported failed, or the instance can crash right before or after it.
//!
//! In production wrap your own connection with [`DurableStore::new`]: nothing is intercepted.
//!
//! The first scenario database a test process opens turns SQLite's memory statistics off
//! (`SQLITE_CONFIG_MEMSTATUS`, when SQLite is not initialized yet): with them on, every SQLite
//! allocation takes one process-wide mutex, which parallel cases queue on.

use rusqlite::{Connection, OpenFlags, Transaction, ffi};

use crate::history::HistoryEvent;
use crate::history::Operation;
use crate::run::core::{Interception, unwind_crash};

/// A SQLite connection whose write transactions go through [`transaction`](Self::transaction).
pub struct DurableStore {
    conn: Connection,
    intercept: Option<Interception>,
}

impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field(
                "intercepted",
                &self.intercept.as_ref().map(|i| i.incarnation),
            )
            .finish_non_exhaustive()
    }
}

/// The error an injected commit failure returns: what a failing disk looks like to rusqlite.
fn injected_failure(committed: bool) -> rusqlite::Error {
    let message = if committed {
        "effectively-once: injected failure after the commit was applied"
    } else {
        "effectively-once: injected commit failure (rolled back)"
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_IOERR), Some(message.into()))
}

/// Turns SQLite's memory statistics off for the process, if SQLite is not initialized yet.
/// With them on (SQLite's default), every allocation SQLite makes takes one process-wide mutex,
/// and cases judged on parallel threads queued on it (a SQLite consumer's case spent a fifth of
/// its time waiting there on two threads). What it costs: `sqlite3_memory_used` and
/// `sqlite3_memory_highwater` report 0 in the test process. SQLite refuses the setting, and
/// nothing changes, when something in the process opened a connection first.
fn no_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int. SQLite checks that it is not
        // initialized before it writes the setting (an int read only to keep the statistics).
        let _refused_when_initialized =
            unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int) };
    });
}

/// Opens a connection to a scenario database (an in-memory `memdb` shared in the process).
pub(crate) fn open_scenario_db(uri: &str) -> rusqlite::Result<Connection> {
    no_memory_statistics();
    let conn = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // One thread runs the whole simulation: waiting for a lock could never succeed.
    conn.busy_timeout(std::time::Duration::ZERO)?;
    Ok(conn)
}

impl DurableStore {
    /// Wraps a connection without interception (production use).
    pub fn new(conn: Connection) -> Self {
        DurableStore {
            conn,
            intercept: None,
        }
    }

    pub(crate) fn intercepted(conn: Connection, interception: Interception) -> Self {
        DurableStore {
            conn,
            intercept: Some(interception),
        }
    }

    /// Runs `f` in a transaction and commits it. An error from `f` rolls the transaction back.
    ///
    /// In a simulation the commit is an interception point: a `Fail` fault rolls back and
    /// returns an I/O error, `Ambiguous` commits and returns the same error, `CrashBefore` /
    /// `CrashAfter` crash the instance around the commit.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        if self.intercept.as_ref().is_some_and(|i| !i.alive()) {
            unwind_crash();
        }
        let tx = self.conn.transaction()?;
        let value = f(&tx)?;
        let Some(interception) = self.intercept.clone() else {
            tx.commit()?;
            return Ok(value);
        };
        let incarnation = interception.incarnation;
        let commit = Operation::StoreCommit;
        let injection = {
            let mut run = interception.run.lock();
            let anchor = run.current_record(incarnation);
            run.intercept_call(commit, incarnation, anchor.as_ref(), &commit)
        };
        interception.react_and_publish();
        let Ok(injection) = injection else {
            drop(tx); // rolls back, as the dying process's connection would
            unwind_crash();
        };
        let record = |event: HistoryEvent| {
            interception.run.record(Some(incarnation), event);
            interception.run.publish();
        };
        if injection.fail {
            tx.rollback()?;
            record(HistoryEvent::StoreCommitFailed {
                committed: false,
                wrote: Vec::new(),
            });
            return Err(injected_failure(false));
        }
        tx.commit()?;
        let wrote = interception.run.lock().store_effects.changes(&self.conn);
        if injection.ambiguous {
            record(HistoryEvent::StoreCommitFailed {
                committed: true,
                wrote,
            });
        } else {
            record(HistoryEvent::StoreCommitted { wrote });
        }
        let completed = interception
            .run
            .lock()
            .complete_call(&injection, incarnation, &commit);
        if completed.is_err() {
            interception.react_and_publish();
            unwind_crash();
        }
        if injection.ambiguous {
            return Err(injected_failure(true));
        }
        Ok(value)
    }

    /// Runs read-only queries. Writes inside `f` fail (`PRAGMA query_only`): every write goes
    /// through [`transaction`](Self::transaction), where commits are intercepted.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        if self.intercept.as_ref().is_some_and(|i| !i.alive()) {
            unwind_crash();
        }
        // Cached statements: a consumer reads on every record, and parsing the pragma each time
        // cost more than the read.
        self.conn
            .prepare_cached("PRAGMA query_only = 1")?
            .execute([])?;
        let result = f(&self.conn);
        self.conn
            .prepare_cached("PRAGMA query_only = 0")?
            .execute([])?;
        result
    }
}
