//! Policy into configuration, resolving every default: built-in ([`crate::defaults`]), then
//! the Mesh's `defaults`, then the Route rule or TrafficPolicy. Only called on a policy that
//! passed validation, so values parse.

use crate::config::*;
use crate::defaults;
use crate::duration::parse_ms;
use crate::policy::{self, HeaderMatch, PathMatch, Policy, Sp};

pub fn compile(policy: &Policy, revision: &str) -> MeshConfig {
    let mesh = policy.meshes.first().map(|m| &m.value);
    let mesh_defaults = mesh.and_then(|m| m.defaults.as_ref());
    let base_timeouts = timeouts(defaults::timeouts(), mesh_defaults.and_then(|d| d.timeouts.as_ref()));
    let base_retry = retry(defaults::retry(), mesh_defaults.and_then(|d| d.retries.as_ref()));
    let base_traffic = TrafficConfig {
        load_balancer: mesh_defaults.and_then(|d| d.load_balancer).unwrap_or(defaults::LOAD_BALANCER),
        outlier: outlier(defaults::outlier(), mesh_defaults.and_then(|d| d.outlier_detection.as_ref())),
        limits: defaults::connection_limits(),
        rate_limit: None,
    };
    let settings = MeshSettings {
        mtls: mesh.and_then(|m| m.mtls).unwrap_or(defaults::MTLS),
        default_access: mesh.and_then(|m| m.access).unwrap_or(defaults::ACCESS),
    };

    let mut out = MeshConfig { revision: revision.to_string(), mesh: settings.clone(), ..Default::default() };
    for svc in &policy.services {
        let s = &svc.value;
        let name = s.name.value.clone();
        let versions: Vec<String> = s.versions.iter().map(|v| v.value.clone()).collect();
        let rules = match policy.routes.iter().find(|r| r.value.service.value == name) {
            Some(route) => route
                .value
                .rules
                .iter()
                .map(|r| rule(&route.value.name.value, &r.value, &base_timeouts, &base_retry))
                .collect(),
            None => vec![RuleConfig {
                timeouts: base_timeouts.clone(),
                retry: base_retry.clone(),
                ..RuleConfig::catch_all(even_split(&versions))
            }],
        };
        let traffic = match policy.traffic_policies.iter().find(|p| p.value.service.value == name) {
            Some(p) => traffic(&base_traffic, &p.value),
            None => base_traffic.clone(),
        };
        let access_policies: Vec<_> = policy.access_policies.iter().filter(|p| p.value.service.value == name).collect();
        let access_rules: Vec<AccessRuleConfig> = access_policies
            .iter()
            .flat_map(|p| p.value.rules.iter())
            .map(|r| AccessRuleConfig {
                from: r.value.from.iter().map(|s| s.value.clone()).collect(),
                paths: r.value.paths.iter().map(|s| s.value.clone()).collect(),
                methods: r.value.methods.iter().map(|s| s.value.clone()).collect(),
            })
            .collect();
        let service = ServiceConfig {
            name: name.clone(),
            port: s.port.as_ref().map(|p| p.value),
            protocol: s.protocol,
            versions,
            rules,
            traffic,
            access: AccessConfig {
                mode: settings.default_access,
                rules: access_rules,
                policies: access_policies.iter().map(|p| p.value.name.value.clone()).collect(),
            },
        };
        out.services.insert(name, service);
    }
    for r in &policy.rollouts {
        let rollout = rollout(&r.value);
        out.rollouts.insert(rollout.name.clone(), rollout);
    }
    for n in &policy.notifications {
        let n = notification(&n.value);
        out.notifications.insert(n.name.clone(), n);
    }
    out
}

/// Validated: exactly one target, each event known.
fn notification(n: &crate::policy::Notification) -> crate::config::NotificationConfig {
    use crate::config::{NotifyEvent, NotifyTarget};
    let value = |s: &Option<Sp<String>>| s.as_ref().map(|s| s.value.clone());
    let target = match (&n.webhook, &n.slack) {
        (Some(w), _) => NotifyTarget::Webhook {
            url: value(&w.value.url),
            url_from: value(&w.value.url_from),
            secret_from: w.value.secret_from.value.clone(),
        },
        (None, Some(s)) => NotifyTarget::Slack { url_from: s.value.url_from.value.clone() },
        (None, None) => NotifyTarget::Slack { url_from: String::new() },
    };
    let mut events: Vec<NotifyEvent> = n.events.iter().filter_map(|e| NotifyEvent::parse(&e.value)).collect();
    events.sort();
    events.dedup();
    crate::config::NotificationConfig {
        name: n.name.value.clone(),
        events,
        services: n.services.iter().map(|s| s.value.clone()).collect(),
        target,
    }
}

fn ms(d: &Sp<String>) -> u64 {
    parse_ms(&d.value).unwrap_or_default()
}

fn timeouts(base: Timeouts, spec: Option<&policy::TimeoutsSpec>) -> Timeouts {
    let Some(spec) = spec else { return base };
    Timeouts {
        request_ms: spec.request.as_ref().map_or(base.request_ms, ms),
        per_try_ms: spec.per_try.as_ref().map(ms).or(base.per_try_ms),
    }
}

fn retry(base: RetryConfig, spec: Option<&policy::RetrySpec>) -> RetryConfig {
    let Some(spec) = spec else { return base };
    let b = spec.budget.as_ref();
    RetryConfig {
        attempts: spec.attempts.as_ref().map_or(base.attempts, |a| a.value),
        on: spec.on.clone().unwrap_or(base.on),
        non_idempotent: spec.non_idempotent.as_ref().map_or(base.non_idempotent, |v| v.value),
        budget: RetryBudget {
            ratio: b.and_then(|b| b.ratio.as_ref()).map_or(base.budget.ratio, |r| r.value),
            min_per_second: b.and_then(|b| b.min_per_second.as_ref()).map_or(base.budget.min_per_second, |m| m.value),
            window_ms: b.and_then(|b| b.window.as_ref()).map_or(base.budget.window_ms, ms),
        },
    }
}

fn outlier(base: OutlierConfig, spec: Option<&policy::OutlierSpec>) -> OutlierConfig {
    let Some(o) = spec else { return base };
    OutlierConfig {
        enabled: o.enabled.unwrap_or(base.enabled),
        consecutive_5xx: o.consecutive_5xx.as_ref().map_or(base.consecutive_5xx, |v| v.value),
        consecutive_gateway_errors: o
            .consecutive_gateway_errors
            .as_ref()
            .map_or(base.consecutive_gateway_errors, |v| v.value),
        interval_ms: o.interval.as_ref().map_or(base.interval_ms, ms),
        base_ejection_ms: o.base_ejection_time.as_ref().map_or(base.base_ejection_ms, ms),
        max_ejected_percent: o.max_ejected_percent.as_ref().map_or(base.max_ejected_percent, |v| v.value),
    }
}

fn traffic(base: &TrafficConfig, p: &policy::TrafficPolicy) -> TrafficConfig {
    let limits = p.connection_limits.as_ref();
    let pick = |f: fn(&policy::LimitsSpec) -> &Option<Sp<u32>>, d: u32| {
        limits.and_then(|l| f(l).as_ref()).map_or(d, |v| v.value)
    };
    TrafficConfig {
        load_balancer: p.load_balancer.unwrap_or(base.load_balancer),
        outlier: outlier(base.outlier.clone(), p.outlier_detection.as_ref()),
        limits: ConnectionLimits {
            max_connections: pick(|l| &l.max_connections, base.limits.max_connections),
            max_pending_requests: pick(|l| &l.max_pending_requests, base.limits.max_pending_requests),
            max_requests_per_connection: pick(
                |l| &l.max_requests_per_connection,
                base.limits.max_requests_per_connection,
            ),
        },
        rate_limit: p.rate_limit.as_ref().map(|l| rate_limit(format!("TrafficPolicy/{}", p.name.value), &l.value)),
    }
}

fn rate_limit(by: String, l: &policy::RateLimitSpec) -> RateLimitConfig {
    // One second's worth at once by default, as Linkerd's limits allow.
    let rate = |per_second: &Sp<u32>, burst: &Option<Sp<u32>>| Rate {
        per_second: per_second.value,
        burst: burst.as_ref().map_or(per_second.value, |b| b.value),
    };
    RateLimitConfig {
        by,
        total: l.total.as_ref().map(|r| rate(&r.value.requests_per_second, &r.value.burst)),
        per_caller: l.per_caller.as_ref().map(|r| rate(&r.value.requests_per_second, &r.value.burst)),
        overrides: l
            .overrides
            .iter()
            .map(|o| RateOverride {
                callers: o.value.from.iter().map(|c| c.value.clone()).collect(),
                rate: rate(&o.value.requests_per_second, &o.value.burst),
            })
            .collect(),
    }
}

fn rule(route: &str, r: &policy::Rule, base_timeouts: &Timeouts, base_retry: &RetryConfig) -> RuleConfig {
    let mut out = RuleConfig {
        matches: r.matches.iter().map(|m| match_config(&m.value)).collect(),
        backends: r
            .backends
            .iter()
            .map(|b| Backend { version: b.value.version.value.clone(), weight: b.value.weight })
            .collect(),
        timeouts: timeouts(base_timeouts.clone(), r.timeouts.as_ref()),
        retry: retry(base_retry.clone(), r.retries.as_ref()),
        fault: r.fault.as_ref().map(|f| FaultConfig {
            delay: f
                .delay
                .as_ref()
                .map(|d| DelayConfig { percent: d.value.percent.value, duration_ms: ms(&d.value.duration) }),
            abort: f
                .abort
                .as_ref()
                .map(|a| AbortConfig { percent: a.value.percent.value, status: a.value.status.value }),
        }),
        mirror: r
            .mirror
            .as_ref()
            .map(|m| MirrorConfig { version: m.value.version.value.clone(), percent: m.value.percent.value }),
        rate_limit: None,
    };
    // Named by what the rule matches, as the Traffic page and `trellis diff` name rules.
    let by = format!("Route/{route}: {}", crate::diff::describe(&out));
    out.rate_limit = r.rate_limit.as_ref().map(|l| rate_limit(by, &l.value));
    out
}

fn match_config(m: &policy::Match) -> MatchConfig {
    MatchConfig {
        path: m.path.as_ref().map(|p| match p {
            PathMatch::Exact(s) => PathConfig::Exact(s.value.clone()),
            PathMatch::Prefix(s) => PathConfig::Prefix(s.value.clone()),
            PathMatch::Regex(s) => PathConfig::Regex(s.value.clone()),
        }),
        method: m.method.as_ref().map(|m| m.value.clone()),
        headers: m.headers.iter().map(|h| header(&h.value)).collect(),
    }
}

fn header(h: &HeaderMatch) -> HeaderConfig {
    HeaderConfig {
        name: h.name.value.to_ascii_lowercase(),
        value: match (&h.value, &h.regex) {
            (Some(v), _) => HeaderValueMatch::Exact(v.clone()),
            (None, Some(re)) => HeaderValueMatch::Regex(re.value.clone()),
            (None, None) => HeaderValueMatch::Present,
        },
    }
}

fn rollout(r: &policy::Rollout) -> RolloutConfig {
    let a = &r.analysis;
    RolloutConfig {
        name: r.name.value.clone(),
        service: r.service.value.clone(),
        stable: r.stable.value.clone(),
        canary: r.canary.value.clone(),
        strategy: r.strategy,
        header: r.header.as_ref().map(|h| header(&h.value)),
        steps: r
            .steps
            .iter()
            .map(|s| StepConfig {
                weight: s.value.weight.value,
                pause_ms: s.value.pause.as_ref().map(ms),
                manual: s.value.manual,
            })
            .collect(),
        analysis: AnalysisConfig {
            interval_ms: ms(&a.interval),
            min_success_rate: a.success_rate.value,
            max_p99_ms: ms(&a.p99),
            min_requests: a.min_requests.value,
            // Flagger's defaults: a few failures abort; a few empty intervals pause.
            max_failures: a.max_failures.as_ref().map_or(2, |v| v.value),
            max_inconclusive: a.max_inconclusive.as_ref().map_or(3, |v| v.value),
        },
        status: r.status,
    }
}

/// Without a Route, every version of a service gets an equal share, as in Linkerd where a
/// service without an HTTPRoute balances over all its endpoints.
fn even_split(versions: &[String]) -> Vec<Backend> {
    let n = versions.len().max(1) as u32;
    versions
        .iter()
        .enumerate()
        // The first versions absorb the remainder so the weights add up to 100.
        .map(|(i, v)| Backend { version: v.clone(), weight: 100 / n + u32::from((i as u32) < 100 % n) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_adds_up_to_100() {
        let v: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let weights: Vec<u32> = even_split(&v).iter().map(|b| b.weight).collect();
        assert_eq!(weights, vec![34, 33, 33]);
    }
}
