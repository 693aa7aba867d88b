//! Pure routing decisions: which rule applies, which version gets the request, which endpoint.

use trellis_model::config::{MatchConfig, PathConfig};
use trellis_model::{Backend, Endpoint, RuleConfig, ServiceConfig};

/// The first rule with a matching condition (or none at all), as Gateway API orders rules.
pub fn select_rule<'a>(service: &'a ServiceConfig, method: &str, path: &str) -> Option<&'a RuleConfig> {
    service.rules.iter().find(|r| r.matches.is_empty() || r.matches.iter().any(|m| matches(m, method, path)))
}

fn matches(m: &MatchConfig, method: &str, path: &str) -> bool {
    let path_ok = match &m.path {
        None => true,
        Some(PathConfig::Exact(p)) => path == p,
        // A prefix matches whole segments: `/api` matches `/api` and `/api/x`, not `/apis`.
        Some(PathConfig::Prefix(p)) => {
            let p = p.trim_end_matches('/');
            path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        }
    };
    path_ok && m.method.as_deref().is_none_or(|want| want.eq_ignore_ascii_case(method))
}

/// Picks a backend by weight. `roll` is uniform in `0..total weight`, drawn by the caller so
/// the choice is a plain function of its inputs.
pub fn pick_backend(backends: &[Backend], roll: u32) -> Option<&Backend> {
    let mut acc = 0u32;
    backends.iter().filter(|b| b.weight > 0).find(|b| {
        acc += b.weight;
        roll < acc
    })
}

pub fn total_weight(backends: &[Backend]) -> u32 {
    backends.iter().map(|b| b.weight).sum()
}

/// Round-robin over the endpoints of one version; `turn` is a counter the caller advances.
pub fn pick_endpoint<'a>(endpoints: &'a [Endpoint], version: &str, turn: usize) -> Option<&'a Endpoint> {
    let n = endpoints.iter().filter(|e| e.version == version).count();
    if n == 0 {
        return None;
    }
    endpoints.iter().filter(|e| e.version == version).nth(turn % n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(w: &[(&str, u32)]) -> Vec<Backend> {
        w.iter().map(|(v, w)| Backend { version: v.to_string(), weight: *w }).collect()
    }

    #[test]
    fn weights_split_rolls_proportionally() {
        let b = backends(&[("v1", 50), ("v2", 50)]);
        let v2 = (0..100).filter(|r| pick_backend(&b, *r).unwrap().version == "v2").count();
        assert_eq!(v2, 50);
        let b = backends(&[("v1", 100), ("v2", 0)]);
        assert!((0..100).all(|r| pick_backend(&b, r).unwrap().version == "v1"));
        let b = backends(&[("v1", 0), ("v2", 100)]);
        assert_eq!(pick_backend(&b, 0).unwrap().version, "v2");
    }

    #[test]
    fn prefix_matches_whole_segments() {
        let m = MatchConfig { path: Some(PathConfig::Prefix("/api/".into())), method: None };
        assert!(matches(&m, "GET", "/api"));
        assert!(matches(&m, "GET", "/api/items"));
        assert!(!matches(&m, "GET", "/apis"));
        let m = MatchConfig { path: Some(PathConfig::Exact("/x".into())), method: Some("POST".into()) };
        assert!(matches(&m, "post", "/x"));
        assert!(!matches(&m, "GET", "/x"));
    }

    #[test]
    fn endpoints_rotate_within_a_version() {
        let e = |v: &str, a: &str| Endpoint { version: v.into(), addr: a.into(), proxy_id: a.into() };
        let eps = vec![e("v1", "a"), e("v2", "b"), e("v1", "c")];
        let picked: Vec<&str> = (0..4).map(|t| pick_endpoint(&eps, "v1", t).unwrap().addr.as_str()).collect();
        assert_eq!(picked, vec!["a", "c", "a", "c"]);
        assert!(pick_endpoint(&eps, "v3", 0).is_none());
    }
}
