//! The input as it was published: where each event's copies landed in the log.

use super::position::RecordPosition;

/// How every poison record's payload starts: not UTF-8, not JSON, not anything a consumer can
/// parse. The rest of the payload names the event (` (evt-3)`), so that a copy a consumer
/// forwards verbatim (to a dead-letter or an output topic) is attributed to the poison record
/// it came from ([`poison_event_id`]) instead of counting as a phantom effect.
pub const POISON_PAYLOAD: &[u8] = b"\xff\xfe poison record: not an event";

/// The payload of the poison record published for `event_id`: [`POISON_PAYLOAD`] and the
/// event's id.
pub fn poison_payload(event_id: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(POISON_PAYLOAD.len() + event_id.len() + 3);
    payload.extend_from_slice(POISON_PAYLOAD);
    payload.extend_from_slice(b" (");
    payload.extend_from_slice(event_id.as_bytes());
    payload.push(b')');
    payload
}

/// The event a poison record's payload (or a verbatim copy of it) was published for, if
/// `payload` is one ([`poison_payload`]).
///
/// ```
/// use effectively_once::history::{poison_event_id, poison_payload};
///
/// assert_eq!(poison_event_id(&poison_payload("evt-3")), Some("evt-3"));
/// assert_eq!(poison_event_id(b"{\"event_id\":\"evt-3\"}"), None);
/// ```
pub fn poison_event_id(payload: &[u8]) -> Option<&str> {
    let named = payload.strip_prefix(POISON_PAYLOAD)?;
    let id = named.strip_prefix(b" (")?.strip_suffix(b")")?;
    std::str::from_utf8(id).ok()
}

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
