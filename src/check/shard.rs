//! Splitting a check's cases across machines. A check that is not split meets the cases of
//! proptest's own stream, each generated from the state the one before left (its reports stay
//! what they always were). A split check draws from an indexed stream instead: case `j` is
//! generated from its own generator, seeded from the check's seed and `j`, so shard `i` of `n`
//! runs cases `i - 1`, `i - 1 + n`, `i - 1 + 2n`, ... without generating the others. Shards are
//! disjoint, each is reproducible on any machine from the seed and the shard, and `n` shards of
//! `c` cases each together cover the indexed stream's first `n × c` cases in the wall time of
//! one.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use proptest::strategy::{NewTree, Strategy, ValueTree};
use proptest::test_runner::{Reason, RngAlgorithm, TestRng, TestRunner};

/// A slice of a check's cases: shard `index` (from 1) of `count`. See
/// [`Verifier::shard`](crate::Verifier::shard).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// All the cases: shard 1 of 1 (the default).
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Shard `index` of `count`, counted from 1 (as nextest's `--partition count:2/8` and a CI
    /// matrix's `2/8` do).
    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 {
            return Err("a check cannot be split into 0 shards".into());
        }
        if index == 0 || index > count {
            return Err(format!(
                "shard {index} of {count} does not exist: shards are counted from 1 to {count}"
            ));
        }
        Ok(Shard { index, count })
    }

    /// Which shard this is, from 1.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// How many shards the cases are split into.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether this is the whole case stream (1 of 1).
    pub fn is_whole(&self) -> bool {
        self.count == 1
    }

    /// The strategy whose cases, in a run of proptest's, are this shard's of the check with
    /// `seed`: the inner strategy's own when the check is not split, else cases
    /// `index - 1 + k × count` of the indexed stream.
    pub(crate) fn strategy<S: Strategy>(&self, inner: S, seed: u64) -> Sharded<S> {
        Sharded {
            inner,
            seed,
            shard: *self,
            calls: Cell::new(0),
        }
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard::WHOLE
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `2/8`: shard 2 of 8.
    fn from_str(s: &str) -> Result<Shard, String> {
        let invalid = || format!("invalid shard {s:?}: expected <index>/<count>, such as 2/8");
        let (index, count) = s.trim().split_once('/').ok_or_else(invalid)?;
        let index = index.trim().parse().map_err(|_| invalid())?;
        let count = count.trim().parse().map_err(|_| invalid())?;
        Shard::new(index, count)
    }
}

/// The next case of `strategy` as `runner`'s run would generate it: a fresh generator seeded
/// from the last one (proptest's step from case to case), then the case.
pub(crate) fn next_case<S: Strategy>(
    strategy: &S,
    runner: &mut TestRunner,
) -> Result<S::Value, Reason> {
    let rng = runner.new_rng();
    *runner.rng() = rng;
    Ok(strategy.new_tree(runner)?.current())
}

/// The generator of case `case` of the indexed stream of the check with `seed`.
fn indexed_rng(seed: u64, case: u64) -> TestRng {
    // splitmix64 over (seed, case): well-mixed, independent-looking seeds for neighbouring
    // indices.
    let mut state = seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// A shard's cases: [`Shard::strategy`]. It counts the cases it generated (one instance per
/// run of proptest's: each pass of the search makes its own).
#[derive(Debug)]
pub(crate) struct Sharded<S> {
    inner: S,
    seed: u64,
    shard: Shard,
    calls: Cell<u64>,
}

impl<S: Strategy> Strategy for Sharded<S> {
    type Tree = S::Tree;
    type Value = S::Value;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        if !self.shard.is_whole() {
            let k = self.calls.replace(self.calls.get() + 1);
            let case = u64::from(self.shard.index - 1) + k * u64::from(self.shard.count);
            *runner.rng() = indexed_rng(self.seed, case);
        }
        self.inner.new_tree(runner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::test_runner::{Config, RngSeed};
    use std::cell::RefCell;

    fn runner(seed: u64) -> TestRunner {
        TestRunner::new(Config {
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..Config::default()
        })
    }

    /// The cases proptest's own run of `strategy` meets, in order.
    fn run_cases<S: Strategy>(strategy: &S, seed: u64, shard: Shard, cases: u32) -> Vec<S::Value>
    where
        S::Value: Clone,
    {
        let seen = RefCell::new(Vec::new());
        let mut runner = TestRunner::new(Config {
            cases,
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&shard.strategy(strategy, seed), |v| {
                seen.borrow_mut().push(v);
                Ok(())
            })
            .unwrap();
        seen.into_inner()
    }

    #[test]
    fn shards_parse_from_index_slash_count_and_refuse_nonsense() {
        assert_eq!("2/8".parse::<Shard>(), Ok(Shard { index: 2, count: 8 }));
        assert_eq!(" 1 / 1 ".parse::<Shard>(), Ok(Shard::WHOLE));
        for bad in ["", "2", "0/4", "5/4", "1/0", "a/b", "2/8/9", "-1/4"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("shard"), "{bad:?}: {e}");
        }
        assert_eq!(Shard::new(3, 4).unwrap().to_string(), "3/4");
    }

    #[test]
    fn the_generator_steps_as_proptest_runs_do() {
        let strategy = proptest::collection::vec(0u32..1000, 0..20);
        for shard in [Shard::WHOLE, Shard::new(2, 3).unwrap()] {
            let mut generator = runner(7);
            let sharded = shard.strategy(&strategy, 7);
            let generated: Vec<_> = (0..50)
                .map(|_| next_case(&sharded, &mut generator).unwrap())
                .collect();
            assert_eq!(generated, run_cases(&strategy, 7, shard, 50), "{shard}");
        }
    }

    #[test]
    fn shards_are_disjoint_slices_of_one_indexed_stream() {
        let strategy = proptest::collection::vec(0u64..u64::MAX, 1..5);
        let shards: Vec<Vec<_>> = (1..=4)
            .map(|i| run_cases(&strategy, 3, Shard::new(i, 4).unwrap(), 10))
            .collect();
        // Case j of the indexed stream is shard (j mod n) + 1's case j / n, whatever n is.
        let two: Vec<Vec<_>> = (1..=2)
            .map(|i| run_cases(&strategy, 3, Shard::new(i, 2).unwrap(), 20))
            .collect();
        for j in 0..40 {
            assert_eq!(shards[j % 4][j / 4], two[j % 2][j / 2], "case {j}");
        }
        let mut all: Vec<_> = shards.concat();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 40, "no case twice");
        // Reproducible: the same shard again gives the same cases.
        assert_eq!(
            run_cases(&strategy, 3, Shard::new(2, 4).unwrap(), 10),
            shards[1]
        );
        // Another seed, other cases.
        assert_ne!(
            run_cases(&strategy, 4, Shard::new(2, 4).unwrap(), 10),
            shards[1]
        );
    }
}
