//! The sidecar injector end to end: the control plane answers real AdmissionReview documents
//! (the API reference's shape, a Deployment's pod); the JSON Patch it returns, applied as the
//! API server applies it (RFC 6902), gives a pod that `kubernetes-validate --strict` (PyPI)
//! accepts for the current Kubernetes release, with the proxy and its settings; reviewing the
//! injected pod again changes nothing; a pod that opts out and a malformed review are answered
//! with a review, never an error status.

use serde_json::{Value, json};
use std::time::Duration;
use trellis_server::gitops::PolicySource;
use trellis_server::serve::ServeConfig;
use trellis_server::testing::{PolicyRepo, admission_patch, admission_review, http_request};

/// A pod as a Deployment's ReplicaSet creates it.
fn pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "inventory-v2-7d4b9c5f6-",
            "namespace": "shop",
            "labels": { "app.kubernetes.io/name": "inventory", "app.kubernetes.io/version": "v2", "pod-template-hash": "7d4b9c5f6" },
            "annotations": annotations,
        },
        "spec": {
            "containers": [{
                "name": "inventory",
                "image": "registry.example.com/shop/inventory:2.0.1",
                "ports": [{ "containerPort": 9000, "protocol": "TCP" }],
                "env": [{ "name": "LOG_LEVEL", "value": "info" }],
            }],
            "restartPolicy": "Always",
        },
    })
}

async fn post(addr: std::net::SocketAddr, scope: &str, body: Vec<u8>) -> Value {
    let path = format!("/api/v1/admission/inject/{scope}");
    let headers = [("content-type", "application/json")];
    let (status, text) = http_request(http::Method::POST, addr, &path, &headers, body.into()).await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn apply(pod: &Value, answer: &Value) -> Value {
    let mut patched = pod.clone();
    if let Some(patch) = admission_patch(&answer["response"]) {
        json_patch::patch(&mut patched, &serde_json::from_value::<json_patch::Patch>(patch).unwrap()).unwrap();
    }
    patched
}

/// kubernetes-validate --strict on one manifest.
fn validate(manifest: &Value) -> (bool, String) {
    let python = std::env::var("TRELLIS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let bin = std::path::Path::new(&python).with_file_name("kubernetes-validate");
    assert!(bin.exists(), "{} is missing: scripts/setup.sh --for-tests installs kubernetes-validate", bin.display());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.json");
    std::fs::write(&file, serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
    let out = std::process::Command::new(bin).arg("--strict").arg(&file).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_that_asks_gets_a_valid_proxy_once_and_the_rest_pass_as_they_are() {
    let repo = PolicyRepo::demo();
    let db = tempfile::tempdir().unwrap();
    let cp = trellis_server::serve::start(ServeConfig {
        injector: trellis_server::inject::Injector {
            image: "registry.example.com/trellis-proxy:1.2.3".into(),
            control_plane: "http://trellis.mesh.svc:8080".into(),
            join_tokens: "join-tokens".into(),
        },
        ..ServeConfig::local(
            PolicySource { poll_interval: Duration::from_millis(300), ..PolicySource::local(repo.path(), "main") },
            db.path(),
        )
    })
    .await
    .unwrap();

    let asking = pod(json!({ "trellis.io/inject": "enabled" }));
    let answer = post(cp.addr, "pod", serde_json::to_vec(&admission_review(&asking)).unwrap()).await;
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(answer["response"]["allowed"], true);
    let injected = apply(&asking, &answer);
    // The API server names the pod from generateName before it stores it.
    let mut named = injected.clone();
    named["metadata"]["name"] = json!("inventory-v2-7d4b9c5f6-x2k8p");
    let (valid, said) = validate(&named);
    assert!(valid, "the injected pod is not a valid Pod: {said}\n{injected:#}");
    let (valid, said) = validate(
        &json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "x" }, "spec": { "containers": [{ "name": "c", "image": "i", "bogus": 1 }] } }),
    );
    assert!(!valid, "the validator refuses what is not a Pod: {said}");
    let proxy = &injected["spec"]["containers"][1];
    assert_eq!(proxy["image"], "registry.example.com/trellis-proxy:1.2.3");
    let env = |name: &str| proxy["env"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned().unwrap();
    assert_eq!(env("TRELLIS_CONTROL_PLANE_URL")["value"], "http://trellis.mesh.svc:8080");
    assert_eq!(env("TRELLIS_JOIN_TOKEN")["valueFrom"]["secretKeyRef"]["name"], "join-tokens");
    assert_eq!(env("TRELLIS_SERVICE")["value"], "inventory");
    assert_eq!(injected["spec"]["containers"][0]["env"][1]["name"], "HTTP_PROXY");

    // Again: the pod has its proxy, nothing changes.
    let again = post(cp.addr, "pod", serde_json::to_vec(&admission_review(&injected)).unwrap()).await;
    assert_eq!(again["response"]["allowed"], true);
    assert!(again["response"].get("patch").is_none(), "{again}");

    // A namespace that asks: every pod but one that opts out.
    let plain = pod(json!({}));
    let answer = post(cp.addr, "namespace", serde_json::to_vec(&admission_review(&plain)).unwrap()).await;
    assert_eq!(apply(&plain, &answer)["spec"]["containers"].as_array().unwrap().len(), 2);
    let out = pod(json!({ "trellis.io/inject": "disabled" }));
    let answer = post(cp.addr, "namespace", serde_json::to_vec(&admission_review(&out)).unwrap()).await;
    assert_eq!((answer["response"]["allowed"].clone(), apply(&out, &answer)), (json!(true), out));

    // Malformed: a review that refuses, with the reason, not a 500.
    let answer = post(cp.addr, "pod", b"{\"kind\": \"AdmissionReview\"".to_vec()).await;
    assert_eq!(answer["response"]["allowed"], false);
    assert!(
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("not an admission.k8s.io/v1 AdmissionReview")
    );
    cp.shutdown().await;
}

/// POSTs `body` over TLS to `addr`, checking its certificate for `name` against `anchor` only,
/// as the API server does with the webhook's caBundle.
async fn post_tls(addr: std::net::SocketAddr, name: &str, anchor: &str, body: Vec<u8>) -> Result<Value, String> {
    use http_body_util::BodyExt;
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(anchor.as_bytes()).unwrap()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::post("/api/v1/admission/inject/pod")
        .header("host", "trellis-injector")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Ok(serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_reaches_the_injector_over_tls_by_its_service_name() {
    let repo = PolicyRepo::demo();
    let db = tempfile::tempdir().unwrap();
    let mut config = ServeConfig::local(PolicySource::local(repo.path(), "main"), db.path());
    let names = vec!["trellis-injector.mesh.svc".to_string(), "trellis-injector.mesh.svc.cluster.local".to_string()];
    config.identity = Some(trellis_server::serve::IdentityConfig {
        admission: Some(("127.0.0.1:0".parse().unwrap(), names)),
        ..trellis_server::serve::IdentityConfig::new(db.path().join("identity"), "trellis.local")
    });
    let cp = trellis_server::serve::start(config).await.unwrap();
    let (addr, anchor) = (cp.admission_addr.unwrap(), cp.state.ca.as_ref().unwrap().anchor_pem.clone());
    let body = serde_json::to_vec(&admission_review(&pod(json!({ "trellis.io/inject": "enabled" })))).unwrap();
    for name in ["trellis-injector.mesh.svc", "trellis-injector.mesh.svc.cluster.local"] {
        let answer = post_tls(addr, name, &anchor, body.clone()).await.unwrap();
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        assert!(answer["response"]["patch"].is_string(), "{answer}");
    }
    // The certificate is for the injector's names, and from this mesh's anchor only.
    let wrong = post_tls(addr, "trellis.mesh.svc", &anchor, body.clone()).await.unwrap_err();
    assert!(wrong.contains("not valid for name"), "{wrong}");
    let other = trellis_server::identity::Ca::load_or_create(&db.path().join("other"), "elsewhere").unwrap();
    let untrusted = post_tls(addr, "trellis-injector.mesh.svc", &other.anchor_pem, body).await.unwrap_err();
    assert!(untrusted.contains("UnknownIssuer"), "{untrusted}");
    cp.shutdown().await;
}
