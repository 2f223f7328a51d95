//! Topic names as the history and the cluster hold them: shared, not copied.
//!
//! A run names the same few topics in every partition, record position, history entry and
//! message it handles; a [`TopicName`] is a shared string, so naming a topic again costs no
//! allocation. Names made from a `&str` or a `String` are interned per thread (the same text
//! gives the same shared string), so building a [`TopicPartition`](super::TopicPartition) from
//! a message's topic allocates nothing either once the topic was seen.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// A topic's name: a shared string that reads as a `&str` (it dereferences to one, compares
/// with `str` and `String`, and prints, in `Display` and `Debug`, as the string does).
///
/// ```
/// use effectively_once::history::{TopicName, TopicPartition};
///
/// let tp = TopicPartition::new("task-events", 0);
/// assert_eq!(tp.topic, "task-events");
/// assert!(tp.topic.starts_with("task"));
/// let name: TopicName = String::from("task-events").into();
/// assert_eq!(name, tp.topic);
/// assert_eq!(format!("{name} {name:?}"), "task-events \"task-events\"");
/// ```
#[derive(Clone)]
pub struct TopicName(Arc<str>);

/// How many names a thread interns; further names are shared but not interned (a program
/// that makes up topic names without end keeps no more than this).
const INTERNED_PER_THREAD: usize = 4096;

thread_local! {
    static INTERNED: RefCell<BTreeSet<Arc<str>>> = const { RefCell::new(BTreeSet::new()) };
}

impl TopicName {
    /// The name `name`, shared with every other `TopicName` of the same text made on this
    /// thread.
    pub fn new(name: &str) -> Self {
        INTERNED.with(|interned| {
            let mut interned = interned.borrow_mut();
            if let Some(shared) = interned.get(name) {
                return TopicName(shared.clone());
            }
            let shared: Arc<str> = Arc::from(name);
            if interned.len() < INTERNED_PER_THREAD {
                interned.insert(shared.clone());
            }
            TopicName(shared)
        })
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for TopicName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TopicName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for TopicName {
    fn from(name: &str) -> Self {
        TopicName::new(name)
    }
}

impl From<&String> for TopicName {
    fn from(name: &String) -> Self {
        TopicName::new(name)
    }
}

impl From<String> for TopicName {
    fn from(name: String) -> Self {
        TopicName::new(&name)
    }
}

impl From<&TopicName> for TopicName {
    fn from(name: &TopicName) -> Self {
        name.clone()
    }
}

impl From<TopicName> for String {
    fn from(name: TopicName) -> Self {
        name.0.to_string()
    }
}

impl PartialEq for TopicName {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for TopicName {}

impl PartialOrd for TopicName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The order of the names' text (an interned name compares equal without reading it).
impl Ord for TopicName {
    fn cmp(&self, other: &Self) -> Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            Ordering::Equal
        } else {
            self.0.cmp(&other.0)
        }
    }
}

/// Hashes as the name's `str` does (so that a map keyed by names can be read with a `&str`).
impl Hash for TopicName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

macro_rules! eq_with {
    ($($other:ty),*) => {$(
        impl PartialEq<$other> for TopicName {
            fn eq(&self, other: &$other) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }
        impl PartialEq<TopicName> for $other {
            fn eq(&self, other: &TopicName) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}
eq_with!(str, &str, String);

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_is_one_shared_string() {
        let a = TopicName::new("t");
        let b = TopicName::from(String::from("t"));
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, b);
        assert_eq!(a.cmp(&b), Ordering::Equal);
    }

    #[test]
    fn names_order_and_print_as_their_text() {
        let (a, b) = (TopicName::new("a"), TopicName::new("b"));
        assert!(a < b);
        let fresh = TopicName(Arc::from("a"));
        assert_eq!(fresh, a);
        assert_eq!(format!("{a:?}"), format!("{:?}", "a"));
        assert_eq!(format!("{a:>3}"), format!("{:>3}", "a"));
        let owned = String::from("a");
        assert_eq!(a, "a");
        assert_eq!("a", a);
        assert_eq!(a, owned);
        assert_eq!(owned, a);
    }
}
