//! FNV-1a hashing for the short keys looked up on every decision (cluster ids, label values).
//!
//! The maps it backs are built from the rules file and the caller's view, so SipHash's flooding
//! resistance buys nothing there, while its cost shows in a sub-microsecond decision.

use std::hash::{BuildHasher, Hasher};

/// Builds [`Fnv`] hashers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FnvBuildHasher;

/// 64-bit FNV-1a.
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl BuildHasher for FnvBuildHasher {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

/// A `HashMap` with FNV-1a hashing.
pub(crate) type FnvHashMap<K, V> = std::collections::HashMap<K, V, FnvBuildHasher>;
