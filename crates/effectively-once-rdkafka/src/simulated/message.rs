//! `BorrowedMessage`: a message handed out by a simulated consumer.

use std::marker::PhantomData;

use rdkafka::message::{Message, OwnedHeaders, OwnedMessage, Timestamp};

/// A message received from a simulated consumer, in place of rdkafka's
/// `BorrowedMessage<'a>`: it implements [`Message`] and borrows the consumer for `'a`, like
/// rdkafka's; [`detach`](Self::detach) makes an [`OwnedMessage`] of it.
pub struct BorrowedMessage<'a> {
    payload: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    topic: String,
    timestamp: Timestamp,
    partition: i32,
    offset: i64,
    headers: Option<OwnedHeaders>,
    _consumer: PhantomData<&'a ()>,
}

impl BorrowedMessage<'_> {
    pub(crate) fn new(message: OwnedMessage) -> Self {
        BorrowedMessage {
            payload: message.payload().map(<[u8]>::to_vec),
            key: message.key().map(<[u8]>::to_vec),
            topic: message.topic().to_string(),
            timestamp: message.timestamp(),
            partition: message.partition(),
            offset: message.offset(),
            headers: message.headers().cloned(),
            _consumer: PhantomData,
        }
    }

    /// A copy that does not borrow the consumer, as rdkafka's `BorrowedMessage::detach`.
    pub fn detach(&self) -> OwnedMessage {
        OwnedMessage::new(
            self.payload.clone(),
            self.key.clone(),
            self.topic.clone(),
            self.timestamp,
            self.partition,
            self.offset,
            self.headers.clone(),
        )
    }

    /// The message's position, for the kit's commit and store calls (which read no more).
    pub(crate) fn position(&self) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            self.topic.clone(),
            self.timestamp,
            self.partition,
            self.offset,
            None,
        )
    }
}

impl std::fmt::Debug for BorrowedMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BorrowedMessage")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

impl Message for BorrowedMessage<'_> {
    type Headers = OwnedHeaders;

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }
    // The trait declares it `unsafe` (rdkafka's messages point into librdkafka's memory); this
    // one owns its payload.
    #[allow(unsafe_code)]
    unsafe fn payload_mut(&mut self) -> Option<&mut [u8]> {
        self.payload.as_deref_mut()
    }
    fn topic(&self) -> &str {
        &self.topic
    }
    fn partition(&self) -> i32 {
        self.partition
    }
    fn offset(&self) -> i64 {
        self.offset
    }
    fn timestamp(&self) -> Timestamp {
        self.timestamp
    }
    fn headers(&self) -> Option<&OwnedHeaders> {
        self.headers.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, Headers};

    use super::*;

    #[test]
    fn detach_keeps_everything_the_message_carries() {
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some("t-1"),
        });
        let owned = OwnedMessage::new(
            Some(b"evt-1".to_vec()),
            Some(b"k".to_vec()),
            "events".into(),
            Timestamp::CreateTime(17),
            2,
            41,
            Some(headers),
        );
        let message = BorrowedMessage::new(owned);
        let detached = message.detach();
        assert_eq!(detached.payload(), Some(&b"evt-1"[..]));
        assert_eq!(detached.key(), Some(&b"k"[..]));
        assert_eq!(
            (detached.topic(), detached.partition(), detached.offset()),
            ("events", 2, 41)
        );
        assert_eq!(detached.timestamp(), Timestamp::CreateTime(17));
        let header = detached.headers().map(|h| h.get(0));
        assert_eq!(header.map(|h| h.key), Some("trace"));
        assert_eq!(message.payload_view::<str>(), Some(Ok("evt-1")));
    }
}
