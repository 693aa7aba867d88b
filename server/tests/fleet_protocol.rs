//! The proxy protocol from the control plane's side, spoken by a test client: a NACK shows as
//! a NACK and the proxy is not counted as synced; bad registrations are refused with reasons;
//! a stream replaced by a newer one of the same proxy ends; an accepted report says when to
//! send the next, and a stream how often it pings.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;
use trellis_server::gitops::PolicySource;
use trellis_server::serve::ServeConfig;
use trellis_server::testing::{PolicyRepo, http_get, http_request};

async fn control_plane(repo: &PolicyRepo, dir: &std::path::Path) -> trellis_server::serve::Running {
    trellis_server::serve::start(ServeConfig::local(
        PolicySource { poll_interval: Duration::from_millis(200), ..PolicySource::local(repo.path(), "main") },
        dir,
    ))
    .await
    .unwrap()
}

/// Posts `body` as JSON to `path`, as a proxy does: the answer's body may be a stream.
async fn post(
    cp: &trellis_server::serve::Running,
    path: &str,
    body: serde_json::Value,
) -> http::Response<hyper::body::Incoming> {
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("{}{path}", cp.url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())));
    client.request(req.unwrap()).await.unwrap()
}

/// The registration of an inventory proxy named `id`.
fn registration(id: &str) -> serde_json::Value {
    serde_json::json!({
        "proxy_id": id, "service": "inventory", "version": "v1", "inbound_addr": "127.0.0.1:4143",
        "admin_addr": "127.0.0.1:4191", "proxy_version": "test",
    })
}

/// Opens a config stream as an inventory proxy named `id` would; the stream lives as long as
/// the returned body.
async fn open_stream(cp: &trellis_server::serve::Running, id: &str) -> hyper::body::Incoming {
    post(cp, "/fleet/v1/stream", registration(id)).await.into_body()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_shows_as_nack_and_the_proxy_is_not_synced() {
    let (repo, dir) = (PolicyRepo::demo(), tempfile::tempdir().unwrap());
    let cp = control_plane(&repo, dir.path()).await;
    let mut body = open_stream(&cp, "picky").await;
    let mut buf = Vec::new();
    let config: serde_json::Value = loop {
        let data = body.frame().await.unwrap().unwrap().into_data().unwrap();
        buf.extend_from_slice(&data);
        if let Some(n) = buf.iter().position(|b| *b == b'\n') {
            let msg: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
            buf.drain(..=n);
            if msg["type"] == "config" {
                break msg;
            }
        }
    };
    let version = config["version"].as_str().unwrap().to_string();
    let services: Vec<&String> = config["services"].as_object().unwrap().keys().collect();
    assert_eq!(services, vec!["inventory", "storefront"], "a slice: inventory may call storefront, not catalog");
    let nack = serde_json::json!({ "proxy_id": "picky", "version": version, "error": "regex too big" }).to_string();
    let (status, _) = http_request(http::Method::POST, cp.addr, "/fleet/v1/ack", &[], nack.into()).await.unwrap();
    assert_eq!(status, 204);
    let (_, fleet) = http_get(cp.addr, "trellis", "/api/v1/fleet").await.unwrap();
    let fleet: serde_json::Value = serde_json::from_str(&fleet).unwrap();
    assert_eq!((fleet["total"].as_u64(), fleet["synced"].as_u64()), (Some(1), Some(0)));
    assert_eq!(fleet["proxies"][0]["nack"], "regex too big");
    drop(body);
    cp.shutdown().await;
}

#[tokio::test]
async fn bad_registrations_and_acks_are_refused_with_reasons() {
    let (repo, dir) = (PolicyRepo::demo(), tempfile::tempdir().unwrap());
    let cp = control_plane(&repo, dir.path()).await;
    let post =
        |path: &'static str, body: &'static str| http_request(http::Method::POST, cp.addr, path, &[], body.into());
    let (status, body) = post(
        "/fleet/v1/stream",
        r#"{"proxy_id":"","service":"a","version":"v1","inbound_addr":"nowhere","admin_addr":"","proxy_version":"x"}"#,
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    assert!(
        body.contains("proxy_id must be 1 to 253 characters") && body.contains("is not an address like 10.0.0.7:4143"),
        "{body}"
    );
    let (status, body) = post("/fleet/v1/ack", r#"{"proxy_id":"ghost","version":"x.1","error":null}"#).await.unwrap();
    assert_eq!(status, 404, "{body}");
    let (status, _) = post("/fleet/v1/ack", "not json").await.unwrap();
    assert_eq!(status, 400);
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_stops_heartbeating_is_dropped_though_its_stream_stays_open() {
    let (repo, dir) = (PolicyRepo::demo(), tempfile::tempdir().unwrap());
    let cp = control_plane(&repo, dir.path()).await;
    // The stream stays open (the body is held), but no telemetry report ever comes.
    let _body = open_stream(&cp, "hung").await;
    let started = std::time::Instant::now();
    let total = |body: String| serde_json::from_str::<serde_json::Value>(&body).unwrap()["total"].as_u64().unwrap();
    assert_eq!(total(http_get(cp.addr, "trellis", "/api/v1/fleet").await.unwrap().1), 1);
    loop {
        if total(http_get(cp.addr, "trellis", "/api/v1/fleet").await.unwrap().1) == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "a silent proxy was never dropped");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        started.elapsed() >= trellis_server::fleet::HEARTBEAT_TIMEOUT,
        "dropped too early: {:?}",
        started.elapsed()
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn a_second_control_plane_on_the_same_data_directory_refuses_to_start() {
    let (repo, dir) = (PolicyRepo::demo(), tempfile::tempdir().unwrap());
    let first = control_plane(&repo, dir.path()).await;
    let config = ServeConfig::local(PolicySource::local(repo.path(), "main"), dir.path());
    let Err(refused) = trellis_server::serve::start(config.clone()).await else {
        panic!("two control planes shared one data directory")
    };
    let message = refused.to_string();
    assert!(message.contains("another trellis serve") && message.contains("--data-dir"), "{message}");
    // Its own directory, or the same one once the first has stopped, is fine.
    let other = tempfile::tempdir().unwrap();
    trellis_server::serve::start(ServeConfig::local(PolicySource::local(repo.path(), "main"), other.path()))
        .await
        .unwrap()
        .shutdown()
        .await;
    first.shutdown().await;
    trellis_server::serve::start(config).await.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_replaced_by_a_newer_one_of_the_same_proxy_ends() {
    let (repo, dir) = (PolicyRepo::demo(), tempfile::tempdir().unwrap());
    let cp = control_plane(&repo, dir.path()).await;
    let mut old = open_stream(&cp, "twice").await;
    let _new = open_stream(&cp, "twice").await;
    // The old one ends at its next ping (every two seconds), having sent what it had.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = old.frame().await {
            frame.unwrap();
        }
    })
    .await;
    assert!(ended.is_ok(), "the replaced stream is still open");
    let (_, fleet) = http_get(cp.addr, "trellis", "/api/v1/fleet").await.unwrap();
    let fleet: serde_json::Value = serde_json::from_str(&fleet).unwrap();
    assert_eq!(fleet["total"].as_u64(), Some(1), "the proxy stays, on its new stream: {fleet}");
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_report_says_when_to_send_the_next() {
    let (repo, dir) = (PolicyRepo::demo(), tempfile::tempdir().unwrap());
    let cp = control_plane(&repo, dir.path()).await;
    let _stream = open_stream(&cp, "reporter").await;
    let report = serde_json::json!({ "proxy_id": "reporter", "seq": 1, "series": [] });
    let resp = post(&cp, "/fleet/v1/telemetry", report).await;
    assert_eq!(resp.status(), 204);
    let every = resp.headers().get(trellis_model::fleet::REPORT_EVERY_HEADER).map(|v| v.to_str().unwrap());
    assert_eq!(every, Some("2"), "a small fleet reports every two seconds");
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_says_how_often_it_pings_and_pings_no_less_often_than_the_proxy_accepts() {
    use trellis_model::fleet::PING_EVERY_HEADER;
    let (repo, dir) = (PolicyRepo::demo(), tempfile::tempdir().unwrap());
    let cp = control_plane(&repo, dir.path()).await;
    let reg = |id: &str, max: Option<u64>| {
        let mut reg = registration(id);
        if let Some(max) = max {
            reg["max_ping_every_s"] = max.into();
        }
        reg
    };
    let header = |resp: &http::Response<hyper::body::Incoming>| {
        resp.headers().get(PING_EVERY_HEADER).map(|v| v.to_str().unwrap().to_string())
    };
    // A proxy that names no interval is pinged every two seconds, as before the header; a
    // small fleet is pinged that often even by a proxy that would accept less.
    let old = post(&cp, "/fleet/v1/stream", reg("old", None)).await;
    assert_eq!(header(&old).as_deref(), Some("2"));
    let patient = post(&cp, "/fleet/v1/stream", reg("patient", Some(10))).await;
    assert_eq!(header(&patient).as_deref(), Some("2"));
    // One that accepts only a second between pings gets them that often: more than one in
    // 3.5 s (at two seconds the second would come at 4 s).
    let eager = post(&cp, "/fleet/v1/stream", reg("eager", Some(1))).await;
    assert_eq!(header(&eager).as_deref(), Some("1"));
    let mut body = eager.into_body();
    let mut pings = 0;
    let window = tokio::time::sleep(Duration::from_millis(3_500));
    tokio::pin!(window);
    loop {
        tokio::select! {
            frame = body.frame() => {
                let data = frame.unwrap().unwrap().into_data().unwrap_or_default();
                pings += String::from_utf8_lossy(&data).matches(r#"{"type":"ping"}"#).count();
            }
            () = &mut window => break,
        }
    }
    assert!(pings >= 2, "{pings} pings in 3.5 s at one a second");
    cp.shutdown().await;
}
