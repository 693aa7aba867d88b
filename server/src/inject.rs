//! Sidecar injection: what the Kubernetes admission webhook answers. A pod annotated
//! `trellis.io/inject: enabled`, or created in a namespace labelled so (the webhook's
//! configuration says which, in the request's path), gets the `trellis-proxy` container with
//! its settings, probes, resources and a locked-down security context, and its containers an
//! `HTTP_PROXY` pointing at the proxy's outbound port. The answer is a minimal JSON Patch, and
//! none for a pod that has the proxy already, so injecting twice changes nothing. A pod that
//! opts out (`trellis.io/inject: disabled`) is let through as it is. Plain functions over the
//! review's JSON; the endpoint is `api`'s.

use base64::Engine;
use serde_json::{Value, json};

pub const CONTAINER: &str = "trellis-proxy";
pub const ANNOTATION: &str = "trellis.io/inject";
/// The proxy's ports, as Linkerd users know them.
pub const OUTBOUND_PORT: u16 = 4140;
pub const INBOUND_PORT: u16 = 4143;
pub const ADMIN_PORT: u16 = 4191;
/// The proxy's own user: not root, and not an application's usual one.
pub const PROXY_UID: u32 = 2102;

/// What every injected proxy is given.
#[derive(Clone, Debug, PartialEq)]
pub struct Injector {
    /// The proxy's image, `registry/trellis-proxy:tag`.
    pub image: String,
    /// How proxies reach the control plane (its Service): `http://trellis.trellis.svc:8080`.
    pub control_plane: String,
    /// The Secret holding each service's join token under the service's name.
    pub join_tokens: String,
}

/// What `trellis install kubernetes` sets up by default.
impl Default for Injector {
    fn default() -> Self {
        Injector {
            image: format!("ghcr.io/trellis-mesh/trellis-proxy:{}", env!("CARGO_PKG_VERSION")),
            control_plane: "http://trellis.trellis.svc:8080".into(),
            join_tokens: "trellis-join-tokens".into(),
        }
    }
}

/// Where the webhook was called from: the configuration's entry for namespaces labelled
/// `trellis.io/inject: enabled` (inject unless the pod opts out), or the one for the rest
/// (inject only a pod that asks).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scope {
    Namespace,
    Pod,
    /// A path the configuration should not have: every review is refused, saying so.
    Unknown,
}

impl Scope {
    pub fn parse(s: &str) -> Scope {
        match s {
            "namespace" => Scope::Namespace,
            "pod" => Scope::Pod,
            _ => Scope::Unknown,
        }
    }
}

/// The AdmissionReview answering `body`: always a review, never an error status, so that the
/// API server shows the reason of a refusal.
pub fn review(body: &[u8], scope: Scope, injector: &Injector) -> Value {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let uid = request["request"]["uid"].as_str().unwrap_or_default().to_string();
    let mut response = json!({ "uid": uid, "allowed": true });
    match decide(&request, scope, injector) {
        Ok(Decision::Leave(why)) => {
            response["status"] = json!({ "message": why });
        }
        Ok(Decision::Patch(ops, warnings)) => {
            let patch = serde_json::to_vec(&ops).unwrap_or_default();
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
            if !warnings.is_empty() {
                response["warnings"] = json!(warnings);
            }
        }
        Err(why) => {
            response["allowed"] = json!(false);
            response["status"] = json!({ "code": 400, "reason": "BadRequest", "message": why });
        }
    }
    json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response })
}

#[derive(Debug, PartialEq)]
enum Decision {
    /// Let the pod through unchanged, and why.
    Leave(String),
    /// These JSON Patch operations, and what the user should know.
    Patch(Vec<Value>, Vec<String>),
}

fn decide(review: &Value, scope: Scope, injector: &Injector) -> Result<Decision, String> {
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return Err(
            "not an admission.k8s.io/v1 AdmissionReview: is the webhook configured with admissionReviewVersions [v1]?"
                .into(),
        );
    }
    if scope == Scope::Unknown {
        return Err("the webhook's path names no scope: use /api/v1/admission/inject/namespace or .../pod".into());
    }
    let request = &review["request"];
    if request["uid"].as_str().is_none_or(str::is_empty) {
        return Err("the AdmissionReview has no request uid".into());
    }
    let pod = &request["object"];
    if pod["kind"] != "Pod" || !pod["spec"]["containers"].is_array() {
        return Err("the review's object is not a Pod with containers: configure the webhook for pods only".into());
    }
    let annotations = &pod["metadata"]["annotations"];
    let asked = annotations[ANNOTATION].as_str();
    match (asked, scope) {
        (Some("disabled"), _) => return Ok(Decision::Leave(format!("{ANNOTATION} is disabled on this pod"))),
        (Some("enabled"), _) | (None, Scope::Namespace) => {}
        (None, _) => {
            return Ok(Decision::Leave(format!("neither the pod nor its namespace asks: {ANNOTATION} is not set")));
        }
        (Some(other), _) => return Err(format!("{ANNOTATION}: {other:?} is neither enabled nor disabled")),
    }
    let containers = pod["spec"]["containers"].as_array().map(Vec::as_slice).unwrap_or_default();
    if containers.iter().any(|c| c["name"] == CONTAINER) {
        return Ok(Decision::Leave(format!("the pod has its {CONTAINER} already")));
    }
    let labels = &pod["metadata"]["labels"];
    let first = |keys: &[(&Value, &str)]| keys.iter().find_map(|(map, key)| map[*key].as_str()).map(str::to_string);
    let service = first(&[(annotations, "trellis.io/service"), (labels, "app.kubernetes.io/name"), (labels, "app")])
        .ok_or("the pod asks for the proxy but names no service: label it app.kubernetes.io/name (or annotate trellis.io/service)")?;
    let mut warnings = Vec::new();
    let version =
        first(&[(annotations, "trellis.io/version"), (labels, "app.kubernetes.io/version"), (labels, "version")])
            .unwrap_or_else(|| {
                warnings.push("the pod names no version (label app.kubernetes.io/version): v1 is assumed".to_string());
                "v1".into()
            });
    let port = match annotations["trellis.io/app-port"].as_str() {
        Some(p) => p.parse::<u16>().map_err(|_| format!("trellis.io/app-port: {p:?} is not a port"))?,
        None => containers
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find_map(|p| p["containerPort"].as_u64())
            .map_or(8080, |p| p as u16),
    };
    let mut ops = Vec::new();
    // The applications reach other services through the proxy, unless they say otherwise.
    for (i, c) in containers.iter().enumerate() {
        let env = c["env"].as_array();
        let has = |name: &str| env.is_some_and(|e| e.iter().any(|v| v["name"] == name));
        let wanted: Vec<Value> =
            [("HTTP_PROXY", format!("http://127.0.0.1:{OUTBOUND_PORT}")), ("NO_PROXY", "127.0.0.1,localhost".into())]
                .into_iter()
                .filter(|(name, _)| !has(name))
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect();
        if env.is_none() && !wanted.is_empty() {
            ops.push(json!({ "op": "add", "path": format!("/spec/containers/{i}/env"), "value": wanted }));
        } else {
            for v in wanted {
                ops.push(json!({ "op": "add", "path": format!("/spec/containers/{i}/env/-"), "value": v }));
            }
        }
    }
    ops.push(json!({ "op": "add", "path": "/spec/containers/-", "value": proxy(injector, &service, &version, port) }));
    let mark = env!("CARGO_PKG_VERSION");
    if annotations.is_object() {
        ops.push(json!({ "op": "add", "path": "/metadata/annotations/trellis.io~1proxy-version", "value": mark }));
    } else {
        ops.push(
            json!({ "op": "add", "path": "/metadata/annotations", "value": { "trellis.io/proxy-version": mark } }),
        );
    }
    Ok(Decision::Patch(ops, warnings))
}

/// The proxy's container: the same settings `trellis-proxy --help` lists, set for a pod.
fn proxy(injector: &Injector, service: &str, version: &str, app_port: u16) -> Value {
    let field = |path: &str| json!({ "fieldRef": { "fieldPath": path } });
    json!({
        "name": CONTAINER,
        "image": injector.image,
        "env": [
            { "name": "TRELLIS_SERVICE", "value": service },
            { "name": "TRELLIS_VERSION", "value": version },
            { "name": "TRELLIS_CONTROL_PLANE_URL", "value": injector.control_plane },
            { "name": "TRELLIS_JOIN_TOKEN", "valueFrom": { "secretKeyRef": { "name": injector.join_tokens, "key": service } } },
            { "name": "TRELLIS_PROXY_ID", "valueFrom": field("metadata.name") },
            { "name": "TRELLIS_ADVERTISE_IP", "valueFrom": field("status.podIP") },
            { "name": "TRELLIS_APP_ADDR", "value": format!("127.0.0.1:{app_port}") },
            { "name": "TRELLIS_OUTBOUND_ADDR", "value": format!("127.0.0.1:{OUTBOUND_PORT}") },
            { "name": "TRELLIS_INBOUND_ADDR", "value": format!("0.0.0.0:{INBOUND_PORT}") },
            { "name": "TRELLIS_ADMIN_ADDR", "value": format!("0.0.0.0:{ADMIN_PORT}") },
            { "name": "TRELLIS_LOG_FORMAT", "value": "json" },
        ],
        "ports": [
            { "name": "trellis-inbound", "containerPort": INBOUND_PORT, "protocol": "TCP" },
            { "name": "trellis-admin", "containerPort": ADMIN_PORT, "protocol": "TCP" },
        ],
        "readinessProbe": { "httpGet": { "path": "/ready", "port": ADMIN_PORT }, "periodSeconds": 2 },
        "livenessProbe": { "httpGet": { "path": "/live", "port": ADMIN_PORT }, "periodSeconds": 10 },
        "resources": { "requests": { "cpu": "10m", "memory": "20Mi" }, "limits": { "memory": "128Mi" } },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": PROXY_UID,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        },
    })
}

#[cfg(test)]
mod tests;
