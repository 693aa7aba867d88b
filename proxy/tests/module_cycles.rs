//! Holds the proxy's modules to what `src/lib.rs` says of them: they depend one way, with no
//! circle among them.

#[path = "../../server/tests/support/imports.rs"]
mod imports;

#[test]
fn no_modules_of_the_proxy_import_each_other_in_a_circle() {
    let deps = imports::imports(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let circles = imports::circles(&deps);
    assert!(circles.is_empty(), "modules importing each other in a circle: {circles:?}");
}
