//! The OpenAPI document: the committed copy is what the code describes, it is served at
//! `/api/v1/openapi.json`, and every GET endpoint's real answer, on a mesh with proxies,
//! rollouts and an audit log, matches the schema the document gives it (checked with
//! jsonschema from PyPI), and every other GET endpoint answers the media type it documents;
//! an error is RFC 9457 problem details, as documented.

use std::time::{Duration, Instant};
use trellis_server::gitops::PolicySource;
use trellis_server::serve::ServeConfig;
use trellis_server::testing::{PolicyRepo, fixed_app, http_get};

fn committed() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../schema/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_committed_document_is_current() {
    assert_eq!(committed(), trellis_server::api::openapi(), "run `trellis openapi > schema/openapi.json`");
}

/// A path of the document with its parameters filled from the running mesh.
fn fill(path: &str, head: &str, first: &str) -> String {
    path.replace("{name}", "catalog-v2")
        .replace("{rev}", head)
        .replace("{from}", first)
        .replace("{to}", head)
        .replace("{id}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_get_endpoint_answers_as_documented() {
    let repo = PolicyRepo::demo();
    let first = repo.head().to_string();
    let db = tempfile::tempdir().unwrap();
    let cp = trellis_server::serve::start(ServeConfig::local(
        PolicySource { poll_interval: Duration::from_millis(300), ..PolicySource::local(repo.path(), "main") },
        db.path(),
    ))
    .await
    .unwrap();
    trellis_server::testing::wait_audited(cp.addr, "revision.applied", &first[..8]).await;
    let head = repo.set_inventory_split(70, 30, "Inventory 70/30").to_string();
    // Proxies that report, so the fleet, topology and traffic have something to say.
    let mut proxies = Vec::new();
    for (service, version) in [("inventory", "v1"), ("inventory", "v2"), ("storefront", "v1")] {
        let settings = trellis_proxy::Settings::new(service, version, fixed_app("ok", 200).await, &cp.url());
        proxies.push(trellis_proxy::start(settings).await.unwrap());
    }
    let started = Instant::now();
    while proxies[2].shared.config.load().revision != head {
        assert!(started.elapsed() < Duration::from_secs(20), "the proxies never got {head}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..10 {
        http_get(proxies[2].outbound, "inventory", "/").await.unwrap();
    }

    let (status, served) = http_get(cp.addr, "trellis", "/api/v1/openapi.json").await.unwrap();
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(document, committed(), "served as committed");
    let (mut answers, mut media_checked) = (Vec::new(), 0);
    for (path, methods) in document["paths"].as_object().unwrap() {
        let Some(get) = methods.get("get") else { continue };
        let ok = &get["responses"]["200"]["content"];
        let Some(schema) = ok.get("application/json").and_then(|c| c.get("schema")) else {
            // Text or a stream (never ending: not asked), or this document itself: the media
            // type is the one documented.
            let media = ok.as_object().and_then(|c| c.keys().next()).unwrap().clone();
            if media != "text/event-stream" {
                let got = content_type(cp.addr, path).await;
                let essence = |m: &str| m.split(';').next().unwrap_or_default().trim().to_string();
                assert_eq!(essence(&got), essence(&media), "{path} answers {got}, documented as {media}");
                media_checked += 1;
            }
            continue;
        };
        let url = fill(path, &head, &first);
        let (status, body) = http_get(cp.addr, "trellis", &url).await.unwrap();
        assert_eq!(status, 200, "{url}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
        answers.push(serde_json::json!({ "what": url, "schema": schema, "body": body }));
    }
    assert!(answers.len() >= 18, "every GET endpoint that answers JSON: {}", answers.len());
    assert_eq!(media_checked, 5, "/live, /ready, /metrics, the audit export and this document");

    // An error: problem details, with the media type and the shape the document gives.
    let resp = trellis_server::testing::http_request(
        http::Method::GET,
        cp.addr,
        "/api/v1/rollouts/no-such-rollout",
        &[("host", "trellis")],
        bytes::Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(resp.0, 404);
    let problem: serde_json::Value = serde_json::from_str(&resp.1).unwrap();
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["type"], "urn:trellis:problem:not_found");
    let schema = &document["paths"]["/api/v1/rollouts/{name}"]["get"]["responses"]["default"]["content"]["application/problem+json"]
        ["schema"];
    answers.push(serde_json::json!({ "what": "a 404", "schema": schema, "body": problem }));

    let (ok, report) = validate(&document, &answers).await;
    assert!(ok, "answers that do not match the document:\n{report}");
    assert!(report.contains(&format!("{} answers checked, 0 mismatches", answers.len())), "{report}");
    // The check can fail: an answer that is not what the document says is caught.
    let wrong =
        serde_json::json!({ "what": "a wrong answer", "schema": answers[0]["schema"], "body": { "items": "none" } });
    let (ok, report) = validate(&document, &[wrong]).await;
    assert!(!ok && report.contains("a wrong answer: at /"), "{report}");
    for p in proxies {
        p.shutdown().await;
    }
    cp.shutdown().await;
}

/// Checks each answer against its schema with `tests/openapi/validate.py`: whether all match,
/// and what it said.
async fn validate(document: &serde_json::Value, answers: &[serde_json::Value]) -> (bool, String) {
    let input = serde_json::json!({ "document": document, "answers": answers }).to_string();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let python = std::env::var("TRELLIS_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi/validate.py");
        let mut child = std::process::Command::new(&python)
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python3 is required for this test");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        !stderr.contains("No module named 'jsonschema'"),
        "jsonschema is not installed for this Python: run scripts/setup.sh --for-tests"
    );
    (out.status.success(), format!("{stdout}{stderr}"))
}

/// The content type `path` is answered with.
async fn content_type(addr: std::net::SocketAddr, path: &str) -> String {
    use hyper_util::client::legacy::Client;
    let client: Client<_, http_body_util::Full<bytes::Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::get(format!("http://{addr}{path}")).body(Default::default()).unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.headers()[http::header::CONTENT_TYPE].to_str().unwrap().to_string()
}
