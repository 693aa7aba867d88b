//! Incremental config updates, as delta xDS does them for Envoy: after one full config a proxy
//! is sent only what changed for it. Each delta names the version it applies to (`base`) and
//! the version it makes; a proxy that runs anything but `base` has missed one and asks for a
//! full config again (it reconnects). Applying every delta in order gives exactly the config a
//! full snapshot would have sent at that moment: services whole, endpoints by proxy id, each
//! service's endpoints in proxy-id order.

use crate::config::{Endpoint, MeshSettings, ProxyConfig, ServiceConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What changed of a proxy's config between versions `base` and `version`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    pub base: String,
    pub version: String,
    pub revision: String,
    /// The mesh-wide settings, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshSettings>,
    /// Services added or changed, each whole.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Services gone, with their endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_services: Vec<String>,
    /// Endpoint changes by service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, EndpointChanges>,
}

/// A service's endpoints that joined or changed (address, version, identity), and those gone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointChanges {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<Endpoint>,
    /// Proxy ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl EndpointChanges {
    /// What turns `old` into `new`; both in proxy-id order, as configs hold them.
    pub fn between(old: &[Endpoint], new: &[Endpoint]) -> EndpointChanges {
        let before: BTreeMap<&str, &Endpoint> = old.iter().map(|e| (e.proxy_id.as_str(), e)).collect();
        let after: BTreeMap<&str, &Endpoint> = new.iter().map(|e| (e.proxy_id.as_str(), e)).collect();
        EndpointChanges {
            set: new.iter().filter(|e| before.get(e.proxy_id.as_str()) != Some(e)).cloned().collect(),
            removed: old
                .iter()
                .filter(|e| !after.contains_key(e.proxy_id.as_str()))
                .map(|e| e.proxy_id.clone())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }
}

/// A delta that does not apply: the proxy runs another version than the one it was made for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an update for version {base} came, but {running} runs: one was missed")]
pub struct Gap {
    pub base: String,
    pub running: String,
}

impl ProxyConfig {
    /// This config with `delta` applied; a [`Gap`] when it was made for another version.
    pub fn apply(&self, delta: &Delta) -> Result<ProxyConfig, Gap> {
        if delta.base != self.version {
            return Err(Gap { base: delta.base.clone(), running: self.version.clone() });
        }
        let mut next = self.clone();
        next.version.clone_from(&delta.version);
        next.revision.clone_from(&delta.revision);
        if let Some(mesh) = &delta.mesh {
            next.mesh = mesh.clone();
        }
        for name in &delta.removed_services {
            next.services.remove(name);
            next.endpoints.remove(name);
        }
        next.services.extend(delta.services.iter().map(|(n, s)| (n.clone(), s.clone())));
        for (service, changes) in &delta.endpoints {
            let list = next.endpoints.entry(service.clone()).or_default();
            let mut by_id: BTreeMap<String, Endpoint> =
                std::mem::take(list).into_iter().map(|e| (e.proxy_id.clone(), e)).collect();
            for id in &changes.removed {
                by_id.remove(id);
            }
            by_id.extend(changes.set.iter().map(|e| (e.proxy_id.clone(), e.clone())));
            *list = by_id.into_values().collect();
            // A full config lists no service without endpoints.
            if list.is_empty() {
                next.endpoints.remove(service);
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, addr: &str) -> Endpoint {
        Endpoint { version: "v1".into(), addr: addr.into(), proxy_id: id.into(), identity: None }
    }

    #[test]
    fn endpoint_changes_name_what_joined_changed_and_left() {
        let old = [ep("a", "10.0.0.1:1"), ep("b", "10.0.0.2:1"), ep("c", "10.0.0.3:1")];
        let new = [ep("a", "10.0.0.1:1"), ep("b", "10.0.0.9:1"), ep("d", "10.0.0.4:1")];
        let changes = EndpointChanges::between(&old, &new);
        assert_eq!(changes.set, vec![new[1].clone(), new[2].clone()]);
        assert_eq!(changes.removed, vec!["c".to_string()]);
        assert!(EndpointChanges::between(&new, &new).is_empty());
    }

    #[test]
    fn a_delta_applies_to_its_base_only_and_gives_the_full_config() {
        let base = ProxyConfig {
            version: "r.1".into(),
            revision: "r".into(),
            endpoints: BTreeMap::from([("shop".into(), vec![ep("a", "10.0.0.1:1"), ep("c", "10.0.0.3:1")])]),
            ..Default::default()
        };
        let delta = Delta {
            base: "r.1".into(),
            version: "r.2".into(),
            revision: "r".into(),
            endpoints: BTreeMap::from([
                ("shop".into(), EndpointChanges { set: vec![ep("b", "10.0.0.2:1")], removed: vec!["c".into()] }),
                ("cart".into(), EndpointChanges { set: vec![ep("x", "10.0.1.1:1")], removed: vec![] }),
            ]),
            ..Default::default()
        };
        let next = base.apply(&delta).unwrap();
        assert_eq!(next.version, "r.2");
        assert_eq!(next.endpoints["shop"], vec![ep("a", "10.0.0.1:1"), ep("b", "10.0.0.2:1")], "in proxy-id order");
        assert_eq!(next.endpoints["cart"], vec![ep("x", "10.0.1.1:1")]);
        let gap = next.apply(&delta).unwrap_err();
        assert_eq!((gap.base.as_str(), gap.running.as_str()), ("r.1", "r.2"));
        let emptied = Delta {
            base: "r.2".into(),
            version: "r.3".into(),
            revision: "r".into(),
            endpoints: BTreeMap::from([("cart".into(), EndpointChanges { set: vec![], removed: vec!["x".into()] })]),
            ..Default::default()
        };
        assert!(!next.apply(&emptied).unwrap().endpoints.contains_key("cart"), "no empty lists");
    }
}
