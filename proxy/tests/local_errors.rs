//! Answers the proxy gives itself, each with a status and an `x-trellis-error` header saying
//! why, so an application can tell a mesh problem from an upstream one.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use trellis_model::{Backend, Endpoint, ProxyConfig, RuleConfig, ServiceConfig};

async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, Option<String>) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::get(format!("http://{addr}{path}")).header("host", host).body(Empty::new()).unwrap();
    let resp = client.request(req).await.unwrap();
    let header = resp.headers().get("x-trellis-error").map(|v| v.to_str().unwrap().to_string());
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    (status, header)
}

/// A proxy whose control plane is unreachable (a closed port).
async fn proxy() -> trellis_proxy::Running {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let settings = trellis_proxy::Settings::new("web", "v1", closed, &format!("http://{closed}"));
    trellis_proxy::start(settings).await.unwrap()
}

#[tokio::test]
async fn without_config_the_proxy_answers_503_and_is_not_ready() {
    let p = proxy().await;
    assert_eq!(get(p.outbound, "inventory", "/").await, (503, Some("no-config".into())));
    assert_eq!(get(p.admin, "admin", "/ready").await.0, 503, "not ready");
}

#[tokio::test]
async fn unknown_services_missing_endpoints_tcp_services_and_dead_upstreams_are_told_apart() {
    let p = proxy().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let backends = vec![Backend { version: "v1".into(), weight: 100 }];
    let svc = |name: &str| ServiceConfig::new(name, &["v1"], vec![RuleConfig::catch_all(backends.clone())]);
    let mut db = svc("db");
    db.protocol = trellis_model::config::Protocol::Tcp;
    let config = ProxyConfig {
        version: "r.1".into(),
        revision: "r".into(),
        mesh: Default::default(),
        services: [("empty".to_string(), svc("empty")), ("gone".to_string(), svc("gone")), ("db".to_string(), db)]
            .into(),
        endpoints: [(
            "gone".to_string(),
            vec![Endpoint { version: "v1".into(), addr: dead.to_string(), proxy_id: "x".into(), identity: None }],
        )]
        .into(),
    };
    p.shared.config.store(Arc::new(trellis_proxy::applied::Applied::new(config).unwrap()));
    assert_eq!(get(p.outbound, "nope", "/").await, (404, Some("unknown-service".into())));
    assert_eq!(get(p.outbound, "empty", "/").await, (503, Some("no-endpoints".into())));
    assert_eq!(get(p.outbound, "gone:80", "/").await, (502, Some("upstream-failed".into())));
    // A tcp service is no HTTP service: its application is reached through its own listener.
    assert_eq!(get(p.outbound, "db", "/").await, (421, Some("tcp-service".into())));
    // What the proxy answered itself is counted under the error kind.
    let metrics = p.shared.metrics.render("p", "r.1");
    assert!(
        metrics
            .contains("dst_service=\"gone\",dst_version=\"v1\",route=\"(all requests)\",status=\"upstream-failed\"} 1"),
        "{metrics}"
    );
}
