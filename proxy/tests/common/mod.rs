//! What the proxy's integration tests share: apps on local ports and a proxy routing to one.
#![allow(dead_code)] // each test binary uses its own part

pub mod otlp;

use std::net::SocketAddr;
use std::sync::Arc;
use trellis_model::config::Protocol;
use trellis_model::{Backend, Endpoint, ProxyConfig, RuleConfig, ServiceConfig};
use trellis_proxy::applied::Applied;

/// Accepts connections on a fresh local port and hands each to `serve` in a task of its own.
pub async fn spawn_app<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// The Python with the test packages (grpcio, opentelemetry-proto): `TRELLIS_TEST_PYTHON`
/// (scripts/test.sh sets up one), else python3.
pub fn python() -> String {
    std::env::var("TRELLIS_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn wait_listening(addr: SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{addr} never started listening");
}

/// A proxy routing service `svc` (of `protocol`) to `upstream`; for inbound use, its own
/// service is `svc` too, so the inbound listener forwards to `upstream` as the app.
pub async fn proxy_to(upstream: SocketAddr, protocol: Protocol) -> trellis_proxy::Running {
    proxy_with(upstream, protocol, |_| {}).await
}

/// The same, with settings of the test's own.
pub async fn proxy_with(
    upstream: SocketAddr,
    protocol: Protocol,
    set: impl FnOnce(&mut trellis_proxy::Settings),
) -> trellis_proxy::Running {
    proxy_serving(upstream, protocol, set, |_| {}).await
}

/// The same, with the service's config (its rule, its traffic policy) of the test's own.
pub async fn proxy_serving(
    upstream: SocketAddr,
    protocol: Protocol,
    set: impl FnOnce(&mut trellis_proxy::Settings),
    edit: impl FnOnce(&mut ServiceConfig),
) -> trellis_proxy::Running {
    let mut settings = trellis_proxy::Settings::new("svc", "v1", upstream, "http://127.0.0.1:9");
    set(&mut settings);
    let running = trellis_proxy::start(settings).await.unwrap();
    let mut svc = ServiceConfig::new(
        "svc",
        &["v1"],
        vec![RuleConfig::catch_all(vec![Backend { version: "v1".into(), weight: 100 }])],
    );
    svc.protocol = protocol;
    edit(&mut svc);
    let endpoint = Endpoint { version: "v1".into(), addr: upstream.to_string(), proxy_id: "up".into(), identity: None };
    let config = ProxyConfig {
        version: "t.1".into(),
        revision: "t".into(),
        mesh: Default::default(),
        services: [("svc".to_string(), svc)].into(),
        endpoints: [("svc".to_string(), vec![endpoint])].into(),
    };
    running.shared.config.store(Arc::new(Applied::new(config).unwrap()));
    running
}
