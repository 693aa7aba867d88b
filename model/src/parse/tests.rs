use super::*;
use crate::diagnostic::Code;

fn file(path: &str, text: &str) -> SourceFile {
    SourceFile { path: path.to_string(), text: text.to_string() }
}

fn errors(files: &[SourceFile]) -> Vec<Diagnostic> {
    match crate::load(files, "rev") {
        Ok(_) => panic!("expected errors"),
        Err(e) => e,
    }
}

const SERVICES: &str =
    "kind: Service\nname: inventory\nversions: [v1, v2]\n---\nkind: Service\nname: catalog\nversions: [v1]\n";

#[test]
fn multi_document_files_compile() {
    let route = "kind: Route\nname: inv\nservice: inventory\nrules:\n  - backends:\n      - version: v1\n        weight: 90\n      - version: v2\n        weight: 10\n";
    let mesh = crate::load(&[file("services.yaml", SERVICES), file("routes.yaml", route)], "abc").unwrap();
    assert_eq!(mesh.revision, "abc");
    let inv = &mesh.services["inventory"];
    assert_eq!(inv.versions, vec!["v1", "v2"]);
    let weights: Vec<(String, u32)> = inv.default_weights().into_iter().map(|b| (b.version, b.weight)).collect();
    assert_eq!(weights, vec![("v1".into(), 90), ("v2".into(), 10)]);
    // A service without a route is split evenly.
    assert_eq!(mesh.services["catalog"].default_weights()[0].weight, 100);
}

#[test]
fn broken_yaml_is_located() {
    let e = errors(&[file("a.yaml", "kind: Service\nname: [oops\n")]);
    assert_eq!(e[0].code, Code::YamlSyntax);
    assert_eq!(e[0].file, "a.yaml");
    assert!(e[0].line >= 2, "{e:?}");
}

#[test]
fn positions_count_from_the_file_not_the_document() {
    let route =
        "kind: Route\nname: inv\nservice: inventory\nrules:\n  - backends:\n      - version: v3\n        weight: 100\n";
    let text = format!("{SERVICES}---\n{route}");
    let e = errors(&[file("all.yaml", &text)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].code, Code::UnknownVersion);
    // services take 7 lines, the marker 1, then the backend's version is line 6 of the route.
    assert_eq!((e[0].line, e[0].column), (14, 18));
}

#[test]
fn unknown_fields_are_refused_with_a_suggestion() {
    let e = errors(&[file("s.yaml", "kind: Service\nname: a\nversion: [v1]\n")]);
    assert_eq!(e[0].code, Code::UnknownField);
    assert!(e[0].message.contains("did you mean `versions`"), "{}", e[0].message);
    assert_eq!((e[0].line, e[0].column), (3, 1));
    let e = errors(&[file("s.yaml", "kind: Servise\nname: a\n")]);
    assert_eq!(e[0].code, Code::UnknownKind);
    assert!(e[0].message.contains("did you mean `Service`"), "{}", e[0].message);
}

#[test]
fn every_error_of_every_file_is_reported() {
    let route =
        "kind: Route\nname: inv\nservice: inventori\nrules:\n  - backends:\n      - version: v1\n        weight: 10\n";
    let bad_route =
        "kind: Route\nname: cat\nservice: catalog\nrules:\n  - backends:\n      - version: v1\n        weight: 50\n";
    let e = errors(&[
        file("s.yaml", SERVICES),
        file("r1.yaml", route),
        file("r2.yaml", bad_route),
        file("x.yaml", "kind: ["),
    ]);
    let codes: Vec<&str> = e.iter().map(|d| d.code.as_str()).collect();
    // Syntax errors stop before validation; fix them first, then the semantic ones appear.
    assert_eq!(codes, vec!["TR0001"]);
    let e = errors(&[file("s.yaml", SERVICES), file("r1.yaml", route), file("r2.yaml", bad_route)]);
    let codes: Vec<&str> = e.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, vec!["TR0102", "TR0104"]);
    assert!(e[0].message.contains("did you mean `inventory`"), "{}", e[0].message);
}

#[test]
fn duplicate_names_across_files_point_at_the_first() {
    let e = errors(&[file("a.yaml", SERVICES), file("b.yaml", "kind: Service\nname: catalog\nversions: [v1]\n")]);
    assert_eq!(e[0].code, Code::DuplicateName);
    assert_eq!(e[0].file, "b.yaml");
    assert!(e[0].message.contains("a.yaml:6"), "{}", e[0].message);
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "---",
        "- 1\n- 2",
        "kind: 7",
        ":",
        "kind: Route\nrules: {}",
        "\u{0}",
        "&a [*a]",
        "kind: Service\nname: a\nversions: [A_B]",
    ] {
        let _ = crate::load(&[file("g.yaml", text)], "r");
    }
}
