//! What one proxy is sent: the services its application may call, with their endpoints, and
//! its own service (the inbound side). A proxy never learns about services it may not call, so
//! a change to them never reaches it, and its config stays small in a large mesh.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use trellis_model::config::{AccessMode, MeshSettings};
use trellis_model::fleet::{Delta, EndpointChanges, StreamMessage};
use trellis_model::{Endpoint, ServiceConfig};

/// Whether `caller` may call `callee` by its access policy (before mTLS proves who it is).
pub fn may_call(caller: &str, callee: &ServiceConfig) -> bool {
    if callee.access.rules.is_empty() {
        return callee.access.mode != AccessMode::Deny;
    }
    callee.access.rules.iter().any(|r| r.from.iter().any(|f| f == caller))
}

/// A piece of config shared by every slice that holds it, with the digest of its encoding:
/// a slice's version is made of its pieces' digests, so it costs the same whatever their size.
#[derive(Debug, PartialEq)]
pub struct Part<T> {
    pub value: T,
    digest: [u8; 32],
}

impl<T: serde::Serialize> Part<T> {
    pub fn new(value: T) -> Arc<Part<T>> {
        // Maps are ordered (BTreeMap all the way down): the encoding is canonical.
        let digest = Sha256::digest(serde_json::to_vec(&value).unwrap_or_default()).into();
        Arc::new(Part { value, digest })
    }
}

/// One service's endpoints, as a part the slices that hold them share.
pub type EndpointList = Arc<Part<Vec<Endpoint>>>;

/// What the proxies of one service are sent: the services they may call and their own, with
/// the endpoints of the others.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice {
    /// `<revision>.<digest of the content>`: the same content gives the same version on every
    /// replica and after every restart, so a proxy that moves is not sent what it has.
    pub version: String,
    pub revision: String,
    pub mesh: MeshSettings,
    pub services: BTreeMap<String, Arc<Part<ServiceConfig>>>,
    pub endpoints: BTreeMap<String, EndpointList>,
}

/// The slice of `service` from the mesh's services and every service's endpoints.
pub fn slice(
    revision: &str,
    mesh: &MeshSettings,
    services: &BTreeMap<String, Arc<Part<ServiceConfig>>>,
    endpoints: &BTreeMap<String, EndpointList>,
    service: &str,
) -> Slice {
    let services: BTreeMap<String, Arc<Part<ServiceConfig>>> = services
        .iter()
        .filter(|(name, svc)| name.as_str() == service || may_call(service, &svc.value))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    // Its own service's endpoints stay out: a proxy reaches its own application through its
    // inbound side, and every proxy of a big service would otherwise get every peer's churn.
    let endpoints: BTreeMap<String, EndpointList> = endpoints
        .iter()
        .filter(|(n, _)| n.as_str() != service && services.contains_key(*n))
        .map(|(n, e)| (n.clone(), e.clone()))
        .collect();
    let mut digest = Sha256::new();
    digest.update(serde_json::to_vec(mesh).unwrap_or_default());
    for (tag, name, part) in
        services.iter().map(|(n, s)| (b's', n, &s.digest)).chain(endpoints.iter().map(|(n, e)| (b'e', n, &e.digest)))
    {
        digest.update([tag]);
        digest.update(name.as_bytes());
        digest.update([0]);
        digest.update(part);
    }
    let version = format!("{revision}.{}", &hex::encode(digest.finalize())[..16]);
    Slice { version, revision: revision.to_string(), mesh: mesh.clone(), services, endpoints }
}

impl Slice {
    /// The full config, as one stream line.
    pub fn config_line(&self) -> Bytes {
        #[derive(serde::Serialize)]
        #[serde(tag = "type", rename = "config")]
        struct Config<'a> {
            version: &'a str,
            revision: &'a str,
            mesh: &'a MeshSettings,
            services: BTreeMap<&'a str, &'a ServiceConfig>,
            endpoints: BTreeMap<&'a str, &'a Vec<Endpoint>>,
        }
        line(&Config {
            version: &self.version,
            revision: &self.revision,
            mesh: &self.mesh,
            services: self.services.iter().map(|(n, s)| (n.as_str(), &s.value)).collect(),
            endpoints: self.endpoints.iter().map(|(n, e)| (n.as_str(), &e.value)).collect(),
        })
    }

    /// What turns `old` into this slice; `changes` tells (and may remember) how one service's
    /// endpoint list changed, as every slice holding it asks the same.
    pub fn delta_from(
        &self,
        old: &Slice,
        changes: &mut impl FnMut(&str, &EndpointList, &EndpointList) -> EndpointChanges,
    ) -> Delta {
        let mut delta = Delta {
            base: old.version.clone(),
            version: self.version.clone(),
            revision: self.revision.clone(),
            mesh: (self.mesh != old.mesh).then(|| self.mesh.clone()),
            ..Default::default()
        };
        for (name, svc) in &self.services {
            if old.services.get(name).is_none_or(|o| o.digest != svc.digest) {
                delta.services.insert(name.clone(), svc.value.clone());
            }
        }
        delta.removed_services = old.services.keys().filter(|n| !self.services.contains_key(*n)).cloned().collect();
        let empty = Part::new(Vec::new());
        for name in self.endpoints.keys().chain(old.endpoints.keys()) {
            if delta.removed_services.contains(name) || delta.endpoints.contains_key(name) {
                continue;
            }
            let (before, after) =
                (old.endpoints.get(name).unwrap_or(&empty), self.endpoints.get(name).unwrap_or(&empty));
            if before.digest != after.digest {
                delta.endpoints.insert(name.clone(), changes(name, before, after));
            }
        }
        delta
    }
}

/// A message as one stream line.
pub fn line(message: &impl serde::Serialize) -> Bytes {
    Bytes::from(trellis_model::fleet::line(message))
}

/// A delta as one stream line.
pub fn delta_line(delta: Delta) -> Bytes {
    line(&StreamMessage::Delta(delta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_model::config::AccessRuleConfig;

    fn services() -> BTreeMap<String, Arc<Part<ServiceConfig>>> {
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
        services.into_iter().map(|s| (s.name.clone(), Part::new(s))).collect()
    }

    fn endpoint(service: &str, id: &str) -> Endpoint {
        Endpoint { version: "v1".into(), addr: "1.2.3.4:1".into(), proxy_id: format!("{service}-{id}"), identity: None }
    }

    fn endpoints(ids: &[&str]) -> BTreeMap<String, EndpointList> {
        ["inventory", "catalog", "vault"]
            .iter()
            .map(|s| (s.to_string(), Part::new(ids.iter().map(|id| endpoint(s, id)).collect())))
            .collect()
    }

    fn sliced(eps: &BTreeMap<String, EndpointList>, service: &str) -> Slice {
        slice("r", &MeshSettings::default(), &services(), eps, service)
    }

    fn names<T>(m: &BTreeMap<String, T>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_proxy_gets_what_it_may_call_and_its_own_service() {
        let eps = endpoints(&["a"]);
        let storefront = sliced(&eps, "storefront");
        assert_eq!(names(&storefront.services), vec!["catalog", "inventory", "storefront"]);
        assert_eq!(names(&storefront.endpoints), vec!["catalog", "inventory"]);
        let catalog = sliced(&eps, "catalog");
        assert_eq!(
            names(&catalog.services),
            vec!["catalog", "storefront"],
            "inventory admits only storefront; vault nobody"
        );
        let vault = sliced(&eps, "vault");
        assert_eq!(names(&vault.services), vec!["catalog", "storefront", "vault"]);
        assert!(!vault.endpoints.contains_key("vault"), "never its own peers");
    }

    #[test]
    fn a_version_names_the_content_and_a_delta_holds_only_what_changed() {
        let one = sliced(&endpoints(&["a"]), "storefront");
        assert!(one.version.starts_with("r."), "{}", one.version);
        assert_eq!(sliced(&endpoints(&["a"]), "storefront").version, one.version, "the same content");
        let two = sliced(&endpoints(&["a", "b"]), "storefront");
        assert_ne!(two.version, one.version);
        let mut asked = Vec::new();
        let delta = two.delta_from(&one, &mut |name, before, after| {
            asked.push(name.to_string());
            EndpointChanges::between(&before.value, &after.value)
        });
        assert_eq!((delta.base.as_str(), delta.version.as_str()), (one.version.as_str(), two.version.as_str()));
        assert!(delta.services.is_empty() && delta.removed_services.is_empty() && delta.mesh.is_none());
        assert_eq!(asked, ["catalog", "inventory"]);
        assert_eq!(delta.endpoints["inventory"].set, vec![endpoint("inventory", "b")]);
        // Applied to the full config of the old version, the delta gives the new one's.
        let config = |s: &Slice| match serde_json::from_slice(&s.config_line()).unwrap() {
            StreamMessage::Config(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(config(&one).apply(&delta).unwrap(), config(&two));
    }
}
