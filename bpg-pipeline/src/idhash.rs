//! A fast hasher for the runner's own maps keyed by task ids.
//!
//! Task ids come from the user's own pipeline, not from an adversary, so the DoS resistance of
//! the standard SipHash buys nothing here while its cost shows in every lookup of a large DAG.
//! This is a multiply-rotate hash over 8-byte words.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hasher for short keys (task ids).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdHasher {
    state: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IdHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.state = (self.state.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.state
    }
}

/// A `HashMap` using [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_ids_spread_and_lookups_work() {
        let mut map: IdMap<String, usize> = IdMap::default();
        for i in 0..100_000 {
            map.insert(format!("task_{i}"), i);
        }
        assert_eq!(map.len(), 100_000);
        assert!((0..100_000).all(|i| map[&format!("task_{i}")] == i));
        // "ab" + "c" and "a" + "bc" differ: str hashing appends a terminator byte.
        let h = |s: &str| {
            let mut h = IdHasher::default();
            std::hash::Hash::hash(s, &mut h);
            h.finish()
        };
        assert_ne!(h("ab"), h("ba"));
        assert_ne!(h("t1"), h("t10"));
    }
}
