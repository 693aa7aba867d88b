//! `trellis install kubernetes`: the manifests of a control plane in a cluster, printed as a
//! YAML stream for `kubectl apply -f -` (as `linkerd install` does). Replicas on the team's
//! Postgres (its URL from a Secret), spread over nodes and kept by a PodDisruptionBudget;
//! a Service for the API, the dashboard and proxies' joins, a headless one through which each
//! proxy finds every replica; a NetworkPolicy admitting only those ports. The control plane
//! asks nothing of the Kubernetes API (leadership and state live in Postgres), so its
//! ServiceAccount has no token and no role.

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
}

/// The manifests, in the order `kubectl apply` needs them (the namespace first).
pub fn manifests(a: &KubernetesArgs) -> Vec<Value> {
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
        "volumeMounts": [{ "name": "data", "mountPath": "/var/lib/trellis" }],
    });
    let selector = json!({ "app.kubernetes.io/name": "trellis", "app.kubernetes.io/component": "control-plane" });
    vec![
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns, "labels": { "app.kubernetes.io/name": "trellis" } } }),
        json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("trellis"), "automountServiceAccountToken": false }),
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
                        "volumes": [{ "name": "data", "emptyDir": {} }],
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
                // Proxies join and follow from every namespace; people reach the dashboard.
                "ingress": [{ "ports": [{ "port": 8080, "protocol": "TCP" }, { "port": 8443, "protocol": "TCP" }] }],
            },
        }),
    ]
}

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
