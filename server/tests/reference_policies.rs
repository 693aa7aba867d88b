//! `policies/` is the living reference of the language: it validates, it uses every kind and
//! field, the demo ships all of it, and the committed JSON Schema matches the types.

use std::collections::BTreeSet;
use std::path::Path;
use trellis_server::testing::DEMO_POLICIES;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn policy_files() -> Vec<(String, String)> {
    let (files, errors) = trellis_server::source::read_dir(&root().join("policies")).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    files.into_iter().map(|f| (f.path, f.text)).collect()
}

fn schema() -> serde_json::Value {
    serde_json::from_str(&trellis_server::cli::policy::schema()).unwrap()
}

#[test]
fn the_committed_schema_is_current() {
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("schema/policy.json")).unwrap()).unwrap();
    assert_eq!(committed, schema(), "run `trellis schema > schema/policy.json`");
}

#[test]
fn every_kind_and_field_appears_in_the_reference() {
    let text: String = policy_files().into_iter().map(|(_, t)| t).collect::<Vec<_>>().join("\n");
    let schema = schema();
    let mut missing = BTreeSet::new();
    for (def, body) in schema["$defs"].as_object().unwrap() {
        if body.get("const").is_some() || body.get("enum").is_some() {
            continue;
        }
        // Fields are written `name:` in block style or `{ name: ... }` in flow style.
        let fields = body["properties"].as_object().into_iter().flatten().map(|(k, _)| k.clone());
        let variants =
            body["oneOf"].as_array().into_iter().flatten().filter_map(|v| v["required"][0].as_str().map(String::from));
        for field in fields.chain(variants) {
            if !text.contains(&format!("{field}:")) {
                missing.insert(format!("{def}.{field}"));
            }
        }
    }
    for kind in trellis_model::parse::KINDS {
        if !text.contains(&format!("kind: {kind}\n")) {
            missing.insert(format!("kind {kind}"));
        }
    }
    assert!(missing.is_empty(), "not shown in policies/: {missing:?}");
}

#[test]
fn the_demo_ships_every_reference_file() {
    let on_disk: BTreeSet<String> = policy_files().into_iter().map(|(p, _)| p).collect();
    let shipped: BTreeSet<String> = DEMO_POLICIES.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(on_disk, shipped, "update DEMO_POLICIES in server/src/testing.rs");
}
