//! Notifications end to end, against a real HTTP receiver: a Notification committed to git
//! tells a webhook of a canary's abort, once, signed with the key its policy names; a receiver that fails twice gets the third try, across a control-plane restart;
//! a secret the control plane does not have rejects the revision with TR0126. Each delivery's
//! outcome is in the audit log and on the Rollouts page's data.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trellis_server::auth::User;
use trellis_server::gitops::PolicySource;
use trellis_server::serve::{Running, ServeConfig};
use trellis_server::testing::{PolicyRepo, http_get, http_request, wait_audited};

const ANN: &str = "ann-operator-token-0001";
/// What `TRELLIS_TEST_HOOK_SECRET` holds for these tests' control planes.
const SECRET: &str = "test-hook-secret";

/// One request the receiver got: its headers and body.
#[derive(Clone, Debug)]
struct Got {
    headers: http::HeaderMap,
    body: serde_json::Value,
    raw: Bytes,
}

/// An HTTP receiver that records every request and answers 503 to the first `fail` of them.
async fn receiver(fail: usize) -> (SocketAddr, Arc<Mutex<Vec<Got>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let kept = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let kept = kept.clone();
            let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let kept = kept.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let raw = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let body = serde_json::from_slice(&raw).unwrap_or_default();
                    let n = {
                        let mut all = kept.lock().unwrap();
                        all.push(Got { headers: parts.headers, body, raw });
                        all.len()
                    };
                    let status = if n <= fail { 503 } else { 200 };
                    let mut resp = http::Response::new(Full::new(Bytes::new()));
                    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, svc));
        }
    });
    (addr, got)
}

fn notification(events: &str, receiver: SocketAddr, secret_from: &str) -> String {
    format!(
        "kind: Notification\nname: canary-alerts\nevents: [{events}]\nservices: [inventory]\n\
         webhook:\n  url: http://{receiver}/hooks/trellis\n  secretFrom: {secret_from}\n"
    )
}

async fn control_plane(repo: &PolicyRepo, db: &Path) -> Running {
    // As an environment variable would; set in-process, so tests never change the environment.
    trellis_server::secrets::provide("TRELLIS_TEST_HOOK_SECRET", SECRET);
    trellis_server::serve::start(ServeConfig {
        users: User::parse_list(&format!("ann:operator:{ANN}")).unwrap(),
        ..ServeConfig::local(
            PolicySource { poll_interval: Duration::from_millis(300), ..PolicySource::local(repo.path(), "main") },
            db,
        )
    })
    .await
    .unwrap()
}

/// Waits until the receiver got `n` requests (within 20 s).
async fn wait_for(got: &Arc<Mutex<Vec<Got>>>, n: usize) -> Vec<Got> {
    let started = Instant::now();
    loop {
        let all = got.lock().unwrap().clone();
        if all.len() >= n {
            return all;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the receiver got {} of {n}: {all:?}", all.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_json(cp: &Running, path: &str) -> serde_json::Value {
    let (_, body) = http_get(cp.addr, "trellis", path).await.unwrap();
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_abort_reaches_the_webhook_once_signed() {
    let (addr, got) = receiver(0).await;
    // The demo's inventory-v2 canary runs from the start.
    let repo = PolicyRepo::demo();
    let db = tempfile::tempdir().unwrap();
    let cp = control_plane(&repo, db.path()).await;
    repo.commit(
        "notifications/canary-alerts.yaml",
        &notification("rollout-aborted, rollout-completed", addr, "TRELLIS_TEST_HOOK_SECRET"),
        "Tell the hook about inventory's canaries",
    );
    wait_audited(cp.addr, "revision.applied", "Tell the hook").await;

    let headers = [("authorization", format!("Bearer {ANN}"))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) =
        http_request(http::Method::POST, cp.addr, "/api/v1/rollouts/inventory-v2/abort", &headers, Bytes::new())
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let all = wait_for(&got, 1).await;
    let abort = &all[0];
    assert_eq!(abort.body["event"], "rollout-aborted");
    assert_eq!(abort.body["notification"], "canary-alerts");
    assert_eq!(abort.body["service"], "inventory");
    assert_eq!(abort.body["audit"]["kind"], "rollout.aborted");
    assert_eq!(abort.body["audit"]["actor"], "ann");
    assert!(abort.body["summary"].as_str().unwrap().contains("aborted"), "{:?}", abort.body);
    assert_eq!(abort.headers["x-trellis-event"], "rollout-aborted");
    assert_eq!(abort.headers["content-type"], "application/json");
    let signature = abort.headers["x-trellis-signature-256"].to_str().unwrap();
    assert_eq!(signature, trellis_server::webhook::sign(SECRET.as_bytes(), &abort.raw), "HMAC-SHA256 of the body");
    assert!(trellis_server::webhook::verify(SECRET.as_bytes(), &abort.raw, Some(signature)).is_ok());

    // Once: later looks at the audit log queue nothing again.
    wait_audited(cp.addr, "notification.delivered", "rollout-aborted (inventory) after 1 try").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(got.lock().unwrap().len(), 1, "told once");
    let rollouts = get_json(&cp, "/api/v1/rollouts").await;
    let deliveries = rollouts["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{rollouts}");
    assert_eq!(
        (deliveries[0]["event"].as_str(), deliveries[0]["state"].as_str()),
        (Some("rollout-aborted"), Some("delivered"))
    );
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_twice_gets_the_third_try_across_a_restart() {
    let (addr, got) = receiver(2).await;
    let repo = PolicyRepo::demo();
    let db = tempfile::tempdir().unwrap();
    let cp = control_plane(&repo, db.path()).await;
    repo.commit(
        "notifications/canary-alerts.yaml",
        &notification("revision-rejected", addr, "TRELLIS_TEST_HOOK_SECRET"),
        "Tell the hook about rejected revisions",
    );
    wait_audited(cp.addr, "revision.applied", "Tell the hook").await;
    repo.commit("services/broken.yaml", "kind: Service\nname: Not_A_Name\nversions: [v1]\n", "A broken service");
    let first = wait_for(&got, 1).await;
    assert_eq!(first[0].body["event"], "revision-rejected");
    // The control plane stops with the delivery to be tried again; the next one carries on.
    cp.shutdown().await;
    let cp = control_plane(&repo, db.path()).await;
    let all = wait_for(&got, 3).await;
    let ids: Vec<&http::HeaderValue> = all.iter().map(|g| &g.headers["x-trellis-delivery"]).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "one delivery, tried three times: {ids:?}");
    wait_audited(cp.addr, "notification.delivered", "revision-rejected after 3 tries").await;
    let rollouts = get_json(&cp, "/api/v1/rollouts").await;
    let d = &rollouts["deliveries"][0];
    assert_eq!((d["state"].as_str(), d["attempts"].as_i64()), (Some("delivered"), Some(3)), "{rollouts}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(got.lock().unwrap().len(), 3, "the restart queued nothing again");
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_control_plane_does_not_have_rejects_the_revision() {
    let repo = PolicyRepo::demo();
    let db = tempfile::tempdir().unwrap();
    let cp = control_plane(&repo, db.path()).await;
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    repo.commit(
        "notifications/canary-alerts.yaml",
        &notification("rollout-aborted", addr, "TRELLIS_TEST_NOT_SET_ANYWHERE"),
        "A hook with a secret nobody set",
    );
    wait_audited(cp.addr, "revision.rejected", "TRELLIS_TEST_NOT_SET_ANYWHERE").await;
    let audit = get_json(&cp, "/api/v1/audit?kind=revision.rejected").await;
    let errors = &audit["items"][0]["detail"]["errors"][0];
    assert_eq!(errors["code"], "TR0126", "{audit}");
    assert_eq!(errors["file"], "notifications/canary-alerts.yaml");
    assert!(errors["line"].as_u64().unwrap() > 0, "it points at the line: {errors}");
    cp.shutdown().await;
}
