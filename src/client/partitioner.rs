//! librdkafka's partitioners, so that keys land where a Rust user's production producer puts them.

/// librdkafka's `partitioner` setting (the ones the simulator models).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Partitioner {
    /// `consistent_random` (librdkafka's default): CRC32 of the key; empty or null key → random.
    ConsistentRandom,
    /// `consistent`: CRC32 of the key, null and empty keys included.
    Consistent,
    /// `murmur2_random` (the Java client's default): murmur2 of the key; null key → random.
    Murmur2Random,
    /// `murmur2`: murmur2 of the key, null key included.
    Murmur2,
    /// `random`.
    Random,
}

impl Partitioner {
    pub(crate) fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "consistent_random" => Partitioner::ConsistentRandom,
            "consistent" => Partitioner::Consistent,
            "murmur2_random" => Partitioner::Murmur2Random,
            "murmur2" => Partitioner::Murmur2,
            "random" => Partitioner::Random,
            _ => return None,
        })
    }

    /// The partition librdkafka picks for `key` among `partitions` (> 0); `below(n)` draws a
    /// uniform random number in `0..n` (the run's RNG), called only when the choice is random.
    pub(crate) fn partition(
        self,
        key: Option<&[u8]>,
        partitions: i32,
        below: impl FnOnce(u64) -> u64,
    ) -> i32 {
        let n = partitions as u32;
        let random = move || below(u64::from(n)) as i32;
        match self {
            Partitioner::ConsistentRandom => match key {
                Some(k) if !k.is_empty() => (crc32(k) % n) as i32,
                _ => random(),
            },
            Partitioner::Consistent => (crc32(key.unwrap_or_default()) % n) as i32,
            Partitioner::Murmur2Random => match key {
                Some(k) => ((murmur2(k) & 0x7fff_ffff) % n) as i32,
                None => random(),
            },
            Partitioner::Murmur2 => ((murmur2(key.unwrap_or_default()) & 0x7fff_ffff) % n) as i32,
            Partitioner::Random => random(),
        }
    }
}

/// CRC-32 (IEEE), as librdkafka's `rd_crc32`.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Kafka's murmur2 (seed 0x9747b28c), as librdkafka's `rd_murmur2` and the Java client.
pub(crate) fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::rng::SimRng;

    #[test]
    fn murmur2_matches_kafkas_reference_values() {
        // Values from Kafka's UtilsTest.testMurmur2 (as unsigned 32-bit integers).
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input) as i32,
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn consistent_random_hashes_keys_and_randomises_empty_keys() {
        let mut rng = SimRng::new(3);
        assert_eq!(
            Partitioner::ConsistentRandom.partition(Some(b"task-1"), 7, |n| rng.below(n)),
            (crc32(b"task-1") % 7) as i32
        );
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..64 {
            seen.insert(Partitioner::ConsistentRandom.partition(Some(b""), 4, |n| rng.below(n)));
            seen.insert(Partitioner::ConsistentRandom.partition(None, 4, |n| rng.below(n)));
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(
            Partitioner::Consistent.partition(Some(b""), 4, |n| rng.below(n)),
            0
        );
    }
}
