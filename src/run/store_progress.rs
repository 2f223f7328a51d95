//! Progress a consumer keeps in its own database instead of Kafka's committed offsets (the
//! offsets written in the same transaction as the result): read from the scenario's durable
//! store with the query [`SimulationBuilder::progress_from_store`](crate::SimulationBuilder::progress_from_store)
//! names, for quiescence and the lag a run ends with.

use std::collections::BTreeMap;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::store::open_scenario_db;
use crate::error::Error;
use crate::history::TopicPartition;

/// What a lag read from the durable store names instead of a group.
pub(crate) const STORE_PROGRESS: &str = crate::history::Lag::DATABASE;

/// The next offset to consume, per partition, as the consumer's database says.
pub(crate) type Progress = BTreeMap<TopicPartition, i64>;

/// The query, and a connection to the scenario's database opened on the first read.
pub(crate) struct StoreProgress {
    query: String,
    conn: Option<Connection>,
}

impl StoreProgress {
    pub(crate) fn new(query: String) -> Self {
        StoreProgress { query, conn: None }
    }

    /// Reads the progress off the database at `uri`.
    pub(crate) fn read(&mut self, uri: &str) -> Result<Progress, Error> {
        let failed = |why: String| Error::StoreProgress {
            query: self.query.clone(),
            why,
        };
        if self.conn.is_none() {
            self.conn = Some(open_scenario_db(uri).map_err(|e| failed(e.to_string()))?);
        }
        let conn = self.conn.as_ref().expect("opened above");
        read(conn, &self.query).map_err(failed)
    }
}

/// Runs `query`: `(topic, partition, next_offset)` rows; a partition listed twice counts
/// with its highest offset.
fn read(conn: &Connection, query: &str) -> Result<Progress, String> {
    let mut statement = conn.prepare(query).map_err(|e| e.to_string())?;
    let columns = statement.column_count();
    if columns != 3 {
        return Err(format!(
            "it returns {columns} columns; expected `topic, partition, next_offset`"
        ));
    }
    let mut rows = statement.query([]).map_err(|e| e.to_string())?;
    let mut progress = Progress::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let value = |i| row.get_ref(i).map_err(|e| e.to_string());
        let topic = match value(0)? {
            ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
            other => return Err(format!("a topic of type {}", other.data_type())),
        };
        let (ValueRef::Integer(partition), ValueRef::Integer(offset)) = (value(1)?, value(2)?)
        else {
            return Err(format!(
                "a row for topic {topic:?} whose partition and next offset are not integers"
            ));
        };
        let tp = TopicPartition::new(topic, partition as i32);
        let next = progress.entry(tp).or_insert(offset);
        *next = (*next).max(offset);
    }
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_progress_and_bad_shapes_say_what_is_expected() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE offsets (topic TEXT, part INTEGER, next INTEGER);
             INSERT INTO offsets VALUES ('t', 0, 3), ('t', 1, 5), ('t', 0, 2);",
        )
        .unwrap();
        let progress = read(&conn, "SELECT topic, part, next FROM offsets").unwrap();
        assert_eq!(progress[&TopicPartition::new("t", 0)], 3);
        assert_eq!(progress[&TopicPartition::new("t", 1)], 5);
        let two = read(&conn, "SELECT topic, next FROM offsets").unwrap_err();
        assert!(two.contains("2 columns"), "{two}");
        let text = read(&conn, "SELECT topic, 'x', next FROM offsets").unwrap_err();
        assert!(text.contains("not integers"), "{text}");
        let missing = read(&conn, "SELECT * FROM nope").unwrap_err();
        assert!(missing.contains("no such table"), "{missing}");
    }
}
