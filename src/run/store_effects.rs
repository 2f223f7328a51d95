//! The store effects a run watches ([`SimulationBuilder::store_effect`](crate::SimulationBuilder::store_effect)):
//! after each durable-store transaction commits, their queries are read again and the history
//! names the event ids whose rows the transaction added or removed.
//!
//! The queries have the shape the verifier's store effects have (`event_id` rows, or
//! `event_id, count` rows). Here a query that fails, or returns rows of another shape, shows
//! nothing: the table may not exist yet, and the verdict reads the final store on its own.

use std::collections::BTreeMap;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use crate::history::StoreRows;

/// How many rows each event id has.
type Counts = BTreeMap<String, usize>;

/// The watched store effects and what their queries returned at the last commit.
#[derive(Debug, Default)]
pub(crate) struct StoreEffects {
    /// Each effect's name and query.
    queries: Vec<(String, String)>,
    /// Each effect's counts at the last commit whose query succeeded.
    last: Vec<Counts>,
}

impl StoreEffects {
    pub(crate) fn new(queries: Vec<(String, String)>) -> Self {
        let last = vec![Counts::new(); queries.len()];
        StoreEffects { queries, last }
    }

    /// Reads every query on `conn` (just after a commit) and returns what changed since the
    /// last commit, effect by effect; nothing at all when no effect is watched.
    pub(crate) fn changes(&mut self, conn: &Connection) -> Vec<StoreRows> {
        let mut wrote = Vec::new();
        for ((name, query), last) in self.queries.iter().zip(&mut self.last) {
            let Some(now) = counts(conn, query) else {
                continue;
            };
            if let Some(rows) = difference(name, last, &now) {
                wrote.push(rows);
            }
            *last = now;
        }
        wrote
    }
}

/// What `query` returns, counted per event id; `None` when it fails or has another shape.
fn counts(conn: &Connection, query: &str) -> Option<Counts> {
    let mut statement = conn.prepare(query).ok()?;
    let columns = statement.column_count();
    if !(1..=2).contains(&columns) {
        return None;
    }
    let mut rows = statement.query([]).ok()?;
    let mut counts = Counts::new();
    while let Some(row) = rows.next().ok()? {
        let event_id = match row.get_ref(0).ok()? {
            ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
            ValueRef::Integer(n) => n.to_string(),
            _ => return None,
        };
        let count = match (columns, row.get_ref(columns - 1).ok()?) {
            (1, _) => 1,
            (_, ValueRef::Integer(n)) if n >= 0 => n as usize,
            (_, ValueRef::Null) => 0,
            _ => return None,
        };
        *counts.entry(event_id).or_insert(0) += count;
    }
    Some(counts)
}

/// The event ids whose count differs between `before` and `after`, each repeated once per
/// row; `None` when nothing changed.
fn difference(effect: &str, before: &Counts, after: &Counts) -> Option<StoreRows> {
    let mut rows = StoreRows {
        effect: effect.to_string(),
        added: Vec::new(),
        removed: Vec::new(),
    };
    let ids = before
        .keys()
        .chain(after.keys().filter(|id| !before.contains_key(*id)));
    let mut ids: Vec<&String> = ids.collect();
    ids.sort();
    for id in ids {
        let (was, is) = (before.get(id).copied(), after.get(id).copied());
        let (was, is) = (was.unwrap_or(0), is.unwrap_or(0));
        let list = if is > was {
            &mut rows.added
        } else {
            &mut rows.removed
        };
        list.extend(std::iter::repeat_n(id.clone(), was.abs_diff(is)));
    }
    (!rows.added.is_empty() || !rows.removed.is_empty()).then_some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(queries: &[(&str, &str)]) -> StoreEffects {
        StoreEffects::new(
            queries
                .iter()
                .map(|(n, q)| (n.to_string(), q.to_string()))
                .collect(),
        )
    }

    fn shown(wrote: &[StoreRows]) -> Vec<String> {
        wrote.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn each_commit_names_the_rows_added_and_removed_since_the_last() {
        let conn = Connection::open_in_memory().unwrap();
        let mut effects = watched(&[
            ("inbox", "SELECT event_id FROM inbox"),
            ("done", "SELECT event_id, n FROM tasks"),
        ]);
        // Neither table exists yet: nothing is shown, nothing fails.
        assert!(effects.changes(&conn).is_empty());
        conn.execute_batch(
            "CREATE TABLE inbox (event_id TEXT);
             CREATE TABLE tasks (event_id TEXT, n INTEGER);
             INSERT INTO inbox VALUES ('evt-1'), ('evt-3'), ('evt-3');
             INSERT INTO tasks VALUES ('evt-1', 1);",
        )
        .unwrap();
        assert_eq!(
            shown(&effects.changes(&conn)),
            ["inbox +evt-1 +evt-3 +evt-3", "done +evt-1"]
        );
        // Nothing changed: nothing shown.
        assert!(effects.changes(&conn).is_empty());
        conn.execute_batch(
            "DELETE FROM inbox WHERE event_id = 'evt-1';
             INSERT INTO inbox VALUES ('evt-2');
             UPDATE tasks SET n = 0;",
        )
        .unwrap();
        assert_eq!(
            shown(&effects.changes(&conn)),
            ["inbox +evt-2 -evt-1", "done -evt-1"]
        );
    }

    #[test]
    fn a_query_of_another_shape_shows_nothing_and_keeps_its_last_counts() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (a TEXT, b TEXT, c TEXT); INSERT INTO t VALUES ('x', 'y', 'z');",
        )
        .unwrap();
        let mut effects = watched(&[
            ("three", "SELECT a, b, c FROM t"),
            ("text count", "SELECT a, b FROM t"),
        ]);
        assert!(effects.changes(&conn).is_empty());
        assert!(watched(&[]).changes(&conn).is_empty());
    }
}
