//! Mesh, TrafficPolicy, AccessPolicy, Rollout and Notification.

use super::{Cx, rules};
use crate::config::RolloutStrategy;
use crate::diagnostic::Code;
use crate::policy::{AccessPolicy, Located, Mesh, Notification, OutlierSpec, Rollout, Sp, TrafficPolicy};
use std::collections::BTreeMap;

pub(super) fn meshes(cx: &mut Cx, meshes: &[Located<Mesh>]) {
    for (i, mesh) in meshes.iter().enumerate() {
        let (here, m) = (mesh.here(), &mesh.value);
        cx.name(&here, &m.name);
        if i > 0 {
            let first = &meshes[0];
            let msg = format!(
                "a second Mesh; the first is `{}` at {}:{}",
                first.value.name.value, first.file, first.pos.line
            );
            cx.push(Code::MultipleMeshes, &here, &m.name, msg);
        }
        if let Some(d) = &m.defaults {
            if let Some(t) = &d.timeouts {
                rules::timeouts(cx, &here, t);
            }
            if let Some(r) = &d.retries {
                rules::retry(cx, &here, r);
            }
            if let Some(o) = &d.outlier_detection {
                outlier(cx, &here, o);
            }
        }
    }
}

pub(super) fn traffic_policies(cx: &mut Cx, policies: &[Located<TrafficPolicy>]) {
    let mut taken = BTreeMap::new();
    for policy in policies {
        let (here, p) = (policy.here(), &policy.value);
        cx.name(&here, &p.name);
        cx.unique("TrafficPolicy", &here, &p.name);
        cx.service(&here, &p.service);
        cx.one_per_service("TrafficPolicy", &here, &p.service, &p.name, &mut taken);
        if let Some(o) = &p.outlier_detection {
            outlier(cx, &here, o);
        }
        if let Some(l) = &p.connection_limits {
            for (v, what) in [(&l.max_connections, "maxConnections"), (&l.max_pending_requests, "maxPendingRequests")] {
                if let Some(v) = v {
                    cx.range(&here, v, 1, 1_000_000, what);
                }
            }
        }
        if let Some(limit) = &p.rate_limit {
            rules::rate_limit(cx, &here, limit);
            cx.http_only(&here, &p.service.value, limit, "a rate limit");
        }
    }
}

fn outlier(cx: &mut Cx, here: &super::Here, o: &OutlierSpec) {
    for (v, what) in
        [(&o.consecutive_5xx, "consecutive5xx"), (&o.consecutive_gateway_errors, "consecutiveGatewayErrors")]
    {
        if let Some(v) = v {
            cx.range(here, v, 1, 1_000, what);
        }
    }
    if let Some(d) = &o.interval {
        cx.duration(here, d, 100, 3_600_000, "outlier interval");
    }
    if let Some(d) = &o.base_ejection_time {
        cx.duration(here, d, 100, 3_600_000, "base ejection time");
    }
    if let Some(p) = &o.max_ejected_percent {
        cx.range(here, p, 0, 100, "maxEjectedPercent");
    }
}

pub(super) fn access_policies(cx: &mut Cx, policies: &[Located<AccessPolicy>]) {
    for policy in policies {
        let (here, p) = (policy.here(), &policy.value);
        cx.name(&here, &p.name);
        cx.unique("AccessPolicy", &here, &p.name);
        cx.service(&here, &p.service);
        for rule in &p.rules {
            for caller in &rule.value.from {
                cx.caller(&here, caller);
            }
            if !rule.value.paths.is_empty() || !rule.value.methods.is_empty() {
                cx.http_only(&here, &p.service.value, rule, "an access rule by path or method");
            }
            for path in &rule.value.paths {
                cx.path(&here, path);
            }
            for method in &rule.value.methods {
                cx.method(&here, method);
            }
        }
    }
}

pub(super) fn rollouts(cx: &mut Cx, rollouts: &[Located<Rollout>]) {
    let mut taken = BTreeMap::new();
    for rollout in rollouts {
        let (here, r) = (rollout.here(), &rollout.value);
        cx.name(&here, &r.name);
        cx.unique("Rollout", &here, &r.name);
        cx.one_per_service("Rollout", &here, &r.service, &r.name, &mut taken);
        cx.http_only(&here, &r.service.value, &r.name, "a rollout's analysis");
        if let Some(versions) = cx.service(&here, &r.service) {
            cx.version(&here, &r.service.value, &versions, &r.stable);
            cx.version(&here, &r.service.value, &versions, &r.canary);
        }
        if r.stable.value == r.canary.value {
            let msg = format!("stable and canary are both `{}`", r.canary.value);
            cx.push(Code::InvalidRollout, &here, &r.canary, msg);
        }
        let needs_header = matches!(r.strategy, RolloutStrategy::Header | RolloutStrategy::BlueGreen);
        match &r.header {
            Some(h) => rules::header(cx, &here, h),
            None if needs_header => {
                let msg = "header and blue-green rollouts need a `header` naming the test traffic".to_string();
                cx.push(Code::InvalidRollout, &here, &r.name, msg);
            }
            None => {}
        }
        if r.steps.is_empty() {
            cx.push(Code::InvalidRollout, &here, &r.name, "a rollout needs at least one step".into());
        }
        let mut last = 0;
        for step in &r.steps {
            let s = &step.value;
            if cx.range(&here, &s.weight, 1, 100, "step weight") && s.weight.value <= last {
                let msg = format!("step weight {} does not increase on the previous {last}", s.weight.value);
                cx.push(Code::InvalidRollout, &here, &s.weight, msg);
            }
            last = last.max(s.weight.value);
            if let Some(p) = &s.pause {
                cx.duration(&here, p, 1_000, 7 * 24 * 3_600_000, "pause");
                if s.manual {
                    cx.push(
                        Code::InvalidRollout,
                        &here,
                        step,
                        "a step pauses or waits for a manual gate, not both".into(),
                    );
                }
            }
        }
        let a = &r.analysis;
        cx.duration(&here, &a.interval, 1_000, 3_600_000, "analysis interval");
        cx.duration(&here, &a.p99, 1, 600_000, "p99 threshold");
        cx.range(&here, &a.success_rate, 0.0, 100.0, "success rate");
        cx.range(&here, &a.min_requests, 1, 1_000_000, "minRequests");
        for (v, what) in [(&a.max_failures, "maxFailures"), (&a.max_inconclusive, "maxInconclusive")] {
            if let Some(v) = v {
                cx.range(&here, v, 1, 100, what);
            }
        }
    }
}

pub(super) fn notifications(cx: &mut Cx, notifications: &[Located<Notification>]) {
    use crate::config::NotifyEvent;
    let known: Vec<&str> = NotifyEvent::ALL.iter().map(|e| e.name()).collect();
    for located in notifications {
        let (here, n) = (located.here(), &located.value);
        cx.name(&here, &n.name);
        cx.unique("Notification", &here, &n.name);
        if n.events.is_empty() {
            let msg = format!("notification `{}` wants no events", n.name.value);
            cx.push(Code::NotificationEvent, &here, &n.name, msg);
        }
        for e in &n.events {
            if NotifyEvent::parse(&e.value).is_none() {
                let msg = format!("unknown event `{}`{}", e.value, crate::parse::suggest(&e.value, &known));
                cx.push(Code::NotificationEvent, &here, e, msg);
            }
        }
        for s in &n.services {
            cx.service(&here, s);
        }
        match (&n.webhook, &n.slack) {
            (Some(_), Some(slack)) => {
                let msg = format!("notification `{}` has both `webhook` and `slack`: give it one", n.name.value);
                cx.push(Code::NotificationTarget, &here, slack, msg);
            }
            (None, None) => {
                let msg = format!("notification `{}` has no target: give it `webhook` or `slack`", n.name.value);
                cx.push(Code::NotificationTarget, &here, &n.name, msg);
            }
            (Some(w), None) => {
                let (url, from) = (&w.value.url, &w.value.url_from);
                if url.is_some() == from.is_some() {
                    let msg = "a webhook needs exactly one of `url` and `urlFrom`".to_string();
                    cx.push(Code::NotificationTarget, &here, w, msg);
                }
                if let Some(u) = url
                    && !(u.value.starts_with("https://") || u.value.starts_with("http://"))
                {
                    let msg = format!("`{}` is not an http(s):// URL", u.value);
                    cx.push(Code::NotificationTarget, &here, u, msg);
                }
            }
            (None, Some(_)) => {}
        }
        for name in secret_names(n) {
            let v = &name.value;
            let ok = v.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
                && v.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                let msg = format!("`{v}` is not the name of an environment variable (A-Z, 0-9 and _)");
                cx.push(Code::SecretReference, &here, name, msg);
            }
        }
    }
}

/// The environment variables a notification takes its secrets from.
pub(super) fn secret_names(n: &Notification) -> Vec<&Sp<String>> {
    let mut names = Vec::new();
    if let Some(w) = &n.webhook {
        names.extend(w.value.url_from.iter());
        names.push(&w.value.secret_from);
    }
    if let Some(s) = &n.slack {
        names.push(&s.value.url_from);
    }
    names
}
