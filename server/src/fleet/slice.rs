//! What one proxy is sent: the services its application may call, with their endpoints, and
//! its own service (the inbound side). A proxy never learns about services it may not call, so
//! a change to them never reaches it, and its config stays small in a large mesh.

use std::collections::BTreeMap;
use trellis_model::config::AccessMode;
use trellis_model::{Endpoint, MeshConfig, ProxyConfig, ServiceConfig};

/// Whether `caller` may call `callee` by its access policy (before mTLS proves who it is).
pub fn may_call(caller: &str, callee: &ServiceConfig) -> bool {
    if callee.access.rules.is_empty() {
        return callee.access.mode != AccessMode::Deny;
    }
    callee.access.rules.iter().any(|r| r.from.iter().any(|f| f == caller))
}

pub fn slice(
    mesh: &MeshConfig,
    endpoints: &BTreeMap<String, Vec<Endpoint>>,
    service: &str,
    version: &str,
) -> ProxyConfig {
    let services: BTreeMap<String, ServiceConfig> = mesh
        .services
        .iter()
        .filter(|(name, svc)| name.as_str() == service || may_call(service, svc))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    // Its own service's endpoints stay out: a proxy reaches its own application through its
    // inbound side, and every proxy of a big service would otherwise get every peer's churn.
    let endpoints = endpoints
        .iter()
        .filter(|(n, _)| n.as_str() != service && services.contains_key(*n))
        .map(|(n, e)| (n.clone(), e.clone()))
        .collect();
    ProxyConfig {
        version: version.to_string(),
        revision: mesh.revision.clone(),
        mesh: mesh.mesh.clone(),
        services,
        endpoints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_model::config::AccessRuleConfig;

    fn mesh() -> MeshConfig {
        let mut inventory = ServiceConfig::new("inventory", &["v1"], vec![]);
        inventory.access.rules =
            vec![AccessRuleConfig { from: vec!["storefront".into()], paths: vec![], methods: vec![] }];
        let mut vault = ServiceConfig::new("vault", &["v1"], vec![]);
        vault.access.mode = AccessMode::Deny;
        let services = [
            inventory,
            vault,
            ServiceConfig::new("catalog", &["v1"], vec![]),
            ServiceConfig::new("storefront", &["v1"], vec![]),
        ];
        MeshConfig {
            revision: "r".into(),
            services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
            ..Default::default()
        }
    }

    fn names(c: &ProxyConfig) -> Vec<&str> {
        c.services.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_proxy_gets_what_it_may_call_and_its_own_service() {
        let eps: BTreeMap<String, Vec<Endpoint>> = ["inventory", "catalog", "vault"]
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    vec![Endpoint {
                        version: "v1".into(),
                        addr: "1.2.3.4:1".into(),
                        proxy_id: s.to_string(),
                        identity: None,
                    }],
                )
            })
            .collect();
        let storefront = slice(&mesh(), &eps, "storefront", "r.1");
        assert_eq!(names(&storefront), vec!["catalog", "inventory", "storefront"]);
        assert_eq!(storefront.endpoints.keys().collect::<Vec<_>>(), vec!["catalog", "inventory"]);
        let catalog = slice(&mesh(), &eps, "catalog", "r.1");
        assert_eq!(names(&catalog), vec!["catalog", "storefront"], "inventory admits only storefront; vault nobody");
        let vault = slice(&mesh(), &eps, "vault", "r.1");
        assert_eq!(names(&vault), vec!["catalog", "storefront", "vault"]);
        assert!(!vault.endpoints.contains_key("vault"), "never its own peers");
    }
}
