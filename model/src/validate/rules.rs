//! A Route's rules: matches, weights, shadowing, timeouts, retries, faults and mirroring.

use super::{Cx, Here};
use crate::config::Protocol;
use crate::diagnostic::Code;
use crate::policy::{HeaderMatch, Match, PathMatch, RateLimitSpec, RateSpec, RetrySpec, Rule, Sp, TimeoutsSpec};
use std::collections::BTreeSet;

const HOUR_MS: u64 = 3_600_000;

/// `service`: its name, and the protocol it speaks.
pub(super) fn check(
    cx: &mut Cx,
    here: &Here,
    (service, protocol): (&str, Protocol),
    versions: &BTreeSet<String>,
    rules: &[Sp<Rule>],
) {
    let grpc = protocol == Protocol::Grpc;
    for (i, rule) in rules.iter().enumerate() {
        let r = &rule.value;
        if protocol == Protocol::Tcp {
            http_only(cx, here, service, rule);
        }
        for m in &r.matches {
            check_match(cx, here, &m.value);
        }
        if let Some(earlier) = rules[..i].iter().position(|e| covers_rule(&e.value, r)) {
            let msg = format!(
                "rule {} never matches: rule {} (line {}) catches every request it would",
                i + 1,
                earlier + 1,
                here.at(&rules[earlier]).line
            );
            cx.push(Code::ShadowedRule, here, rule, msg);
        }
        if r.backends.is_empty() {
            cx.push(Code::NoBackends, here, rule, "rule has no backends".into());
            continue;
        }
        let mut sum = 0u64;
        for b in &r.backends {
            sum += u64::from(b.value.weight);
            cx.version(here, service, versions, &b.value.version);
        }
        if sum != 100 {
            cx.push(Code::WeightSum, here, &r.backends[0], format!("backend weights add up to {sum}, not 100"));
        }
        if let Some(t) = &r.timeouts {
            timeouts(cx, here, t);
        }
        if let Some(retries) = &r.retries {
            retry(cx, here, retries);
            let on = retries.on.iter().flatten();
            if let Some(c) = on.filter(|c| c.grpc_code().is_some()).find(|_| !grpc) {
                let word =
                    serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                let msg =
                    format!("retries on `{word}`, a gRPC status, but service `{service}` is not `protocol: grpc`");
                cx.push(Code::GrpcCondition, here, rule, msg);
            }
        }
        if let Some(fault) = &r.fault {
            if let Some(d) = &fault.delay {
                cx.range(here, &d.value.percent, 0.0, 100.0, "delay percent");
                cx.duration(here, &d.value.duration, 1, HOUR_MS, "delay");
            }
            if let Some(a) = &fault.abort {
                cx.range(here, &a.value.percent, 0.0, 100.0, "abort percent");
                cx.range(here, &a.value.status, 400, 599, "abort status");
            }
        }
        if let Some(mirror) = &r.mirror {
            cx.version(here, service, versions, &mirror.value.version);
            cx.range(here, &mirror.value.percent, 0.0, 100.0, "mirror percent");
        }
        if let Some(limit) = &r.rate_limit {
            rate_limit(cx, here, limit);
        }
    }
}

/// Rates within reason, something limited, and each named caller overridden once.
pub(super) fn rate_limit(cx: &mut Cx, here: &Here, limit: &Sp<RateLimitSpec>) {
    const MAX_RATE: u32 = 1_000_000;
    let l = &limit.value;
    if l.total.is_none() && l.per_caller.is_none() && l.overrides.is_empty() {
        let msg = "a rate limit with no `total`, `perCaller` or `overrides` limits nothing".to_string();
        cx.push(Code::RateLimit, here, limit, msg);
    }
    let rate = |cx: &mut Cx, per_second: &Sp<u32>, burst: &Option<Sp<u32>>, what: &str| {
        cx.range(here, per_second, 1, MAX_RATE, &format!("{what} requestsPerSecond"));
        if let Some(b) = burst {
            cx.range(here, b, 1, MAX_RATE, &format!("{what} burst"));
        }
    };
    for (r, what) in [(&l.total, "total"), (&l.per_caller, "perCaller")] {
        if let Some(Sp { value: RateSpec { requests_per_second, burst }, .. }) = r {
            rate(cx, requests_per_second, burst, what);
        }
    }
    let mut seen = BTreeSet::new();
    for o in &l.overrides {
        rate(cx, &o.value.requests_per_second, &o.value.burst, "override");
        if o.value.from.is_empty() {
            cx.push(Code::RateLimit, here, o, "an override names no caller in `from`".into());
        }
        for caller in &o.value.from {
            cx.caller(here, caller);
            if !seen.insert(caller.value.as_str()) {
                let msg = format!("`{}` is overridden twice; give each caller one rate", caller.value);
                cx.push(Code::RateLimit, here, caller, msg);
            }
        }
    }
}

/// A tcp service's rule splits connections: everything else in it needs HTTP.
fn http_only(cx: &mut Cx, here: &Here, service: &str, rule: &Sp<Rule>) {
    let r = &rule.value;
    let found = [
        (!r.matches.is_empty(), "matching requests"),
        (r.timeouts.is_some(), "a timeout"),
        (r.retries.is_some(), "retrying"),
        (r.fault.is_some(), "fault injection"),
        (r.mirror.is_some(), "mirroring"),
        (r.rate_limit.is_some(), "a rate limit"),
    ];
    for (_, what) in found.into_iter().filter(|(present, _)| *present) {
        cx.http_only(here, service, rule, what);
    }
}

fn check_match(cx: &mut Cx, here: &Here, m: &Match) {
    match &m.path {
        Some(PathMatch::Exact(p) | PathMatch::Prefix(p)) => cx.path(here, p),
        Some(PathMatch::Regex(p)) => cx.regex(here, p),
        None => {}
    }
    if let Some(method) = &m.method {
        cx.method(here, method);
    }
    for h in &m.headers {
        header(cx, here, h);
    }
}

pub(super) fn header(cx: &mut Cx, here: &Here, h: &Sp<HeaderMatch>) {
    let name = &h.value.name;
    let token = !name.value.is_empty()
        && name.value.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        cx.push(Code::InvalidHeader, here, name, format!("`{}` is not a header name", name.value));
    }
    if h.value.value.is_some() && h.value.regex.is_some() {
        cx.push(Code::InvalidHeader, here, h, format!("header `{}` has both `value` and `regex`", name.value));
    }
    if let Some(re) = &h.value.regex {
        cx.regex(here, re);
    }
}

pub(super) fn timeouts(cx: &mut Cx, here: &Here, t: &TimeoutsSpec) {
    let request = t.request.as_ref().and_then(|d| cx.duration(here, d, 1, HOUR_MS, "request timeout"));
    let per_try = t.per_try.as_ref().and_then(|d| cx.duration(here, d, 1, HOUR_MS, "per-try timeout"));
    if let (Some(request), Some(per_try), Some(at)) = (request, per_try, &t.per_try)
        && per_try > request
    {
        let msg = format!("per-try timeout {} is longer than the request timeout", at.value);
        cx.push(Code::TimeoutOrder, here, at, msg);
    }
}

pub(super) fn retry(cx: &mut Cx, here: &Here, r: &RetrySpec) {
    if let Some(a) = &r.attempts {
        cx.range(here, a, 0, 10, "retry attempts");
    }
    if let Some(b) = &r.budget {
        if let Some(ratio) = &b.ratio {
            cx.range(here, ratio, 0.0, 1.0, "retry budget ratio");
        }
        if let Some(min) = &b.min_per_second {
            cx.range(here, min, 0, 100_000, "retry budget minPerSecond");
        }
        if let Some(w) = &b.window {
            cx.duration(here, w, 1_000, 60_000, "retry budget window");
        }
    }
}

/// An earlier rule shadows a later one when every request the later one could match is
/// already matched by the earlier one.
fn covers_rule(earlier: &Rule, later: &Rule) -> bool {
    if earlier.matches.is_empty() {
        return true;
    }
    if later.matches.is_empty() {
        return false;
    }
    later.matches.iter().all(|l| earlier.matches.iter().any(|e| covers(&e.value, &l.value)))
}

/// `a` matches every request `b` matches. Regexes are compared only by text: deciding
/// inclusion between patterns is out of reach, and a false alarm would block a valid commit.
fn covers(a: &Match, b: &Match) -> bool {
    let path = match (&a.path, &b.path) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(PathMatch::Prefix(p)), Some(PathMatch::Prefix(q) | PathMatch::Exact(q))) => {
            let p = p.value.trim_end_matches('/');
            q.value.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }
        (Some(PathMatch::Exact(p)), Some(PathMatch::Exact(q))) => p.value == q.value,
        (Some(PathMatch::Regex(p)), Some(PathMatch::Regex(q))) => p.value == q.value,
        _ => false,
    };
    let method = match (&a.method, &b.method) {
        (None, _) => true,
        (Some(x), Some(y)) => x.value == y.value,
        (Some(_), None) => false,
    };
    let headers = a.headers.iter().all(|h| b.headers.iter().any(|k| same_header(&h.value, &k.value)));
    path && method && headers
}

fn same_header(a: &HeaderMatch, b: &HeaderMatch) -> bool {
    a.name.value.eq_ignore_ascii_case(&b.name.value)
        && a.value == b.value
        && a.regex.as_ref().map(|r| &r.value) == b.regex.as_ref().map(|r| &r.value)
}
