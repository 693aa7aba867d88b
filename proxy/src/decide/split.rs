//! Pure routing decisions: which rule applies, which version gets the request, which endpoint.

use crate::applied::Applied;
use trellis_model::config::{HeaderValueMatch, MatchConfig, PathConfig};
use trellis_model::{Backend, RuleConfig, ServiceConfig};

/// What routing looks at in a request.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// The first rule with a matching condition (or none at all), as Gateway API orders rules,
/// with its index (which names it in metrics).
pub fn select_rule<'a>(
    applied: &Applied,
    service: &'a ServiceConfig,
    req: &RequestFacts,
) -> Option<(usize, &'a RuleConfig)> {
    service
        .rules
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches.is_empty() || r.matches.iter().any(|m| matches(applied, m, req)))
}

/// A prefix matches whole segments: `/api` matches `/api` and `/api/x`, not `/apis`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Every condition of a match must hold.
fn matches(applied: &Applied, m: &MatchConfig, req: &RequestFacts) -> bool {
    let path = req.path;
    let path_ok = match &m.path {
        None => true,
        Some(PathConfig::Exact(p)) => path == p,
        Some(PathConfig::Prefix(p)) => prefix_matches(p, path),
        Some(PathConfig::Regex(p)) => applied.is_match(p, path),
    };
    let headers_ok = m.headers.iter().all(|h| {
        let mut values = req.headers.get_all(h.name.as_str()).iter().filter_map(|v| v.to_str().ok());
        match &h.value {
            HeaderValueMatch::Present => values.next().is_some(),
            HeaderValueMatch::Exact(want) => values.any(|v| v == want),
            HeaderValueMatch::Regex(p) => values.any(|v| applied.is_match(p, v)),
        }
    });
    path_ok && headers_ok && m.method.as_deref().is_none_or(|want| want.eq_ignore_ascii_case(req.method))
}

/// Picks a backend by weight. `roll` is uniform in `0..total weight`, drawn by the caller so
/// the choice is a plain function of its inputs.
pub fn pick_backend(backends: &[Backend], roll: u32) -> Option<(usize, &Backend)> {
    let mut acc = 0u32;
    backends.iter().enumerate().filter(|(_, b)| b.weight > 0).find(|(_, b)| {
        acc += b.weight;
        roll < acc
    })
}

pub fn total_weight(backends: &[Backend]) -> u32 {
    backends.iter().map(|b| b.weight).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_model::ProxyConfig;
    use trellis_model::config::HeaderConfig;

    fn backends(w: &[(&str, u32)]) -> Vec<Backend> {
        w.iter().map(|(v, w)| Backend { version: v.to_string(), weight: *w }).collect()
    }

    #[test]
    fn weights_split_rolls_proportionally() {
        let b = backends(&[("v1", 50), ("v2", 50)]);
        let v2 = (0..100).filter(|r| pick_backend(&b, *r).unwrap().1.version == "v2").count();
        assert_eq!(v2, 50);
        let b = backends(&[("v1", 100), ("v2", 0)]);
        assert!((0..100).all(|r| pick_backend(&b, r).unwrap().1.version == "v1"));
        let b = backends(&[("v1", 0), ("v2", 100)]);
        assert_eq!(pick_backend(&b, 0).unwrap().1.version, "v2");
    }

    fn check(m: &MatchConfig, method: &str, path: &str, headers: &[(&str, &str)]) -> bool {
        let applied = Applied::new(config_with(m.clone())).unwrap();
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        matches(&applied, m, &RequestFacts { method, path, headers: &map })
    }

    fn config_with(m: MatchConfig) -> ProxyConfig {
        let svc = ServiceConfig::new("s", &[], vec![RuleConfig { matches: vec![m], ..RuleConfig::catch_all(vec![]) }]);
        ProxyConfig { services: [("s".to_string(), svc)].into(), ..Default::default() }
    }

    fn path(p: PathConfig) -> MatchConfig {
        MatchConfig { path: Some(p), ..Default::default() }
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let m = path(PathConfig::Prefix("/api/".into()));
        assert!(check(&m, "GET", "/api", &[]));
        assert!(check(&m, "GET", "/api/items", &[]));
        assert!(!check(&m, "GET", "/apis", &[]));
        let m = MatchConfig { method: Some("POST".into()), ..path(PathConfig::Exact("/x".into())) };
        assert!(check(&m, "post", "/x", &[]));
        assert!(!check(&m, "GET", "/x", &[]));
    }

    #[test]
    fn regexes_match_the_whole_path_and_every_header_condition_must_hold() {
        let m = path(PathConfig::Regex("/items/[0-9]+".into()));
        assert!(check(&m, "GET", "/items/42", &[]));
        assert!(!check(&m, "GET", "/items/42/x", &[]), "anchored");
        let h = |name: &str, value| HeaderConfig { name: name.into(), value };
        let m = MatchConfig {
            headers: vec![
                h("x-canary", HeaderValueMatch::Exact("true".into())),
                h("x-user", HeaderValueMatch::Regex("qa-.*".into())),
                h("x-trace", HeaderValueMatch::Present),
            ],
            ..Default::default()
        };
        assert!(check(&m, "GET", "/", &[("x-canary", "true"), ("x-user", "qa-7"), ("x-trace", "")]));
        assert!(!check(&m, "GET", "/", &[("x-canary", "true"), ("x-user", "qa-7")]));
        assert!(!check(&m, "GET", "/", &[("x-canary", "yes"), ("x-user", "qa-7"), ("x-trace", "1")]));
    }

    #[test]
    fn a_config_with_a_broken_regex_is_refused() {
        assert!(Applied::new(config_with(path(PathConfig::Regex("(".into())))).is_err());
    }
}
