//! `trellis install kubernetes`: every manifest it prints passes `kubernetes-validate --strict`
//! (PyPI) for the current Kubernetes release, and says what an operator asked for.

use std::process::Command;

/// kubernetes-validate from the test Python's environment (scripts/setup.sh installs it).
fn validator() -> std::path::PathBuf {
    let python = std::env::var("TRELLIS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let bin = std::path::Path::new(&python).with_file_name("kubernetes-validate");
    assert!(bin.exists(), "{} is missing: scripts/setup.sh --for-tests installs kubernetes-validate", bin.display());
    bin
}

fn install(identity: &std::path::Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["install", "kubernetes", "--repo", "https://git.example.com/platform/mesh-policy.git"])
        .args(["--replicas", "3", "--namespace", "mesh", "--database-secret", "pg", "--tag", "1.2.3"])
        .arg("--identity-dir")
        .arg(identity)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The value of the first `key: "..."` line in the document of `kind`.
fn value_in<'a>(yaml: &'a str, kind: &str, key: &str) -> &'a str {
    let doc = yaml.split("---\n").find(|d| d.contains(&format!("kind: \"{kind}\"\n"))).unwrap();
    let line = doc.lines().find(|l| l.trim_start().starts_with(&format!("{key}: "))).unwrap();
    line.trim_start()[key.len() + 2..].trim_matches('"')
}

#[test]
fn the_manifests_validate_and_carry_the_operators_settings() {
    let identity = tempfile::tempdir().unwrap();
    let yaml = install(identity.path());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trellis.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let checked = Command::new(validator()).args(["--strict", file.to_str().unwrap()]).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success(), "kubernetes-validate: {said}\n{yaml}");
    for kind in [
        "Namespace",
        "ServiceAccount",
        "Secret",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "NetworkPolicy",
        "MutatingWebhookConfiguration",
    ] {
        assert!(yaml.contains(&format!("kind: \"{kind}\"")), "{kind} missing");
    }
    for needle in [
        "replicas: 3\n",
        "namespace: \"mesh\"",
        "image: \"ghcr.io/trellis-mesh/trellis:1.2.3\"",
        "value: \"https://git.example.com/platform/mesh-policy.git\"",
        "name: \"pg\"",
        "readOnlyRootFilesystem: true",
        "path: \"/ready\"",
        "clusterIP: \"None\"",
        "value: \"ghcr.io/trellis-mesh/trellis-proxy:1.2.3\"",
        "value: \"http://trellis-replicas.mesh.svc:8080\"",
        "value: \"trellis-injector.mesh.svc,trellis-injector.mesh.svc.cluster.local\"",
        "path: \"/api/v1/admission/inject/namespace\"",
        "path: \"/api/v1/admission/inject/pod\"",
        "failurePolicy: \"Ignore\"",
    ] {
        assert!(yaml.contains(needle), "{needle} missing from\n{yaml}");
    }
    assert_eq!(yaml.matches("---\n").count(), 10, "{yaml}");

    // The webhook trusts the anchor the control plane is given, which is the one kept in the
    // identity directory; printing the manifests again keeps it.
    use base64::Engine;
    let decode = |b64: &str| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap();
    let anchor = std::fs::read_to_string(identity.path().join("anchor.pem")).unwrap();
    assert_eq!(decode(value_in(&yaml, "MutatingWebhookConfiguration", "caBundle")), anchor);
    assert_eq!(decode(value_in(&yaml, "Secret", "anchor.pem")), anchor);
    assert_eq!(install(identity.path()), yaml, "the same mesh, the same manifests");
}

/// The probes the Deployment names: `/live` while the process serves, `/ready` while the
/// database answers (a replica that lost it leaves the Service's endpoints).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_answer_as_the_manifests_expect() {
    use trellis_server::testing::{PolicyRepo, http_get};
    let repo = PolicyRepo::demo();
    let data = tempfile::tempdir().unwrap();
    let config = trellis_server::serve::ServeConfig::local(
        trellis_server::gitops::PolicySource::local(repo.path(), "main"),
        data.path(),
    );
    let cp = trellis_server::serve::start(config).await.unwrap();
    assert_eq!(http_get(cp.addr, "trellis", "/live").await.unwrap().0, 200);
    assert_eq!(http_get(cp.addr, "trellis", "/ready").await.unwrap(), (http::StatusCode::OK, "ready\n".to_string()));
    cp.state.store.close().await;
    let (status, body) = http_get(cp.addr, "trellis", "/ready").await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("the database does not answer"), "{body}");
    assert_eq!(http_get(cp.addr, "trellis", "/live").await.unwrap().0, 200, "alive all the same: no restart");
    cp.shutdown().await;
}
