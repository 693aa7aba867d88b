//! The parser and validator see whatever a commit contains: they must answer with diagnostics,
//! never panic, whatever the input.

use proptest::prelude::*;
use trellis_model::{SourceFile, load};

/// Fragments of real policy, so generated documents get past the YAML parser often enough to
/// exercise validation too.
const WORDS: &[&str] = &[
    "kind: ",
    "Service",
    "Route",
    "Mesh",
    "Rollout",
    "AccessPolicy",
    "TrafficPolicy",
    "name: ",
    "service: ",
    "versions: ",
    "rules:",
    "backends:",
    "version: ",
    "weight: ",
    "matches:",
    "path: ",
    "prefix: ",
    "regex: ",
    "exact: ",
    "headers:",
    "timeouts:",
    "request: ",
    "perTry: ",
    "retries:",
    "attempts: ",
    "budget:",
    "ratio: ",
    "steps:",
    "analysis:",
    "from:",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\n",
    "  ",
    "---\n",
    "v1",
    "v2",
    "100",
    "0",
    "-1",
    "1.5",
    "10s",
    "x",
    "\"",
    "'",
    "&a ",
    "*a",
    "!!str ",
    "#",
    "/",
    "(",
    "\u{0}",
    "é",
];

fn policy_like() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS), 0..80).prop_map(|w| w.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn policy_shaped_input_never_panics(text in policy_like()) {
        let _ = load(&[SourceFile { path: "p.yaml".into(), text }], "r");
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = load(&[SourceFile { path: "p.yaml".into(), text }], "r");
    }

    #[test]
    fn errors_always_point_into_the_file(text in policy_like()) {
        let lines = text.lines().count().max(1) as u32;
        if let Err(errors) = load(&[SourceFile { path: "p.yaml".into(), text: text.clone() }], "r") {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert!(e.line <= lines + 1, "{e} beyond {lines} lines of {text:?}");
            }
        }
    }
}
