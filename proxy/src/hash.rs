//! A fast hasher for the maps the request path looks up on every request (services, endpoint
//! states, pools, metric label sets). Their keys are this proxy's own names, from its config
//! and its label sets, and the maps never grow from what a caller sends, so the hash-flooding
//! resistance of the standard SipHash buys nothing there and costs on every lookup.

/// A `HashMap` with rustc's Fx hashing.
pub type Map<K, V> = rustc_hash::FxHashMap<K, V>;
pub use rustc_hash::FxHasher as Fx;

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
