//! What a durable-store transaction changed, as the store effects' queries see it.

use std::fmt;

/// The rows of one store effect (a `Verifier::store_effect` query) that a committed
/// durable-store transaction changed: the event ids whose count went up or down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreRows {
    /// The store effect's name (`inbox`).
    pub effect: String,
    /// The event ids whose count went up, each once per row added.
    pub added: Vec<String>,
    /// The event ids whose count went down, each once per row removed.
    pub removed: Vec<String>,
}

impl fmt::Display for StoreRows {
    /// `inbox +evt-3 +evt-3 -evt-1`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.effect)?;
        for id in &self.added {
            write!(f, " +{id}")?;
        }
        for id in &self.removed {
            write!(f, " -{id}")?;
        }
        Ok(())
    }
}

/// `: inbox +evt-3; completion +evt-3`, or nothing when no store effect changed.
pub(crate) fn write_rows(f: &mut fmt::Formatter<'_>, wrote: &[StoreRows]) -> fmt::Result {
    for (i, rows) in wrote.iter().enumerate() {
        f.write_str(if i == 0 { ": " } else { "; " })?;
        write!(f, "{rows}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Wrote(Vec<StoreRows>);

    impl fmt::Display for Wrote {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_rows(f, &self.0)
        }
    }

    #[test]
    fn rows_name_the_effect_then_each_event_added_and_removed() {
        let rows = |effect: &str, added: &[&str], removed: &[&str]| StoreRows {
            effect: effect.into(),
            added: added.iter().map(|s| s.to_string()).collect(),
            removed: removed.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(Wrote(Vec::new()).to_string(), "");
        assert_eq!(
            Wrote(vec![
                rows("inbox", &["evt-3", "evt-3"], &["evt-1"]),
                rows("done", &["evt-3"], &[]),
            ])
            .to_string(),
            ": inbox +evt-3 +evt-3 -evt-1; done +evt-3"
        );
    }
}
