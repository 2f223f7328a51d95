//! The input as it was published: where each event's copies landed in the log.

use super::position::RecordPosition;

/// An event as it was published: where its copies landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedEvent {
    /// The event id.
    pub event_id: String,
    /// The record key.
    pub key: String,
    /// The committed copies' positions, in order (two for an event produced twice).
    pub positions: Vec<RecordPosition>,
    /// Where the copy of an aborted upstream transaction landed, if there is one.
    pub aborted: Option<RecordPosition>,
    /// Whether the record is a poison record.
    pub poison: bool,
}
