//! The key a case's verdict is cached under: a 128-bit hash of everything in its scenario.
//! Formatting a 50-event scenario's `Debug` text for the key cost a twentieth of the case.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::Value;

use crate::scenario::Scenario;

/// Two scenarios have the same key when they are equal; two different scenarios share one
/// with a probability of about 2^-128 per pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CaseKey(u64, u64);

/// Two independent 64-bit hashes of the same input.
struct Wide(DefaultHasher, DefaultHasher);

impl Hasher for Wide {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.1.write(bytes);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// The key of `scenario`'s case.
pub(crate) fn key_of(scenario: &Scenario) -> CaseKey {
    let mut second = DefaultHasher::new();
    // A different start makes the second hash independent of the first.
    second.write_u64(0x9e37_79b9_7f4a_7c15);
    let mut h = Wide(DefaultHasher::new(), second);
    let Scenario {
        seed,
        partitions,
        instances,
        late_joins,
        events,
        faults,
    } = scenario;
    (seed, partitions, instances).hash(&mut h);
    h.write_usize(late_joins.len());
    for join in late_joins {
        (join.instance, join.at).hash(&mut h);
    }
    h.write_usize(events.len());
    for e in events {
        (&e.event.event_id, &e.event.key).hash(&mut h);
        hash_value(&e.event.payload, &mut h);
        (e.produced_twice, e.poison, e.aborted_first).hash(&mut h);
    }
    h.write_usize(faults.len());
    for f in faults {
        (f.event, f.operation, f.occurrence, f.fault).hash(&mut h);
    }
    CaseKey(h.0.finish(), h.1.finish())
}

/// Hashes a JSON value so that values equal by `==` hash alike and a value's kind is part of
/// its hash (`1`, `1.0`, `"1"` and `[1]` differ).
fn hash_value(value: &Value, h: &mut impl Hasher) {
    match value {
        Value::Null => h.write_u8(0),
        Value::Bool(b) => {
            h.write_u8(1);
            b.hash(h);
        }
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                h.write_u8(2);
                h.write_u64(u);
            } else if let Some(i) = n.as_i64() {
                h.write_u8(3);
                h.write_i64(i);
            } else {
                h.write_u8(4);
                h.write_u64(n.as_f64().unwrap_or(f64::NAN).to_bits());
            }
        }
        Value::String(s) => {
            h.write_u8(5);
            s.hash(h);
        }
        Value::Array(items) => {
            h.write_u8(6);
            h.write_usize(items.len());
            for item in items {
                hash_value(item, h);
            }
        }
        Value::Object(fields) => {
            h.write_u8(7);
            h.write_usize(fields.len());
            for (name, item) in fields {
                name.hash(h);
                hash_value(item, h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    use serde_json::json;

    use super::*;
    use crate::scenario::ScenarioSpace;

    #[test]
    fn equal_scenarios_share_a_key_and_different_ones_do_not() {
        let mut runner = TestRunner::deterministic();
        let strategy = ScenarioSpace::default().strategy();
        let mut scenarios = Vec::new();
        for _ in 0..300 {
            let mut tree = strategy.new_tree(&mut runner).unwrap();
            scenarios.push(tree.current());
            // Shrunk variants differ from their original in one detail each.
            for _ in 0..5 {
                if !tree.simplify() {
                    break;
                }
                scenarios.push(tree.current());
            }
        }
        for s in &scenarios {
            assert_eq!(key_of(s), key_of(&s.clone()));
        }
        let texts: BTreeSet<String> = scenarios.iter().map(|s| format!("{s:?}")).collect();
        let keys: BTreeSet<CaseKey> = scenarios.iter().map(key_of).collect();
        assert_eq!(keys.len(), texts.len(), "one key per distinct scenario");
        assert!(texts.len() > 300);
    }

    #[test]
    fn json_values_of_different_kinds_hash_apart() {
        let values = [
            json!(null),
            json!(false),
            json!(1),
            json!(-1),
            json!(1.0),
            json!("1"),
            json!([1]),
            json!({"a": 1}),
            json!({"a": [1]}),
            json!([[1]]),
        ];
        let hashes: BTreeSet<u64> = values
            .iter()
            .map(|v| {
                let mut h = DefaultHasher::new();
                hash_value(v, &mut h);
                h.finish()
            })
            .collect();
        assert_eq!(hashes.len(), values.len());
    }
}
