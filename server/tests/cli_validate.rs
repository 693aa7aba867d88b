//! `trellis validate` as a pull-request check runs it: on a checkout, with an exit code.

use std::process::Command;

fn validate(dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis")).arg("validate").arg(dir).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_example_policies_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let (code, out) = validate(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("3 service(s)"), "{out}");
}

#[test]
fn an_invalid_policy_exits_1_with_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("routes")).unwrap();
    std::fs::write(dir.path().join("svc.yaml"), "kind: Service\nname: shop\nversions: [v1]\n").unwrap();
    std::fs::write(
        dir.path().join("routes/shop.yaml"),
        "kind: Route\nname: shop\nservice: shop\nrules:\n  - backends:\n      - version: v2\n        weight: 100\n",
    )
    .unwrap();
    let (code, out) = validate(dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("routes/shop.yaml:6:18: error[TR0103]"), "{out}");
    assert!(out.contains("hint:"), "{out}");
}
