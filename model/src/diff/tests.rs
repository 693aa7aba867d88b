use super::*;
use crate::{SourceFile, load};

const BASE: &str = "kind: Service\nname: inventory\nversions: [v1, v2]\n---\nkind: Service\nname: payments\nversions: [v1]\n---\nkind: Service\nname: checkout\nversions: [v1]\n";

fn mesh(extra: &str) -> MeshConfig {
    let files = [SourceFile { path: "a.yaml".into(), text: format!("{BASE}---\n{extra}") }];
    load(&files, "r").unwrap_or_else(|e| panic!("{e:#?}"))
}

fn texts(a: &str, b: &str) -> Vec<String> {
    diff(&mesh(a), &mesh(b)).into_iter().map(|c| c.text).collect()
}

const ACCESS: &str = "kind: AccessPolicy\nname: pay\nservice: payments\nrules:\n  - from: [inventory]\n";

#[test]
fn weight_shifts_read_as_moves() {
    let route = |v1: u32, v2: u32| {
        format!(
            "kind: Route\nname: inv\nservice: inventory\nrules:\n  - matches: [{{ path: {{ prefix: /stock }} }}]\n    backends: [{{ version: v1, weight: {v1} }}, {{ version: v2, weight: {v2} }}]\n"
        )
    };
    assert_eq!(texts(&route(90, 10), &route(80, 20)), vec!["inventory /stock/*: 10% moves from v1 to v2"]);
    assert_eq!(texts(&route(80, 20), &route(90, 10)), vec!["inventory /stock/*: 10% moves from v2 to v1"]);
    assert!(texts(&route(80, 20), &route(80, 20)).is_empty());
}

#[test]
fn budgets_timeouts_and_faults_are_spelled_out() {
    let before = "kind: Route\nname: pay\nservice: payments\nrules:\n  - backends: [{ version: v1, weight: 100 }]\n";
    let after = "kind: Route\nname: pay\nservice: payments\nrules:\n  - backends: [{ version: v1, weight: 100 }]\n    timeouts: { request: 2s }\n    retries: { budget: { ratio: 0.1 } }\n    fault: { abort: { percent: 1, status: 503 } }\n";
    assert_eq!(
        texts(before, after),
        vec![
            "payments (all requests): request timeout 15s → 2s",
            "retry budget for payments (all requests): 20% → 10%",
            "payments (all requests): now aborts 1% of requests with 503",
        ]
    );
}

#[test]
fn access_changes_read_by_caller() {
    let with_checkout = ACCESS.replace("[inventory]", "[inventory, checkout]");
    assert_eq!(texts(ACCESS, &with_checkout), vec!["checkout may now call payments"]);
    assert_eq!(texts(&with_checkout, ACCESS), vec!["checkout may no longer call payments"]);
}

#[test]
fn services_mesh_settings_and_rollouts() {
    let t = texts(
        "kind: Mesh\nname: m\n",
        "kind: Mesh\nname: m\nmtls: permissive\n---\nkind: Service\nname: search\nversions: [v1]\n",
    );
    assert_eq!(t, vec!["mTLS between proxies: strict → permissive", "service search added with versions v1"]);
    let rollout = "kind: Rollout\nname: inv-v2\nservice: inventory\nstable: v1\ncanary: v2\nsteps: [{ weight: 10 }, { weight: 50, manual: true }]\nanalysis: { interval: 30s, successRate: 99, p99: 500ms, minRequests: 20 }\n";
    assert_eq!(
        texts("kind: Mesh\nname: m\n", &format!("kind: Mesh\nname: m\n---\n{rollout}")),
        vec!["rollout inv-v2 starts: inventory v1 → v2 (canary, steps 10%, 50%)"]
    );
}

#[test]
fn retrying_non_idempotent_requests_is_spelled_out() {
    let route = |on: bool| {
        format!(
            "kind: Route\nname: pay\nservice: payments\nrules:\n  - backends: [{{ version: v1, weight: 100 }}]\n    retries: {{ nonIdempotent: {on} }}\n"
        )
    };
    assert_eq!(
        texts(&route(false), &route(true)),
        vec!["payments (all requests): non-idempotent requests retried only when never sent → retried"]
    );
}

#[test]
fn rate_limits_read_as_rates() {
    let traffic = |limit: &str| format!("kind: TrafficPolicy\nname: pay\nservice: payments\n{limit}");
    let limited = traffic(
        "rateLimit:\n  total: { requestsPerSecond: 100 }\n  perCaller: { requestsPerSecond: 20, burst: 5 }\n  overrides: [{ from: [checkout], requestsPerSecond: 50 }]\n",
    );
    assert_eq!(
        texts(&traffic(""), &limited),
        vec![
            "payments: now rate-limited to 100/s in all, 20/s (bursts of 5) per caller, 50/s for checkout on each proxy"
        ]
    );
    assert_eq!(texts(&limited, &traffic("")), vec!["payments: rate limit removed"]);
    let rule = |limit: &str| {
        format!(
            "kind: Route\nname: pay\nservice: payments\nrules:\n  - backends: [{{ version: v1, weight: 100 }}]\n{limit}"
        )
    };
    let per_rule = rule("    rateLimit: { total: { requestsPerSecond: 7 } }\n");
    assert_eq!(
        texts(&rule(""), &per_rule),
        vec!["payments (all requests): now rate-limited to 7/s in all on each proxy"]
    );
    let config = mesh(&per_rule);
    let limit = config.services["payments"].rules[0].rate_limit.as_ref().expect("compiled");
    assert_eq!(limit.by, "Route/pay: (all requests)");
    assert_eq!(limit.total, Some(Rate { per_second: 7, burst: 7 }), "a second's worth of burst by default");
}
