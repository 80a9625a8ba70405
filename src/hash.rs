//! A fast hasher for the short strings the hot path looks up once or more per message (field
//! names, tag sets): std's SipHash costs about as much as the rest of a lookup together.
//!
//! Sixteen bytes at a time folded through a 64×64→128-bit multiply with two keys drawn at random
//! once per process (from std's own random hasher keys), so that which strings collide cannot be
//! worked out in advance from the messages of a topic.
//!
//! ```text
//! use std::collections::HashMap;
//! use algorithmia_datadog::hash::FastState;
//!
//! let mut map: HashMap<&str, u32, FastState> = HashMap::default();
//! map.insert("risk_score", 1);
//! assert_eq!(map.get("risk_score"), Some(&1));
//! ```

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

const MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;

fn keys() -> (u64, u64) {
    static KEYS: OnceLock<(u64, u64)> = OnceLock::new();
    *KEYS.get_or_init(|| {
        let random = std::collections::hash_map::RandomState::new();
        (random.hash_one(1u64) | 1, random.hash_one(2u64))
    })
}

fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a).wrapping_mul(u128::from(b));
    (product as u64) ^ ((product >> 64) as u64)
}

/// Builds [`FastHasher`]s with this process's keys.
#[derive(Debug, Clone, Copy)]
pub struct FastState {
    keys: (u64, u64),
}

impl Default for FastState {
    fn default() -> Self {
        FastState { keys: keys() }
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher {
            state: self.keys.0,
            key: self.keys.1,
        }
    }
}

/// See the [module](self).
#[derive(Debug, Clone)]
pub struct FastHasher {
    state: u64,
    key: u64,
}

fn word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Sixteen bytes per multiply, the last up to 15 with the length.
        let mut chunks = bytes.chunks_exact(16);
        for chunk in chunks.by_ref() {
            self.state = fold(self.state ^ word(&chunk[..8]), self.key ^ word(&chunk[8..]));
        }
        let rest = chunks.remainder();
        let (low, high) = if rest.len() > 8 {
            (word(&rest[..8]), word(&rest[8..]))
        } else {
            (word(rest), 0)
        };
        self.state = fold(
            self.state ^ low,
            self.key ^ high ^ (bytes.len() as u64).wrapping_mul(MULTIPLIER),
        );
    }

    fn write_u8(&mut self, i: u8) {
        // The end mark std writes after a string: finish folds it in.
        self.state = self.state.rotate_left(8) ^ u64::from(i);
    }

    fn write_u64(&mut self, i: u64) {
        self.state = fold(self.state ^ i, self.key ^ MULTIPLIER);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        fold(self.state, self.key)
    }
}

/// Whether two short strings are equal, compared inline eight bytes at a time: the hot path
/// compares a field or metric name with the one it expects on every field, and the call to
/// `memcmp` that `==` makes costs more than the comparison itself for names of a few words.
#[inline]
pub(crate) fn short_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // (`get` checks the slices' ends; the conversions of 8 and 4 bytes cannot fail.)
    let eight = |s: &[u8], at: usize| s.get(at..at + 8)?.try_into().ok().map(u64::from_ne_bytes);
    let four = |s: &[u8], at: usize| s.get(at..at + 4)?.try_into().ok().map(u32::from_ne_bytes);
    if n < 8 {
        if n < 4 {
            return a == b;
        }
        // The first four bytes and the last four, overlapping.
        return four(a, 0) == four(b, 0) && four(a, n - 4) == four(b, n - 4);
    }
    // Whole words, then the last eight bytes (overlapping the last whole word).
    let mut at = 0;
    while at + 8 < n {
        if eight(a, at) != eight(b, at) {
            return false;
        }
        at += 8;
    }
    eight(a, n - 8) == eight(b, n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(s: &str) -> u64 {
        FastState::default().hash_one(s)
    }

    #[test]
    fn equal_strings_hash_alike_and_near_ones_apart() {
        assert_eq!(hash("algorithm_name:m"), hash("algorithm_name:m"));
        let names = [
            "",
            "a",
            "a\0",
            "b",
            "ab",
            "ba",
            "risk_score",
            "risk_scorf",
            "12345678",
            "123456789",
        ];
        let mut hashes: Vec<u64> = names.iter().map(|n| hash(n)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), names.len());
    }

    #[test]
    fn short_eq_is_equality() {
        let words = [
            "",
            "a",
            "b",
            "ab",
            "risk_score",
            "risk_scorf",
            "abcd",
            "abce",
            "bbcd",
            "abcde",
            "abcdf",
            "bbcde",
            "abcdefg",
            "abcdefh",
            "Abcdefg",
            "abcdefghijklmnopq",
            "abcdefghijklmnopr",
            "12345678",
            "12345679",
            "123456789",
            "123456780",
            "algorithm_version",
            "algorithm_versioN",
            "é",
            "e\u{301}",
        ];
        for a in words {
            for b in words {
                assert_eq!(short_eq(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn sequential_keys_spread_over_the_low_bits() {
        // hashbrown picks buckets from the low bits and a tag from the high ones.
        let mut low = std::collections::HashSet::new();
        for i in 0..1024 {
            low.insert(hash(&format!("v{i}")) & 1023);
        }
        assert!(low.len() > 550, "{} of 1024 buckets", low.len());
    }
}

/// The examples in this module's documentation, which name items outside the crate's surface.
#[cfg(test)]
mod doc_examples {
    #[test]
    fn doc_example_of_the_module() {
        use crate::hash::FastState;
        use std::collections::HashMap;

        let mut map: HashMap<&str, u32, FastState> = HashMap::default();
        map.insert("risk_score", 1);
        assert_eq!(map.get("risk_score"), Some(&1));
    }
}
