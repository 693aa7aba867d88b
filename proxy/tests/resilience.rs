//! The proxy's traffic features against real sockets: a programmable upstream behind a real
//! proxy, requests from a real client. Each test configures the proxy as the control plane
//! would (a compiled `ProxyConfig`), then measures what reached which upstream.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trellis_model::config::*;
use trellis_model::{Backend, Endpoint, ProxyConfig, RuleConfig, ServiceConfig};
use trellis_proxy::applied::Applied;

// ---- tests -------------------------------------------------------------------------------

#[tokio::test]
async fn weighted_split_stays_within_statistical_bounds() {
    let (v1, v2) = (Upstream::start().await, Upstream::start().await);
    let rule = rule(&[("v1", 20), ("v2", 80)]);
    let proxy = proxy(service(rule), &[("v1", &v1), ("v2", &v2)], 10_000).await;
    let n = 2000;
    for _ in 0..n {
        assert_eq!(get(proxy.outbound, "/").await.0, 200);
    }
    // Binomial(2000, 0.2): mean 400, sd 17.9; five sd either side.
    let hits = v1.hits();
    assert!((310..=490).contains(&hits), "v1 got {hits} of {n}");
    assert_eq!(v1.hits() + v2.hits(), n);
}

#[tokio::test]
async fn retries_stop_at_the_budget_while_an_upstream_fails() {
    let up = Upstream::start().await;
    up.set(Mode::Status(503));
    let mut r = rule(&[("v1", 100)]);
    r.retry = RetryConfig {
        attempts: 3,
        on: vec![RetryOn::GatewayError],
        budget: RetryBudget { ratio: 0.2, min_per_second: 0, window_ms: 10_000 },
        non_idempotent: false,
    };
    let proxy = proxy(service(r), &[("v1", &up)], 10_000).await;
    for _ in 0..100 {
        assert_eq!(get(proxy.outbound, "/").await.0, 503);
    }
    let m = &proxy.shared.metrics;
    let sent = m.get("trellis_proxy_retries_total", &[("dst_service", "svc"), ("result", "sent")]);
    assert!((19..=21).contains(&sent), "retries sent: {sent}");
    assert!(m.get("trellis_proxy_retries_total", &[("result", "budget_exhausted")]) > 50);
    assert_eq!(up.hits(), 100 + sent, "the upstream saw each request plus only the budgeted retries");
}

#[tokio::test]
async fn a_retry_rescues_a_failed_attempt_with_its_body_and_a_long_streamed_one_is_sent_once() {
    let up = Upstream::start().await;
    up.set(Mode::FailFirst(1, 502));
    let mut r = rule(&[("v1", 100)]);
    r.retry.attempts = 2;
    // A POST is retried on a 502 only where the route says a repeat is harmless.
    r.retry.non_idempotent = true;
    let proxy = proxy(service(r), &[("v1", &up)], 10_000).await;
    let (status, _, body) = post(proxy.outbound, "hello", true).await;
    assert_eq!((status, body.as_str()), (200, "hello"), "the buffered body was replayed intact");
    assert_eq!(up.hits(), 2);

    // Without a length, the body streams as it comes, a copy kept: the retry sends the copy.
    up.set(Mode::FailFirst(1, 502));
    let (status, _, body) = post(proxy.outbound, "streamed", false).await;
    assert_eq!((status, body.as_str()), (200, "streamed"), "the teed body was replayed intact");
    assert_eq!(up.hits(), 4);
    // Beyond what the copy keeps, it is sent once.
    up.set(Mode::FailFirst(1, 502));
    let long = "x".repeat(trellis_proxy::MAX_REPLAY_BODY + 1);
    let (status, _, _) = post(proxy.outbound, &long, false).await;
    assert_eq!(status, 502, "a body without a length, longer than the copy, streams through once");
    assert_eq!(up.hits(), 5);
}

#[tokio::test]
async fn a_request_the_upstream_may_have_processed_is_not_repeated_unless_it_is_idempotent() {
    let up = Upstream::start().await;
    // The default conditions include `reset`: the upstream read the request, then dropped it.
    let proxy = proxy(service(rule(&[("v1", 100)])), &[("v1", &up)], 10_000).await;
    up.set(Mode::DropFirst(1));
    let (status, error, _) = post(proxy.outbound, "order-1", true).await;
    assert_eq!((status, error.as_deref()), (502, Some("upstream-failed")));
    assert_eq!(up.bodies(), ["order-1"], "RFC 9110 §9.2.2: a POST it may have processed is sent once");
    up.set(Mode::DropFirst(1));
    assert_eq!(get(proxy.outbound, "/").await.0, 200, "a GET is sent again");
    assert_eq!(up.hits(), 3);

    // A route that opts in has POSTs retried on the same conditions.
    let mut r = rule(&[("v1", 100)]);
    r.retry.non_idempotent = true;
    proxy.shared.config.store(Arc::new(Applied::new(config(service(r), &[("v1", &up)])).unwrap()));
    up.set(Mode::DropFirst(1));
    assert_eq!(post(proxy.outbound, "order-2", true).await.0, 200);
    assert_eq!(up.bodies()[3..], ["order-2", "order-2"]);
}

#[tokio::test]
async fn a_clients_broken_body_is_a_400_and_never_counts_against_an_endpoint() {
    let (a, b) = (Upstream::start().await, Upstream::start().await);
    let proxy = proxy(service(rule(&[("v1", 100)])), &[("v1", &a), ("v1", &b)], 10_000).await;
    for bad in ["zz", "+5", "5 5"] {
        for _ in 0..4 {
            let mut s = tokio::net::TcpStream::connect(proxy.outbound).await.unwrap();
            let request = format!(
                "POST /orders HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n{bad}\r\nhello\r\n0\r\n\r\n"
            );
            s.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 400"), "{bad}: {answer}");
        }
    }
    let m = &proxy.shared.metrics;
    assert_eq!(m.get("trellis_proxy_ejections_total", &[("dst_service", "svc")]), 0, "no endpoint was ejected");
    for _ in 0..4 {
        assert_eq!(get(proxy.outbound, "/").await.0, 200);
    }
    let text = m.render("p", "r.1");
    assert!(!text.contains("status=\"5xx\"") && !text.contains("upstream-failed"), "{text}");
}

#[tokio::test]
async fn a_per_try_timeout_fires_and_the_request_timeout_bounds_the_whole() {
    let up = Upstream::start().await;
    up.set(Mode::SlowFirst(1, 2_000));
    let mut r = rule(&[("v1", 100)]);
    r.timeouts = Timeouts { request_ms: 5_000, per_try_ms: Some(100) };
    r.retry.attempts = 1;
    let proxy = proxy(service(r), &[("v1", &up)], 10_000).await;
    let started = Instant::now();
    assert_eq!(get(proxy.outbound, "/").await.0, 200, "the retry after the per-try timeout succeeds");
    assert!(started.elapsed() < Duration::from_millis(1_500));
    let timeouts = proxy.shared.metrics.get("trellis_proxy_attempts_total", &[("status", "timeout")]);
    assert_eq!(timeouts, 1);

    up.set(Mode::Delay(2_000));
    let mut r = rule(&[("v1", 100)]);
    r.timeouts = Timeouts { request_ms: 200, per_try_ms: None };
    proxy.shared.config.store(Arc::new(Applied::new(config(service(r), &[("v1", &up)])).unwrap()));
    let started = Instant::now();
    let (status, error) = get(proxy.outbound, "/").await;
    assert_eq!((status, error.as_deref()), (504, Some("timeout")));
    // A chunked body sends the connection to hyper, where the timeouts keep timers of their own.
    let (status, error, _) = post(proxy.outbound, "x", false).await;
    assert_eq!((status, error.as_deref()), (504, Some("timeout")));
    assert!(started.elapsed() < Duration::from_millis(1_500), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_and_returns_after_its_time() {
    let (bad, good) = (Upstream::start().await, Upstream::start().await);
    bad.set(Mode::Status(500));
    let mut svc = service(rule(&[("v1", 100)]));
    svc.traffic.outlier = OutlierConfig {
        enabled: true,
        consecutive_5xx: 3,
        consecutive_gateway_errors: 3,
        interval_ms: 10_000,
        base_ejection_ms: 500,
        max_ejected_percent: 50,
    };
    svc.traffic.load_balancer = LoadBalancer::RoundRobin;
    svc.rules[0].retry.attempts = 0;
    let proxy = proxy(svc, &[("v1", &bad), ("v1", &good)], 10_000).await;
    for _ in 0..40 {
        get(proxy.outbound, "/").await;
    }
    assert_eq!(bad.hits(), 3, "ejected after three consecutive errors");
    assert_eq!(proxy.shared.metrics.get("trellis_proxy_ejections_total", &[("dst_service", "svc")]), 1);
    bad.set(Mode::Ok);
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..10 {
        assert_eq!(get(proxy.outbound, "/").await.0, 200);
    }
    assert!(bad.hits() > 3, "back in rotation after the ejection time");
}

#[tokio::test]
async fn p2c_ewma_sends_most_traffic_to_the_faster_endpoint() {
    let (slow, fast) = (Upstream::start().await, Upstream::start().await);
    slow.set(Mode::Delay(40));
    let proxy = proxy(service(rule(&[("v1", 100)])), &[("v1", &slow), ("v1", &fast)], 10_000).await;
    for _ in 0..100 {
        get(proxy.outbound, "/").await;
    }
    assert!(fast.hits() >= 80, "fast {} slow {}", fast.hits(), slow.hits());
}

#[tokio::test]
async fn mirrored_traffic_reaches_its_version_and_never_answers() {
    let (v1, v2) = (Upstream::start().await, Upstream::start().await);
    v2.set(Mode::Status(500));
    let mut r = rule(&[("v1", 100)]);
    r.mirror = Some(MirrorConfig { version: "v2".into(), percent: 100.0 });
    let proxy = proxy(service(r), &[("v1", &v1), ("v2", &v2)], 10_000).await;
    for i in 0..20 {
        let (status, _, body) = post(proxy.outbound, &format!("order {i}"), true).await;
        assert_eq!((status, body), (200, format!("order {i}")), "the caller only ever sees v1");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while v2.hits() < 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((v1.hits(), v2.hits()), (20, 20));
    assert!(v2.bodies().contains(&"order 7".to_string()), "the copy carries the body");
}

#[tokio::test]
async fn faults_delay_and_abort_as_configured() {
    let up = Upstream::start().await;
    let mut r = rule(&[("v1", 100)]);
    r.fault = Some(FaultConfig { delay: Some(DelayConfig { percent: 100.0, duration_ms: 150 }), abort: None });
    let proxy = proxy(service(r.clone()), &[("v1", &up)], 10_000).await;
    let started = Instant::now();
    assert_eq!(get(proxy.outbound, "/").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    // The proxy times a request from its arrival to its answer, the delay within.
    let timed: f64 = proxy.shared.metrics.series().iter().map(|s| s.sum_seconds).sum();
    assert!((0.15..5.0).contains(&timed), "timed {timed} s");
    r.fault = Some(FaultConfig { delay: None, abort: Some(AbortConfig { percent: 100.0, status: 418 }) });
    proxy.shared.config.store(Arc::new(Applied::new(config(service(r), &[("v1", &up)])).unwrap()));
    assert_eq!(get(proxy.outbound, "/").await, (418, Some("fault-injected".into())));
    assert_eq!(up.hits(), 1, "an aborted request never reaches the upstream");
}

#[tokio::test]
async fn beyond_the_concurrency_limit_requests_are_shed_with_503() {
    let up = Upstream::start().await;
    up.set(Mode::Delay(500));
    let proxy = proxy(service(rule(&[("v1", 100)])), &[("v1", &up)], 2).await;
    let addr = proxy.outbound;
    let results = futures::future::join_all((0..6).map(|_| get(addr, "/"))).await;
    let shed = results.iter().filter(|r| r.0 == 503 && r.1.as_deref() == Some("overloaded")).count();
    assert_eq!(shed, 4, "{results:?}");
    assert_eq!(proxy.shared.metrics.get("trellis_proxy_shed_total", &[("direction", "outbound")]), 4);
}

#[tokio::test]
async fn a_service_at_its_pending_limit_answers_503_and_others_are_unaffected() {
    let up = Upstream::start().await;
    up.set(Mode::Delay(400));
    let mut svc = service(rule(&[("v1", 100)]));
    svc.traffic.limits.max_pending_requests = 2;
    let proxy = proxy(svc, &[("v1", &up)], 10_000).await;
    let addr = proxy.outbound;
    let results = futures::future::join_all((0..5).map(|_| get(addr, "/"))).await;
    let refused = results.iter().filter(|r| r.0 == 503 && r.1.as_deref() == Some("service-overloaded")).count();
    assert_eq!(refused, 3, "{results:?}");
    assert_eq!(results.iter().filter(|r| r.0 == 200).count(), 2);
    // The slots are returned when requests finish.
    assert_eq!(get(addr, "/").await.0, 200);
}

#[tokio::test]
async fn max_connections_bounds_upstream_connections_and_requests_wait_for_a_free_one() {
    let up = Upstream::start().await;
    up.set(Mode::Delay(150));
    let mut svc = service(rule(&[("v1", 100)]));
    svc.traffic.limits.max_connections = 2;
    let proxy = proxy(svc, &[("v1", &up)], 10_000).await;
    let results = futures::future::join_all((0..6).map(|_| get(proxy.outbound, "/"))).await;
    assert!(results.iter().all(|r| r.0 == 200), "every request is served, in turn: {results:?}");
    assert_eq!(up.hits(), 6);
    let opened = up.state.connections.load(Ordering::SeqCst);
    assert!(opened <= 2, "{opened} upstream connections under maxConnections 2");
    let waits = proxy.shared.metrics.get("trellis_proxy_connection_limit_waits_total", &[("dst_service", "svc")]);
    assert!(waits >= 1, "new connections waited for a slot: {waits}");
}

#[tokio::test]
async fn max_requests_per_connection_retires_a_connection_after_its_last_request() {
    let up = Upstream::start().await;
    let mut svc = service(rule(&[("v1", 100)]));
    svc.traffic.limits.max_requests_per_connection = 3;
    let proxy = proxy(svc, &[("v1", &up)], 10_000).await;
    for _ in 0..9 {
        assert_eq!(get(proxy.outbound, "/").await.0, 200);
    }
    // One at a time: each connection carries three requests, then a new one is opened.
    assert_eq!(up.state.connections.load(Ordering::SeqCst), 3);
}

// ---- harness -----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Mode {
    Ok,
    Status(u16),
    Delay(u64),
    /// The first n requests answer with the status, the rest 200.
    FailFirst(u64, u16),
    /// The first n requests take this many ms, the rest are immediate.
    SlowFirst(u64, u64),
    /// The first n requests are read whole, then the connection is dropped unanswered.
    DropFirst(u64),
}

/// An HTTP/1.1 server that answers as told and counts what it saw. It echoes request bodies.
#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    state: Arc<UpstreamState>,
}

struct UpstreamState {
    hits: AtomicU64,
    /// Connections accepted.
    connections: AtomicU64,
    mode: Mutex<(Mode, u64)>,
    bodies: Mutex<Vec<String>>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(UpstreamState {
            hits: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            mode: Mutex::new((Mode::Ok, 0)),
            bodies: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                s.connections.fetch_add(1, Ordering::SeqCst);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let s = s.clone();
                        async move { s.answer(req).await.ok_or("dropped, unanswered") }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Upstream { addr, state }
    }

    fn set(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = (mode, 0);
    }

    fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn bodies(&self) -> Vec<String> {
        self.state.bodies.lock().unwrap().clone()
    }
}

impl UpstreamState {
    /// The response, or none when the connection is to be dropped.
    async fn answer(&self, req: http::Request<hyper::body::Incoming>) -> Option<http::Response<Full<Bytes>>> {
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.bodies.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
        let (mode, seen) = {
            let mut m = self.mode.lock().unwrap();
            m.1 += 1;
            *m
        };
        let (status, delay) = match mode {
            Mode::Ok => (200, 0),
            Mode::Status(s) => (s, 0),
            Mode::Delay(ms) => (200, ms),
            Mode::FailFirst(n, s) => (if seen <= n { s } else { 200 }, 0),
            Mode::SlowFirst(n, ms) => (200, if seen <= n { ms } else { 0 }),
            Mode::DropFirst(n) if seen <= n => return None,
            Mode::DropFirst(_) => (200, 0),
        };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let mut resp = http::Response::new(Full::new(body));
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Some(resp)
    }
}

fn rule(weights: &[(&str, u32)]) -> RuleConfig {
    RuleConfig::catch_all(weights.iter().map(|(v, w)| Backend { version: v.to_string(), weight: *w }).collect())
}

fn service(rule: RuleConfig) -> ServiceConfig {
    ServiceConfig::new("svc", &["v1", "v2"], vec![rule])
}

fn config(svc: ServiceConfig, endpoints: &[(&str, &Upstream)]) -> ProxyConfig {
    let eps = endpoints
        .iter()
        .map(|(v, u)| Endpoint {
            version: v.to_string(),
            addr: u.addr.to_string(),
            proxy_id: u.addr.to_string(),
            identity: None,
        })
        .collect();
    ProxyConfig {
        version: "test.1".into(),
        revision: "test".into(),
        mesh: Default::default(),
        services: [("svc".to_string(), svc)].into(),
        endpoints: [("svc".to_string(), eps)].into(),
    }
}

/// A proxy with the given config and concurrency limit; its control plane is unreachable.
async fn proxy(svc: ServiceConfig, endpoints: &[(&str, &Upstream)], limit: usize) -> trellis_proxy::Running {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut settings = trellis_proxy::Settings::new("caller", "v1", closed, &format!("http://{closed}"));
    settings.max_concurrent_requests = limit;
    let running = trellis_proxy::start(settings).await.unwrap();
    running.shared.config.store(Arc::new(Applied::new(config(svc, endpoints)).unwrap()));
    running
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Option<String>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::get(format!("http://{addr}{path}")).header("host", "svc").body(Full::default()).unwrap();
    let resp = client.request(req).await.unwrap();
    let error = resp.headers().get("x-trellis-error").map(|v| v.to_str().unwrap().to_string());
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    (status, error)
}

/// A POST with a body of known length (`sized`) or a chunked one.
async fn post(addr: SocketAddr, text: &str, sized: bool) -> (u16, Option<String>, String) {
    let client: Client<_, http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>> =
        Client::builder(TokioExecutor::new()).build_http();
    let body = if sized {
        Full::new(Bytes::from(text.to_string())).boxed()
    } else {
        let chunks = futures::stream::iter(vec![Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
            Bytes::from(text.to_string()),
        ))]);
        http_body_util::StreamBody::new(chunks).boxed()
    };
    let req = http::Request::post(format!("http://{addr}/orders")).header("host", "svc").body(body).unwrap();
    let resp = client.request(req).await.unwrap();
    let error = resp.headers().get("x-trellis-error").map(|v| v.to_str().unwrap().to_string());
    let status = resp.status().as_u16();
    let text = resp
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    (status, error, text)
}
