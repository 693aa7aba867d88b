//! Holds the proxy's modules to what `src/lib.rs` says of them: they depend one way, and the
//! only circles are of two modules (a pair that is one concern split in two files).

#[path = "../../server/tests/support/imports.rs"]
mod imports;

#[test]
fn no_circle_among_the_proxys_modules_is_of_more_than_two() {
    let deps = imports::imports(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let large: Vec<_> = imports::circles(&deps).into_iter().filter(|c| c.len() > 2).collect();
    assert!(large.is_empty(), "modules importing each other in a circle: {large:?}");
}
