//! A fast hasher for the maps the request path looks up on every request (services, endpoint
//! states, pools, metric label sets). Their keys are this proxy's own names, from its config
//! and its label sets, and the maps never grow from what a caller sends, so the hash-flooding
//! resistance of the standard SipHash buys nothing there and costs on every lookup.

use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`Fx`] hashing.
pub type Map<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<Fx>>;

/// The multiply-rotate hash of rustc (FxHash), eight bytes at a time.
#[derive(Default, Clone, Copy)]
pub struct Fx(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        // The last 1-7 bytes in at most three loads: a copy into a buffer calls memcpy.
        let mut rest = chunks.remainder();
        if rest.is_empty() {
            return;
        }
        let (len, mut word, mut shift) = (rest.len() as u64, 0u64, 0);
        if let [a, b, c, d, tail @ ..] = rest {
            word = u64::from(u32::from_le_bytes([*a, *b, *c, *d]));
            (rest, shift) = (tail, 32);
        }
        if let [a, b, tail @ ..] = rest {
            word |= u64::from(u16::from_le_bytes([*a, *b])) << shift;
            (rest, shift) = (tail, shift + 16);
        }
        if let [a] = rest {
            word |= u64::from(*a) << shift;
        }
        self.add(word ^ (len << 56));
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, BuildHasherDefault};

    #[test]
    fn keys_that_differ_hash_apart_and_a_map_works() {
        let h = |s: &str| BuildHasherDefault::<Fx>::default().hash_one(s);
        let names = ["catalog", "catalog2", "inventory", "127.0.0.1:8080", "127.0.0.1:8081", "", "a", "b"];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(h(a), h(b), "{a} vs {b}");
            }
        }
        let mut m: Map<String, u32> = Map::default();
        m.insert("catalog".into(), 1);
        assert_eq!(m.get("catalog"), Some(&1));
        assert_eq!(m.get("catalog2"), None);
    }
}
