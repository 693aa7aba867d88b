//! `trellis install kubernetes`: the manifests of a control plane in a cluster, printed as a
//! YAML stream for `kubectl apply -f -` (as `linkerd install` does). Replicas on the team's
//! Postgres (its URL from a Secret), spread over nodes and kept by a PodDisruptionBudget;
//! a Service for the API, the dashboard and proxies' joins, a headless one through which each
//! proxy finds every replica; a NetworkPolicy admitting only those ports. The control plane
//! asks nothing of the Kubernetes API (leadership and state live in Postgres), so its
//! ServiceAccount has no token and no role. The mesh's trust anchor is made here, as `linkerd
//! install` makes its own, and given to the control plane in a Secret: the sidecar injector's
//! webhook configuration can then carry it as its `caBundle`.

use serde_json::{Value, json};

#[derive(clap::Args, Debug, Clone)]
pub struct KubernetesArgs {
    /// The policy repository the control plane follows (https:// or ssh://).
    #[arg(long)]
    pub repo: String,
    #[arg(long, default_value = "main")]
    pub branch: String,
    #[arg(long, default_value = "trellis")]
    pub namespace: String,
    /// Control-plane replicas (they share the database; one leads).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub replicas: u32,
    #[arg(long, default_value = "trellis.local")]
    pub trust_domain: String,
    /// The Secret holding the Postgres URL under the key DATABASE_URL.
    #[arg(long, default_value = "trellis-database")]
    pub database_secret: String,
    /// The Secret holding operators' and viewers' tokens under the key TRELLIS_TOKENS.
    #[arg(long, default_value = "trellis-tokens")]
    pub tokens_secret: String,
    /// Where the images are.
    #[arg(long, default_value = "ghcr.io/trellis-mesh")]
    pub registry: String,
    /// The images' tag (by default this build's version).
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
    /// Where the mesh's trust anchor is kept (anchor.pem, anchor.key, join.key): made there the
    /// first time, reused after, so the manifests can be printed again for the same mesh.
    /// Without it, every run makes a new anchor.
    #[arg(long)]
    pub identity_dir: Option<std::path::PathBuf>,
    /// The Secret, in each meshed namespace, holding every service's join token under the
    /// service's name, for injected proxies.
    #[arg(long, default_value = "trellis-join-tokens")]
    pub join_tokens_secret: String,
}

/// The trust anchor, its key and the join secret, as the control plane keeps them.
pub struct Anchor {
    pub anchor_pem: String,
    pub anchor_key: String,
    pub join_key: String,
}

impl Anchor {
    /// Reads the anchor in `dir`, making it first if it is not there.
    pub fn load_or_create(dir: &std::path::Path, trust_domain: &str) -> anyhow::Result<Anchor> {
        crate::identity::Ca::load_or_create(dir, trust_domain)
            .map_err(|e| anyhow::anyhow!("the trust anchor in {}: {e}", dir.display()))?;
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f)).map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(f).display()))
        };
        Ok(Anchor { anchor_pem: read("anchor.pem")?, anchor_key: read("anchor.key")?, join_key: read("join.key")? })
    }
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The manifests, in the order `kubectl apply` needs them (the namespace first).
pub fn manifests(a: &KubernetesArgs, anchor: &Anchor) -> Vec<Value> {
    let ns = a.namespace.as_str();
    let labels = json!({ "app.kubernetes.io/name": "trellis", "app.kubernetes.io/component": "control-plane" });
    let meta = |name: &str| json!({ "name": name, "namespace": ns, "labels": labels });
    let secret = |name: &str, key: &str, optional: bool| json!({ "name": key, "valueFrom": { "secretKeyRef": { "name": name, "key": key, "optional": optional } } });
    let env = json!([
        { "name": "TRELLIS_REPO", "value": a.repo },
        { "name": "TRELLIS_BRANCH", "value": a.branch },
        { "name": "TRELLIS_TRUST_DOMAIN", "value": a.trust_domain },
        { "name": "TRELLIS_LISTEN", "value": "0.0.0.0:8080" },
        { "name": "TRELLIS_FLEET_LISTEN", "value": "0.0.0.0:8443" },
        { "name": "TRELLIS_DATA_DIR", "value": "/var/lib/trellis" },
        { "name": "TRELLIS_LOG_FORMAT", "value": "json" },
        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
        { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
        // A restarted pod is a new replica; the others reach it at its own address.
        { "name": "TRELLIS_REPLICA_ID", "value": "$(POD_NAME)" },
        { "name": "TRELLIS_ADVERTISE_URL", "value": "http://$(POD_IP):8080" },
        secret(&a.database_secret, "DATABASE_URL", false),
        secret(&a.tokens_secret, "TRELLIS_TOKENS", true),
        // The sidecar injector: TLS for the API server by the Service's names, and what it
        // gives each pod's proxy.
        { "name": "TRELLIS_ADMISSION_LISTEN", "value": "0.0.0.0:9443" },
        { "name": "TRELLIS_ADMISSION_DNS", "value": format!("{INJECTOR}.{ns}.svc,{INJECTOR}.{ns}.svc.cluster.local") },
        { "name": "TRELLIS_INJECT_IMAGE", "value": format!("{}/trellis-proxy:{}", a.registry, a.tag) },
        { "name": "TRELLIS_INJECT_CONTROL_PLANE_URL", "value": format!("http://trellis-replicas.{ns}.svc:8080") },
        { "name": "TRELLIS_INJECT_JOIN_TOKENS", "value": a.join_tokens_secret },
    ]);
    let probe = |path: &str, period: u32| json!({ "httpGet": { "path": path, "port": "http" }, "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": 3 });
    let container = json!({
        "name": "trellis",
        "image": format!("{}/trellis:{}", a.registry, a.tag),
        "args": ["serve"],
        "env": env,
        "ports": [
            { "name": "http", "containerPort": 8080, "protocol": "TCP" },
            { "name": "fleet", "containerPort": 8443, "protocol": "TCP" },
            { "name": "admission", "containerPort": 9443, "protocol": "TCP" },
        ],
        "livenessProbe": probe("/live", 10),
        "readinessProbe": probe("/ready", 5),
        "resources": { "requests": { "cpu": "100m", "memory": "128Mi" }, "limits": { "memory": "1Gi" } },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "volumeMounts": [
            { "name": "data", "mountPath": "/var/lib/trellis" },
            { "name": "identity", "mountPath": "/var/lib/trellis/identity", "readOnly": true },
        ],
    });
    // Both injector entries call the same Service; the namespace's label picks the entry.
    let webhook = |name: &str, scope: &str, namespaces: Value| {
        json!({
            "name": name,
            "clientConfig": {
                "service": { "namespace": ns, "name": INJECTOR, "path": format!("/api/v1/admission/inject/{scope}"), "port": 443 },
                "caBundle": base64(&anchor.anchor_pem),
            },
            "rules": [{ "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced" }],
            "namespaceSelector": namespaces,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            // A control plane that cannot answer never stops pods from starting: they start
            // without the proxy, as under Linkerd's default.
            "failurePolicy": "Ignore",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded",
        })
    };
    let selector = json!({ "app.kubernetes.io/name": "trellis", "app.kubernetes.io/component": "control-plane" });
    vec![
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns, "labels": { "app.kubernetes.io/name": "trellis" } } }),
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("trellis"), "automountServiceAccountToken": false }),
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": meta("trellis-identity"), "type": "Opaque",
            "data": {
                "anchor.pem": base64(&anchor.anchor_pem),
                "anchor.key": base64(&anchor.anchor_key),
                "join.key": base64(&anchor.join_key),
            },
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("trellis"),
            "spec": {
                "replicas": a.replicas,
                "selector": { "matchLabels": selector },
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1, "maxSurge": 1 } },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "serviceAccountName": "trellis",
                        "automountServiceAccountToken": false,
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": { "runAsNonRoot": true, "fsGroup": 65532 },
                        // One replica per node where there are enough nodes.
                        "affinity": { "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
                            "weight": 100,
                            "podAffinityTerm": { "topologyKey": "kubernetes.io/hostname", "labelSelector": { "matchLabels": selector } },
                        }] } },
                        "containers": [container],
                        "volumes": [
                            { "name": "data", "emptyDir": {} },
                            // Read by the control plane's user through its group (fsGroup).
                            { "name": "identity", "secret": { "secretName": "trellis-identity", "defaultMode": 0o440 } },
                        ],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta("trellis"),
            "spec": { "maxUnavailable": 1, "selector": { "matchLabels": selector } },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": meta("trellis"),
            "spec": { "selector": selector, "ports": [
                { "name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP" },
                { "name": "fleet", "port": 8443, "targetPort": "fleet", "protocol": "TCP" },
            ] },
        }),
        // Every replica's address: proxies list them all with one name.
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": meta("trellis-replicas"),
            "spec": { "clusterIP": "None", "publishNotReadyAddresses": false, "selector": selector, "ports": [
                { "name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP" },
                { "name": "fleet", "port": 8443, "targetPort": "fleet", "protocol": "TCP" },
            ] },
        }),
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("trellis"),
            "spec": {
                "podSelector": { "matchLabels": selector },
                "policyTypes": ["Ingress"],
                // Proxies join and follow from every namespace; people reach the dashboard;
                // the API server calls the injector.
                "ingress": [{ "ports": [
                    { "port": 8080, "protocol": "TCP" }, { "port": 8443, "protocol": "TCP" }, { "port": 9443, "protocol": "TCP" },
                ] }],
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": meta(INJECTOR),
            "spec": { "selector": selector, "ports": [{ "name": "https", "port": 443, "targetPort": "admission", "protocol": "TCP" }] },
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": { "name": "trellis-sidecar-injector", "labels": labels },
            "webhooks": [
                // Namespaces labelled trellis.io/inject=enabled: every pod but those opting out.
                webhook("namespaces.inject.trellis.io", "namespace", json!({ "matchLabels": { "trellis.io/inject": "enabled" } })),
                // Everywhere else but the system's and Trellis's own: pods annotated to ask.
                webhook("pods.inject.trellis.io", "pod", json!({ "matchExpressions": [
                    { "key": "trellis.io/inject", "operator": "NotIn", "values": ["enabled", "disabled"] },
                    { "key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kube-public", ns] },
                ] })),
            ],
        }),
    ]
}

/// The sidecar injector's Service.
const INJECTOR: &str = "trellis-injector";

/// The manifests as a YAML stream, `---` between documents.
pub fn yaml(manifests: &[Value]) -> String {
    manifests.iter().map(|m| format!("---\n{}", block(m, 0))).collect()
}

/// Block-style YAML of a JSON value. Strings stay JSON-quoted (a JSON string is a YAML
/// double-quoted scalar), so no value, however odd, changes the document's structure.
fn block(value: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                match v {
                    Value::Object(m) if !m.is_empty() => out += &format!("{pad}{k}:\n{}", block(v, indent + 2)),
                    Value::Array(a) if !a.is_empty() => out += &format!("{pad}{k}:\n{}", block(v, indent)),
                    _ => out += &format!("{pad}{k}: {}\n", scalar(v)),
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                let inner = match item {
                    Value::Object(m) if !m.is_empty() => block(item, indent + 2),
                    Value::Array(a) if !a.is_empty() => block(item, indent + 2),
                    _ => format!("{pad}  {}\n", scalar(item)),
                };
                // The first line of the item goes after the dash.
                out += &format!("{pad}- {}", inner.trim_start());
            }
        }
        _ => out += &format!("{pad}{}\n", scalar(value)),
    }
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_nests_maps_and_lists_and_keeps_strings_quoted() {
        let doc = json!({ "a": { "b": [1, { "c": "x: y", "d": [] }], "e": "--- #" }, "f": {} });
        assert_eq!(yaml(&[doc]), "---\na:\n  b:\n  - 1\n  - c: \"x: y\"\n    d: []\n  e: \"--- #\"\nf: {}\n");
    }
}
