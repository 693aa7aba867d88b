//! A fast hasher for the maps the request path looks up on every request (services, endpoint
//! states, pools, metric label sets). Their keys are this proxy's own names, from its config
//! and its label sets, and the maps never grow from what a caller sends, so the hash-flooding
//! resistance of the standard SipHash buys nothing there and costs on every lookup.

/// A `HashMap` with rustc's Fx hashing.
pub type Map<K, V> = rustc_hash::FxHashMap<K, V>;
pub use rustc_hash::FxHasher as Fx;
