//! A record key as the history shows it: its text, lossily decoded as UTF-8.

use std::sync::Arc;

/// The text of `key`. A key that is valid UTF-8 (as keys almost always are) shares the key's
/// own bytes: no allocation, no copy.
pub(crate) fn key_text(key: &Arc<[u8]>) -> Arc<str> {
    if std::str::from_utf8(key).is_err() {
        return Arc::from(String::from_utf8_lossy(key));
    }
    let bytes = Arc::into_raw(key.clone());
    // SAFETY: the bytes were just checked to be UTF-8, `str` has the layout of `[u8]`, and the
    // pointer comes from `Arc::into_raw` of the same allocation, whose bytes an `Arc<[u8]>`
    // never mutates.
    unsafe { Arc::from_raw(bytes as *const str) }
}

/// The text of a key borrowed from elsewhere (a librdkafka message): decoded into a new
/// allocation.
pub(crate) fn key_text_of(key: &[u8]) -> Arc<str> {
    Arc::from(String::from_utf8_lossy(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_keys_share_their_bytes_and_others_decode_lossily() {
        let key: Arc<[u8]> = Arc::from(&b"k-1"[..]);
        let text = key_text(&key);
        assert_eq!(&*text, "k-1");
        assert_eq!(text.as_ptr(), key.as_ptr());
        assert_eq!(Arc::strong_count(&key), 2);
        drop(text);
        assert_eq!(Arc::strong_count(&key), 1);
        assert_eq!(&*key_text(&Arc::from(&b"\xffk"[..])), "\u{fffd}k");
        assert_eq!(&*key_text_of(b"\xffk"), "\u{fffd}k");
    }
}
