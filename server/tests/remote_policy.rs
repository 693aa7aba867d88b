//! Following a remote repository: mirrored, fetched on a signed webhook (long before the next
//! poll), and a force push detected and recorded.

use std::time::{Duration, Instant};
use trellis_server::gitops::PolicySource;
use trellis_server::serve::{Running, ServeConfig};
use trellis_server::testing::{PolicyRepo, http_get, http_request};

const SECRET: &str = "s3cret";

async fn applied_sha(cp: &Running) -> Option<String> {
    let (_, body) = http_get(cp.addr, "trellis", "/api/v1/overview").await.ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["applied"]["sha"].as_str().map(str::to_string)
}

async fn wait_applied(cp: &Running, sha: &str) -> Duration {
    let start = Instant::now();
    while applied_sha(cp).await.as_deref() != Some(sha) {
        assert!(start.elapsed() < Duration::from_secs(15), "{sha} not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

async fn hook(cp: &Running, signature: Option<&str>) -> u16 {
    let body = r#"{"ref":"refs/heads/main"}"#;
    let mut headers = vec![("content-type", "application/json")];
    if let Some(s) = signature {
        headers.push(("x-hub-signature-256", s));
    }
    let (status, _) =
        http_request(http::Method::POST, cp.addr, "/api/v1/hooks/git", &headers, body.into()).await.unwrap();
    status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_branch_is_fetched_on_a_signed_hook_and_force_pushes_are_recorded() {
    let remote = PolicyRepo::demo();
    let data = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let mut policy = PolicySource::new(&url, "main", &data.path().join("repos"));
    // Far beyond the test's patience: only the webhook can make changes arrive in time.
    policy.poll_interval = Duration::from_secs(600);
    let cp = trellis_server::serve::start(ServeConfig {
        webhook_secret: Some(SECRET.into()),
        ..ServeConfig::local(policy, data.path())
    })
    .await
    .unwrap();
    let seed = remote.head();
    wait_applied(&cp, &seed.to_string()).await;

    let half = remote.set_inventory_split(50, 50, "half");
    assert_eq!(hook(&cp, None).await, 401, "unsigned hooks are refused");
    assert_eq!(hook(&cp, Some("sha256=00")).await, 401);
    let body = r#"{"ref":"refs/heads/main"}"#;
    let signature = trellis_server::webhook::sign(SECRET.as_bytes(), body.as_bytes());
    assert_eq!(hook(&cp, Some(&signature)).await, 202);
    let took = wait_applied(&cp, &half.to_string()).await;
    println!("webhook to applied: {took:?}");

    // Force push: main now points at a commit that does not descend from `half`.
    remote.reset_hard(seed);
    let rewritten = remote.set_inventory_split(90, 10, "rewrite history");
    assert_eq!(hook(&cp, Some(&signature)).await, 202);
    wait_applied(&cp, &rewritten.to_string()).await;
    // The audit writer is asynchronous: wait for the events rather than race them.
    let start = Instant::now();
    let kinds = loop {
        let (_, audit) = http_get(cp.addr, "trellis", "/api/v1/audit?limit=100").await.unwrap();
        let audit: serde_json::Value = serde_json::from_str(&audit).unwrap();
        let kinds: Vec<String> =
            audit["items"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str().map(String::from)).collect();
        if kinds.iter().any(|k| k == "revision.history_rewritten") || start.elapsed() > Duration::from_secs(5) {
            break kinds;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(kinds.iter().any(|k| k == "revision.history_rewritten"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "hook.denied").count(), 2, "{kinds:?}");
    cp.shutdown().await;
}
