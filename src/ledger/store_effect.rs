//! Effects that live in the consumer's durable store, read off the state a run left behind.

use std::collections::BTreeMap;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

/// An effect the consumer applies to its [`DurableStore`](crate::DurableStore) (a row inserted,
/// a state changed) rather than through an [`EffectSink`](crate::EffectSink). No call is there
/// to record, so the kit reads the store as the run left it: the effect counts as many times
/// as it is present in the final state.
///
/// The query returns either one row per effect, the event id in its only column, or
/// `(event_id, count)` rows with an integer count. Rows for the same event id add up.
///
/// ```
/// use effectively_once::ledger::StoreEffect;
///
/// // An inbox row per notification.
/// let inbox = StoreEffect::new("inbox", "SELECT event_id FROM inbox");
/// // A counter of state transitions per task.
/// let completions = StoreEffect::new("completion", "SELECT event_id, completions FROM tasks");
/// # let _ = (inbox, completions);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreEffect {
    name: String,
    query: String,
}

/// Why a [`StoreEffect`] could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreEffectError {
    /// SQLite refused the query (a syntax error, a missing table).
    #[error("the query failed: {0}")]
    Query(#[from] rusqlite::Error),
    /// The query's rows have the wrong shape.
    #[error("the query returns {0}; expected `event_id` or `event_id, count` columns")]
    Shape(String),
}

impl StoreEffect {
    /// The effect `name` (as reports call it), observed by `query`.
    pub fn new(name: impl Into<String>, query: impl Into<String>) -> Self {
        StoreEffect {
            name: name.into(),
            query: query.into(),
        }
    }

    /// The effect's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The query that observes it.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// How many times each event's effect is present in the database `conn` holds.
    pub fn observe(&self, conn: &Connection) -> Result<BTreeMap<String, usize>, StoreEffectError> {
        let mut statement = conn.prepare(&self.query)?;
        let columns = statement.column_count();
        if !(1..=2).contains(&columns) {
            return Err(StoreEffectError::Shape(format!("{columns} columns")));
        }
        let mut counts = BTreeMap::new();
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let event_id = match row.get_ref(0)? {
                ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
                ValueRef::Integer(n) => n.to_string(),
                other => {
                    return Err(StoreEffectError::Shape(format!(
                        "an event id of type {}",
                        other.data_type()
                    )));
                }
            };
            let count = if columns == 2 {
                match row.get_ref(1)? {
                    ValueRef::Integer(n) if n >= 0 => n as usize,
                    ValueRef::Null => 0,
                    other => {
                        return Err(StoreEffectError::Shape(format!(
                            "a count of {other:?} for {event_id:?}"
                        )));
                    }
                }
            } else {
                1
            };
            *counts.entry(event_id).or_insert(0) += count;
        }
        counts.retain(|_, n| *n > 0);
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE inbox (event_id TEXT);
             INSERT INTO inbox VALUES ('a'), ('b'), ('a');
             CREATE TABLE tasks (event_id TEXT, completions INTEGER);
             INSERT INTO tasks VALUES ('a', 1), ('b', 0), ('c', 2);",
        )
        .unwrap();
        conn
    }

    #[test]
    fn rows_count_once_each_and_counts_add_up() {
        let conn = db();
        let rows = StoreEffect::new("inbox", "SELECT event_id FROM inbox");
        assert_eq!(
            rows.observe(&conn).unwrap(),
            BTreeMap::from([("a".into(), 2), ("b".into(), 1)])
        );
        let counted = StoreEffect::new("done", "SELECT event_id, completions FROM tasks");
        assert_eq!(
            counted.observe(&conn).unwrap(),
            BTreeMap::from([("a".into(), 1), ("c".into(), 2)])
        );
    }

    #[test]
    fn bad_queries_and_shapes_are_errors_that_say_what_is_wrong() {
        let conn = db();
        let missing = StoreEffect::new("x", "SELECT event_id FROM nowhere");
        assert!(
            missing
                .observe(&conn)
                .unwrap_err()
                .to_string()
                .contains("no such table: nowhere")
        );
        let wide = StoreEffect::new("x", "SELECT event_id, 1, 2 FROM inbox");
        assert_eq!(
            wide.observe(&conn).unwrap_err().to_string(),
            "the query returns 3 columns; expected `event_id` or `event_id, count` columns"
        );
        let negative = StoreEffect::new("x", "SELECT event_id, -1 FROM inbox");
        assert!(matches!(
            negative.observe(&conn),
            Err(StoreEffectError::Shape(_))
        ));
    }
}
