//! What a change does to traffic, in plain words: what a pull-request reviewer reads instead
//! of YAML. Compares two compiled configurations, so defaults and inheritance are accounted for.

use crate::config::*;
use crate::duration::format_ms;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Change {
    /// The service affected; `None` for mesh-wide changes.
    pub service: Option<String>,
    pub kind: ChangeKind,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    Service,
    Traffic,
    Resilience,
    Access,
    Mesh,
    Rollout,
}

pub fn diff(old: &MeshConfig, new: &MeshConfig) -> Vec<Change> {
    let mut out = Changes::default();
    mesh(&mut out, &old.mesh, &new.mesh);
    let names: BTreeSet<&String> = old.services.keys().chain(new.services.keys()).collect();
    for name in names {
        match (old.services.get(name), new.services.get(name)) {
            (None, Some(s)) => out.push(
                Some(name),
                ChangeKind::Service,
                format!("service {name} added with versions {}", s.versions.join(", ")),
            ),
            (Some(_), None) => out.push(Some(name), ChangeKind::Service, format!("service {name} removed")),
            (Some(a), Some(b)) => service(&mut out, a, b),
            (None, None) => {}
        }
    }
    access(&mut out, old, new);
    rollouts(&mut out, &old.rollouts, &new.rollouts);
    out.0
}

#[derive(Default)]
struct Changes(Vec<Change>);

impl Changes {
    fn push(&mut self, service: Option<&String>, kind: ChangeKind, text: String) {
        self.0.push(Change { service: service.cloned(), kind, text });
    }
}

fn mesh(out: &mut Changes, a: &MeshSettings, b: &MeshSettings) {
    if a.mtls != b.mtls {
        out.push(None, ChangeKind::Mesh, format!("mTLS between proxies: {} → {}", word(&a.mtls), word(&b.mtls)));
    }
    if a.default_access != b.default_access {
        out.push(
            None,
            ChangeKind::Mesh,
            format!("services without an access policy: {} → {}", word(&a.default_access), word(&b.default_access)),
        );
    }
}

fn service(out: &mut Changes, a: &ServiceConfig, b: &ServiceConfig) {
    let name = &b.name;
    let svc = Some(name);
    for v in b.versions.iter().filter(|v| !a.versions.contains(v)) {
        out.push(svc, ChangeKind::Service, format!("{name}: version {v} added"));
    }
    for v in a.versions.iter().filter(|v| !b.versions.contains(v)) {
        out.push(svc, ChangeKind::Service, format!("{name}: version {v} removed"));
    }
    if a.protocol != b.protocol {
        out.push(svc, ChangeKind::Service, format!("{name}: protocol {} → {}", word(&a.protocol), word(&b.protocol)));
    }
    let old_rules: BTreeMap<String, &RuleConfig> = a.rules.iter().map(|r| (describe(r), r)).collect();
    let new_rules: BTreeMap<String, &RuleConfig> = b.rules.iter().map(|r| (describe(r), r)).collect();
    for (label, r) in &new_rules {
        match old_rules.get(label) {
            None => {
                out.push(svc, ChangeKind::Traffic, format!("{name} {label}: new rule sends {}", shares(&r.backends)))
            }
            Some(old) => rule(out, name, label, old, r),
        }
    }
    for label in old_rules.keys().filter(|l| !new_rules.contains_key(*l)) {
        out.push(svc, ChangeKind::Traffic, format!("{name} {label}: rule removed"));
    }
    if a.rules.len() == b.rules.len() && old_rules.len() == new_rules.len() {
        let (x, y): (Vec<String>, Vec<String>) =
            (a.rules.iter().map(describe).collect(), b.rules.iter().map(describe).collect());
        if x != y && x.iter().collect::<BTreeSet<_>>() == y.iter().collect::<BTreeSet<_>>() {
            out.push(svc, ChangeKind::Traffic, format!("{name}: rules reordered ({})", y.join(", ")));
        }
    }
    traffic(out, name, &a.traffic, &b.traffic);
}

fn rule(out: &mut Changes, name: &String, label: &str, a: &RuleConfig, b: &RuleConfig) {
    let svc = Some(name);
    if let Some(text) = weights(&a.backends, &b.backends) {
        out.push(svc, ChangeKind::Traffic, format!("{name} {label}: {text}"));
    }
    if a.timeouts.request_ms != b.timeouts.request_ms {
        let (x, y) = (format_ms(a.timeouts.request_ms), format_ms(b.timeouts.request_ms));
        out.push(svc, ChangeKind::Resilience, format!("{name} {label}: request timeout {x} → {y}"));
    }
    if a.timeouts.per_try_ms != b.timeouts.per_try_ms {
        let show = |v: Option<u64>| v.map_or("none".to_string(), format_ms);
        let text = format!(
            "{name} {label}: per-try timeout {} → {}",
            show(a.timeouts.per_try_ms),
            show(b.timeouts.per_try_ms)
        );
        out.push(svc, ChangeKind::Resilience, text);
    }
    let (ra, rb) = (&a.retry, &b.retry);
    if ra.attempts != rb.attempts {
        out.push(svc, ChangeKind::Resilience, format!("{name} {label}: retries {} → {}", ra.attempts, rb.attempts));
    }
    if ra.on != rb.on {
        let list = |on: &[RetryOn]| on.iter().map(word).collect::<Vec<_>>().join(", ");
        out.push(
            svc,
            ChangeKind::Resilience,
            format!("{name} {label}: retries on {} → {}", list(&ra.on), list(&rb.on)),
        );
    }
    if ra.non_idempotent != rb.non_idempotent {
        let say = |on: bool| if on { "retried" } else { "retried only when never sent" };
        let text =
            format!("{name} {label}: non-idempotent requests {} → {}", say(ra.non_idempotent), say(rb.non_idempotent));
        out.push(svc, ChangeKind::Resilience, text);
    }
    if ra.budget.ratio != rb.budget.ratio {
        let (x, y) = (percent(ra.budget.ratio * 100.0), percent(rb.budget.ratio * 100.0));
        out.push(svc, ChangeKind::Resilience, format!("retry budget for {name} {label}: {x} → {y}"));
    }
    if ra.budget.min_per_second != rb.budget.min_per_second || ra.budget.window_ms != rb.budget.window_ms {
        let text = format!(
            "retry budget for {name} {label}: at least {}/s over {} → {}/s over {}",
            ra.budget.min_per_second,
            format_ms(ra.budget.window_ms),
            rb.budget.min_per_second,
            format_ms(rb.budget.window_ms)
        );
        out.push(svc, ChangeKind::Resilience, text);
    }
    if a.fault != b.fault {
        out.push(svc, ChangeKind::Resilience, format!("{name} {label}: {}", fault(b.fault.as_ref())));
    }
    if a.mirror != b.mirror {
        let text = match &b.mirror {
            Some(m) => format!("{name} {label}: mirrors {} of requests to {}", percent(m.percent), m.version),
            None => format!("{name} {label}: mirroring stopped"),
        };
        out.push(svc, ChangeKind::Traffic, text);
    }
    if a.rate_limit != b.rate_limit {
        out.push(svc, ChangeKind::Resilience, format!("{name} {label}: {}", rate_limit(b.rate_limit.as_ref())));
    }
}

fn rate_limit(limit: Option<&RateLimitConfig>) -> String {
    match limit {
        Some(l) => format!("now rate-limited to {} on each proxy", rates(l)),
        None => "rate limit removed".into(),
    }
}

/// "100/s in all, 20/s per caller, 50/s for storefront".
pub fn rates(l: &RateLimitConfig) -> String {
    let rate = |r: &Rate| {
        let burst = if r.burst == r.per_second { String::new() } else { format!(" (bursts of {})", r.burst) };
        format!("{}/s{burst}", r.per_second)
    };
    let mut parts = Vec::new();
    if let Some(t) = &l.total {
        parts.push(format!("{} in all", rate(t)));
    }
    if let Some(c) = &l.per_caller {
        parts.push(format!("{} per caller", rate(c)));
    }
    for o in &l.overrides {
        parts.push(format!("{} for {}", rate(&o.rate), o.callers.join(", ")));
    }
    parts.join(", ")
}

/// "10% moves from v1 to v2" when one version gives to one other; the full before/after
/// otherwise.
fn weights(a: &[Backend], b: &[Backend]) -> Option<String> {
    let map = |bs: &[Backend]| bs.iter().map(|b| (b.version.clone(), i64::from(b.weight))).collect::<BTreeMap<_, _>>();
    let (x, y) = (map(a), map(b));
    let versions: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    let deltas: Vec<(&String, i64)> = versions
        .into_iter()
        .map(|v| (v, y.get(v).copied().unwrap_or(0) - x.get(v).copied().unwrap_or(0)))
        .filter(|(_, d)| *d != 0)
        .collect();
    match deltas.as_slice() {
        [] => None,
        [(from, d1), (to, d2)] | [(to, d2), (from, d1)] if *d1 < 0 && *d2 == -*d1 => {
            Some(format!("{d2}% moves from {from} to {to}"))
        }
        _ => Some(format!("{} → {}", shares(a), shares(b))),
    }
}

fn shares(backends: &[Backend]) -> String {
    backends.iter().map(|b| format!("{}% to {}", b.weight, b.version)).collect::<Vec<_>>().join(", ")
}

/// A rule by what it matches: `/stock`, `GET /api/*`, `(all requests)`.
pub fn describe(rule: &RuleConfig) -> String {
    if rule.matches.is_empty() {
        return "(all requests)".into();
    }
    let one = |m: &MatchConfig| {
        let mut parts = Vec::new();
        if let Some(method) = &m.method {
            parts.push(method.clone());
        }
        parts.push(match &m.path {
            None => "any path".into(),
            Some(PathConfig::Exact(p)) => p.clone(),
            Some(PathConfig::Prefix(p)) if p == "/" => "/*".into(),
            Some(PathConfig::Prefix(p)) => format!("{}/*", p.trim_end_matches('/')),
            Some(PathConfig::Regex(p)) => format!("~{p}"),
        });
        for h in &m.headers {
            parts.push(match &h.value {
                HeaderValueMatch::Exact(v) => format!("[{}: {v}]", h.name),
                HeaderValueMatch::Regex(v) => format!("[{} ~ {v}]", h.name),
                HeaderValueMatch::Present => format!("[{}]", h.name),
            });
        }
        parts.join(" ")
    };
    rule.matches.iter().map(one).collect::<Vec<_>>().join(" or ")
}

fn fault(f: Option<&FaultConfig>) -> String {
    let Some(f) = f else { return "fault injection removed".into() };
    let mut parts = Vec::new();
    if let Some(d) = &f.delay {
        parts.push(format!("delays {} of requests by {}", percent(d.percent), format_ms(d.duration_ms)));
    }
    if let Some(a) = &f.abort {
        parts.push(format!("aborts {} of requests with {}", percent(a.percent), a.status));
    }
    format!("now {}", parts.join(" and "))
}

fn traffic(out: &mut Changes, name: &String, a: &TrafficConfig, b: &TrafficConfig) {
    let svc = Some(name);
    if a.load_balancer != b.load_balancer {
        let text = format!("load balancer for {name}: {} → {}", word(&a.load_balancer), word(&b.load_balancer));
        out.push(svc, ChangeKind::Resilience, text);
    }
    let (x, y) = (&a.outlier, &b.outlier);
    if x.enabled != y.enabled {
        let state = if y.enabled { "on" } else { "off" };
        out.push(svc, ChangeKind::Resilience, format!("outlier ejection for {name} turned {state}"));
    } else if x != y {
        let text = format!(
            "outlier ejection for {name}: after {} → {} consecutive 5xx, for {} → {} × times ejected, at most {}% → {}% of endpoints",
            x.consecutive_5xx,
            y.consecutive_5xx,
            format_ms(x.base_ejection_ms),
            format_ms(y.base_ejection_ms),
            x.max_ejected_percent,
            y.max_ejected_percent
        );
        out.push(svc, ChangeKind::Resilience, text);
    }
    if a.limits != b.limits {
        let text = format!(
            "connection limits for {name}: {} → {} connections, {} → {} pending requests",
            a.limits.max_connections,
            b.limits.max_connections,
            a.limits.max_pending_requests,
            b.limits.max_pending_requests
        );
        out.push(svc, ChangeKind::Resilience, text);
    }
    if a.rate_limit != b.rate_limit {
        out.push(svc, ChangeKind::Resilience, format!("{name}: {}", rate_limit(b.rate_limit.as_ref())));
    }
}

/// Who may call whom, by caller, so the sentence reads "checkout may now call payments".
fn access(out: &mut Changes, old: &MeshConfig, new: &MeshConfig) {
    let all: Vec<&String> = new.services.keys().collect();
    let callers = |m: &MeshConfig, svc: &ServiceConfig| -> BTreeSet<String> {
        if svc.access.rules.is_empty() {
            return match svc.access.mode {
                AccessMode::Deny => BTreeSet::new(),
                AccessMode::AllowAll | AccessMode::Authenticated => m.services.keys().cloned().collect(),
            };
        }
        svc.access.rules.iter().flat_map(|r| r.from.iter().cloned()).collect()
    };
    for name in &all {
        let (Some(a), Some(b)) = (old.services.get(*name), new.services.get(*name)) else { continue };
        let (before, after) = (callers(old, a), callers(new, b));
        for c in after.difference(&before).filter(|c| old.services.contains_key(*c)) {
            out.push(Some(name), ChangeKind::Access, format!("{c} may now call {name}"));
        }
        for c in before.difference(&after).filter(|c| new.services.contains_key(*c)) {
            out.push(Some(name), ChangeKind::Access, format!("{c} may no longer call {name}"));
        }
        let narrowed = |s: &ServiceConfig| s.access.rules.iter().any(|r| !r.paths.is_empty() || !r.methods.is_empty());
        if before == after && a.access.rules != b.access.rules && (narrowed(a) || narrowed(b)) {
            out.push(Some(name), ChangeKind::Access, format!("{name}: allowed paths or methods changed"));
        }
    }
}

fn rollouts(out: &mut Changes, a: &BTreeMap<String, RolloutConfig>, b: &BTreeMap<String, RolloutConfig>) {
    for (name, r) in b {
        let steps = r.steps.iter().map(|s| format!("{}%", s.weight)).collect::<Vec<_>>().join(", ");
        match a.get(name) {
            None => out.push(
                Some(&r.service),
                ChangeKind::Rollout,
                format!(
                    "rollout {name} starts: {} {} → {} ({}, steps {steps})",
                    r.service,
                    r.stable,
                    r.canary,
                    word(&r.strategy)
                ),
            ),
            Some(old) if old.status != r.status && r.status.is_some() => {
                let to = if r.status == Some(RolloutOutcome::Completed) { &r.canary } else { &r.stable };
                let how = word(&r.status);
                out.push(Some(&r.service), ChangeKind::Rollout, format!("rollout {name} {how}: all traffic to {to}"))
            }
            Some(old) if old != r => {
                out.push(Some(&r.service), ChangeKind::Rollout, format!("rollout {name} changed: steps {steps}"))
            }
            Some(_) => {}
        }
    }
    for (name, r) in a.iter().filter(|(n, _)| !b.contains_key(*n)) {
        out.push(Some(&r.service), ChangeKind::Rollout, format!("rollout {name} removed"));
    }
}

fn percent(p: f64) -> String {
    let rounded = (p * 100.0).round() / 100.0;
    format!("{rounded}%")
}

/// The policy spelling of an enum value (`round-robin`), for sentences.
fn word<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
