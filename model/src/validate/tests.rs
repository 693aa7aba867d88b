//! One failing example per error code, and the proof that every code has one.

use crate::diagnostic::Code;
use crate::{SourceFile, load};
use std::collections::BTreeSet;

const SERVICES: &str = "kind: Service\nname: shop\nversions: [v1, v2]\n---\nkind: Service\nname: pay\nversions: [v1]\n";

fn route(rules: &str) -> String {
    format!("kind: Route\nname: shop\nservice: shop\nrules:\n{rules}")
}

const ONE_BACKEND: &str = "    backends: [{ version: v1, weight: 100 }]\n";

fn rollout(body: &str) -> String {
    format!(
        "kind: Rollout\nname: shop-v2\nservice: shop\nstable: v1\ncanary: v2\n{body}analysis: {{ interval: 30s, successRate: 99, p99: 500ms, minRequests: 20 }}\n"
    )
}

const SLACK: &str = "slack: { urlFrom: TRELLIS_SLACK_URL }\n";

fn notification(events: &str, target: &str) -> String {
    format!("kind: Notification\nname: alerts\n{events}{target}")
}

/// (code, extra file) pairs: each policy is SERVICES plus the file, and must fail with the code.
fn examples() -> Vec<(Code, String)> {
    vec![
        (Code::YamlSyntax, "kind: Service\nname: [x\n".into()),
        (Code::MissingKind, "name: x\n".into()),
        (Code::UnknownKind, "kind: Servise\nname: x\n".into()),
        (Code::UnknownField, "kind: Service\nname: x\nversions: [v1]\nreplicas: 3\n".into()),
        (Code::InvalidValue, "kind: Service\nname: x\nversions: [v1]\nprotocol: ftp\n".into()),
        (Code::DuplicateKey, "kind: Service\nname: x\nname: y\nversions: [v1]\n".into()),
        (Code::MissingField, "kind: Service\nname: x\n".into()),
        (Code::InvalidDuration, route(&format!("  - timeouts: {{ request: 10 }}\n{ONE_BACKEND}"))),
        (Code::DuplicateName, "kind: Service\nname: shop\nversions: [v1]\n".into()),
        (Code::UnknownService, "kind: Route\nname: r\nservice: shops\nrules: []\n".into()),
        (Code::UnknownVersion, route("  - backends: [{ version: v3, weight: 100 }]\n")),
        (Code::WeightSum, route("  - backends: [{ version: v1, weight: 60 }, { version: v2, weight: 30 }]\n")),
        (Code::NoVersions, "kind: Service\nname: x\nversions: []\n".into()),
        (Code::DuplicateVersion, "kind: Service\nname: x\nversions: [v1, v1]\n".into()),
        (
            Code::DuplicateTarget,
            format!(
                "{}---\n{}",
                route(&format!("  -{}", &ONE_BACKEND[3..])),
                route(&format!("  -{}", &ONE_BACKEND[3..])).replace("name: shop", "name: shop2")
            ),
        ),
        (Code::InvalidName, "kind: Service\nname: Shop_1\nversions: [v1]\n".into()),
        (Code::NoBackends, route("  - backends: []\n")),
        (Code::InvalidPath, route(&format!("  - matches: [{{ path: {{ prefix: api }} }}]\n{ONE_BACKEND}"))),
        (
            Code::ShadowedRule,
            route(&format!(
                "  - matches: [{{ path: {{ prefix: /api }} }}]\n{ONE_BACKEND}  - matches: [{{ path: {{ prefix: /api/v2 }}, method: GET }}]\n{ONE_BACKEND}"
            )),
        ),
        (Code::OutOfRange, route(&format!("  - retries: {{ attempts: 50 }}\n{ONE_BACKEND}"))),
        (
            Code::DuplicateRollout,
            format!(
                "{}---\n{}",
                rollout("steps: [{ weight: 10 }]\n"),
                rollout("steps: [{ weight: 10 }]\n").replace("name: shop-v2", "name: other")
            ),
        ),
        (Code::UnknownIdentity, "kind: AccessPolicy\nname: a\nservice: pay\nrules:\n  - from: [shopp]\n".into()),
        (Code::InvalidRegex, route(&format!("  - matches: [{{ path: {{ regex: \"/a(\" }} }}]\n{ONE_BACKEND}"))),
        (Code::InvalidRollout, rollout("steps: [{ weight: 50 }, { weight: 20 }]\n")),
        (Code::TimeoutOrder, route(&format!("  - timeouts: {{ request: 1s, perTry: 2s }}\n{ONE_BACKEND}"))),
        (Code::MultipleMeshes, "kind: Mesh\nname: a\n---\nkind: Mesh\nname: b\n".into()),
        (
            Code::InvalidHeader,
            route(&format!("  - matches: [{{ headers: [{{ name: \"x y\", value: a }}] }}]\n{ONE_BACKEND}")),
        ),
        (Code::InvalidMethod, route(&format!("  - matches: [{{ method: get }}]\n{ONE_BACKEND}"))),
        (Code::GrpcCondition, route(&format!("  - retries: {{ on: [unavailable, 5xx] }}\n{ONE_BACKEND}"))),
        (Code::RateLimit, "kind: TrafficPolicy\nname: t\nservice: pay\nrateLimit: {}\n".into()),
        (Code::NotificationEvent, notification("events: [rollout-aborted, rollout-abort]\n", SLACK)),
        (Code::NotificationTarget, notification("events: [proxy-nack]\n", "")),
        (Code::SecretReference, notification("events: [proxy-nack]\n", "slack: { urlFrom: slack-url }\n")),
        (
            Code::TcpService,
            "kind: Service\nname: db\nprotocol: tcp\nversions: [v1]\n---\nkind: Route\nname: db\nservice: db\nrules:\n  - retries: { attempts: 1 }\n    backends: [{ version: v1, weight: 100 }]\n".into(),
        ),
    ]
}

fn codes_of(extra: &str) -> Vec<Code> {
    let files = [
        SourceFile { path: "services.yaml".into(), text: SERVICES.into() },
        SourceFile { path: "extra.yaml".into(), text: extra.into() },
    ];
    match load(&files, "rev") {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| e.code).collect(),
    }
}

#[test]
fn every_code_has_a_failing_example() {
    let mut covered = BTreeSet::new();
    for (code, text) in examples() {
        let codes = codes_of(&text);
        assert!(codes.contains(&code), "{code} expected from:\n{text}\ngot {codes:?}");
        covered.insert(code.as_str());
    }
    let unreadable = SourceFile::from_bytes("bin.yaml", &[0xff, 0xfe]).unwrap_err();
    assert_eq!(unreadable.code, Code::Unreadable);
    covered.insert(unreadable.code.as_str());
    // Judged on commits, not files: its failing examples are in server/tests/signed_commits.rs.
    covered.insert(Code::UnsignedCommit.as_str());
    let all: BTreeSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(covered, all, "codes without an example");
}

#[test]
fn the_readme_catalogues_every_code() {
    let readme = include_str!("../../../README.md");
    for code in Code::ALL {
        assert!(readme.contains(code.as_str()), "README lacks {code}");
    }
}

#[test]
fn narrower_rules_after_broader_ones_are_reported_and_the_reverse_is_fine() {
    let broad_first =
        route(&format!("  - {}  - matches: [{{ path: {{ exact: /x }} }}]\n{ONE_BACKEND}", &ONE_BACKEND[4..]));
    assert_eq!(codes_of(&broad_first), vec![Code::ShadowedRule]);
    let narrow_first =
        route(&format!("  - matches: [{{ path: {{ exact: /x }} }}]\n{ONE_BACKEND}  - {}", &ONE_BACKEND[4..]));
    assert!(codes_of(&narrow_first).is_empty());
    // A header condition makes the earlier rule narrower: no shadowing.
    let header_first = route(&format!(
        "  - matches: [{{ path: {{ prefix: / }}, headers: [{{ name: x-canary }}] }}]\n{ONE_BACKEND}  - matches: [{{ path: {{ prefix: /a }} }}]\n{ONE_BACKEND}"
    ));
    assert!(codes_of(&header_first).is_empty(), "{:?}", codes_of(&header_first));
}

#[test]
fn grpc_retry_conditions_are_for_grpc_services() {
    let grpc = "kind: Service\nname: rpc\nversions: [v1]\nprotocol: grpc\n---\nkind: Route\nname: rpc\nservice: rpc\nrules:\n  - retries: { on: [unavailable, resource-exhausted, cancelled, deadline-exceeded, internal, reset] }\n    backends: [{ version: v1, weight: 100 }]\n";
    assert!(codes_of(grpc).is_empty(), "{:?}", codes_of(grpc));
    let http = grpc.replace("protocol: grpc", "protocol: http");
    assert_eq!(codes_of(&http), vec![Code::GrpcCondition]);
}

#[test]
fn rate_limits_are_checked_where_they_are_written() {
    let traffic = |limit: &str| format!("kind: TrafficPolicy\nname: t\nservice: pay\nrateLimit:\n{limit}");
    let good = traffic(
        "  total: { requestsPerSecond: 100 }\n  perCaller: { requestsPerSecond: 20, burst: 5 }\n  overrides:\n    - { from: [shop], requestsPerSecond: 50 }\n",
    );
    assert!(codes_of(&good).is_empty(), "{:?}", codes_of(&good));
    assert_eq!(codes_of(&traffic("  total: { requestsPerSecond: 0 }\n")), vec![Code::OutOfRange]);
    assert_eq!(codes_of(&traffic("  total: { requestsPerSecond: 5, burst: 0 }\n")), vec![Code::OutOfRange]);
    assert_eq!(codes_of(&traffic("  total: { rps: 5 }\n")), vec![Code::UnknownField]);
    let twice = "  overrides:\n    - { from: [shop], requestsPerSecond: 5 }\n    - { from: [pay, shop], requestsPerSecond: 9 }\n";
    assert_eq!(codes_of(&traffic(twice)), vec![Code::RateLimit]);
    assert_eq!(
        codes_of(&traffic("  overrides: [{ from: [shopp], requestsPerSecond: 5 }]\n")),
        vec![Code::UnknownIdentity]
    );
    assert_eq!(codes_of(&traffic("  overrides: [{ from: [], requestsPerSecond: 5 }]\n")), vec![Code::RateLimit]);
    // On a route rule too.
    let rule = route(&format!("  - rateLimit: {{ perCaller: {{ requestsPerSecond: 0 }} }}\n{ONE_BACKEND}"));
    assert_eq!(codes_of(&rule), vec![Code::OutOfRange]);
}

#[test]
fn a_tcp_service_takes_connection_features_only() {
    let db = "kind: Service\nname: db\nprotocol: tcp\nport: 5432\nversions: [v1, v2]\n---\n";
    let fine = format!(
        "{db}kind: Route\nname: db\nservice: db\nrules:\n  - backends: [{{ version: v1, weight: 90 }}, {{ version: v2, weight: 10 }}]\n---\nkind: TrafficPolicy\nname: db\nservice: db\nloadBalancer: least-request\nconnectionLimits: {{ maxConnections: 100 }}\n---\nkind: AccessPolicy\nname: db\nservice: db\nrules:\n  - from: [shop]\n"
    );
    assert!(codes_of(&fine).is_empty(), "{:?}", codes_of(&fine));
    let by_path =
        format!("{db}kind: AccessPolicy\nname: db\nservice: db\nrules:\n  - {{ from: [shop], paths: [/x] }}\n");
    assert_eq!(codes_of(&by_path), vec![Code::TcpService]);
    let limited =
        format!("{db}kind: TrafficPolicy\nname: db\nservice: db\nrateLimit: {{ total: {{ requestsPerSecond: 5 }} }}\n");
    assert_eq!(codes_of(&limited), vec![Code::TcpService]);
    let rollout = rollout("steps: [{ weight: 10 }]\n").replace("service: shop", "service: db");
    assert_eq!(codes_of(&format!("{db}{rollout}")), vec![Code::TcpService]);
}

#[test]
fn a_notification_names_known_events_one_target_and_secrets_by_variable() {
    let ok = notification("events: [rollout-aborted, revision-rejected]\nservices: [shop]\n", SLACK);
    assert_eq!(codes_of(&ok), []);
    let hook = "webhook: { url: \"https://hooks.example/x\", secretFrom: TRELLIS_HOOK_SECRET }\n";
    assert_eq!(codes_of(&notification("events: [proxy-nack]\n", hook)), []);
    let files = [
        SourceFile { path: "services.yaml".into(), text: SERVICES.into() },
        SourceFile { path: "n.yaml".into(), text: notification("events: [rollout-abortd]\n", SLACK) },
    ];
    let errors = load(&files, "r").unwrap_err();
    assert!(errors[0].message.contains("did you mean `rollout-aborted`"), "{errors:?}");
    for (target, why) in [
        (format!("{SLACK}{hook}"), "both"),
        ("webhook: { secretFrom: K }\n".to_string(), "no URL"),
        ("webhook: { url: ftp://x, secretFrom: K }\n".to_string(), "not http"),
    ] {
        assert!(
            codes_of(&notification("events: [proxy-nack]\n", &target)).contains(&Code::NotificationTarget),
            "{why}"
        );
    }
    assert!(codes_of(&notification("events: []\n", SLACK)).contains(&Code::NotificationEvent));
    assert!(
        codes_of(&notification("events: [proxy-nack]\nservices: [shopp]\n", SLACK)).contains(&Code::UnknownService)
    );
    // Slack's URL carries its token: there is no `url` to write it in.
    assert!(
        codes_of(&notification("events: [proxy-nack]\n", "slack: { url: https://hooks.slack.com/x }\n"))
            .contains(&Code::UnknownField)
    );
    // Set or not is the control plane's to say, where it judges the revision.
    let files = [SourceFile { path: "n.yaml".into(), text: notification("events: [proxy-nack]\n", hook) }];
    let unset = crate::load_in(&files, "r", &|name| name != "TRELLIS_HOOK_SECRET").unwrap_err();
    assert_eq!((unset[0].code, unset[0].line), (Code::SecretReference, 4), "{unset:?}");
    assert!(unset[0].message.contains("`TRELLIS_HOOK_SECRET`, which is not set"), "{unset:?}");
    let compiled = crate::load_in(&files, "r", &|_| true).unwrap();
    assert_eq!(compiled.notifications["alerts"].events, [crate::config::NotifyEvent::ProxyNack]);
}
