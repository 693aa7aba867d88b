//! Policy into configuration. Only called on a policy that passed validation.

use crate::config::{Backend, MatchConfig, MeshConfig, PathConfig, RuleConfig, ServiceConfig};
use crate::policy::{PathMatch, Policy};

pub fn compile(policy: &Policy, revision: &str) -> MeshConfig {
    let mut mesh = MeshConfig { revision: revision.to_string(), ..Default::default() };
    for svc in &policy.services {
        let versions: Vec<String> = svc.value.versions.iter().map(|v| v.value.clone()).collect();
        let name = svc.value.name.value.clone();
        let route = policy.routes.iter().find(|r| r.value.service.value == name);
        let rules = match route {
            Some(route) => route.value.rules.iter().map(|r| compile_rule(&r.value)).collect(),
            None => vec![even_split(&versions)],
        };
        mesh.services.insert(name.clone(), ServiceConfig { name, versions, rules });
    }
    mesh
}

fn compile_rule(rule: &crate::policy::Rule) -> RuleConfig {
    RuleConfig {
        matches: rule
            .matches
            .iter()
            .map(|m| MatchConfig {
                path: m.path.as_ref().map(|p| match p {
                    PathMatch::Exact(s) => PathConfig::Exact(s.value.clone()),
                    PathMatch::Prefix(s) => PathConfig::Prefix(s.value.clone()),
                }),
                method: m.method.as_ref().map(|m| m.to_ascii_uppercase()),
            })
            .collect(),
        backends: rule
            .backends
            .iter()
            .map(|b| Backend { version: b.value.version.value.clone(), weight: b.value.weight })
            .collect(),
    }
}

/// Without a Route, every version of a service gets an equal share, as in Linkerd where a
/// service without an HTTPRoute balances over all its endpoints.
fn even_split(versions: &[String]) -> RuleConfig {
    let n = versions.len().max(1) as u32;
    let backends = versions
        .iter()
        .enumerate()
        .map(|(i, v)| Backend {
            version: v.clone(),
            // The first versions absorb the remainder so the weights add up to 100.
            weight: 100 / n + u32::from((i as u32) < 100 % n),
        })
        .collect();
    RuleConfig { matches: Vec::new(), backends }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_split_adds_up_to_100() {
        let v: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let weights: Vec<u32> = even_split(&v).backends.iter().map(|b| b.weight).collect();
        assert_eq!(weights, vec![34, 33, 33]);
    }
}
