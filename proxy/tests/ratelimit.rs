//! Local rate limits on the inbound side, through a real proxy: the admitted rate holds to the
//! limit over ten seconds of load well above it; a refusal is a 429 that says why and when to
//! come back; a rule's limit covers only what the rule matches; a changed config keeps the
//! buckets of a limit it did not change.

mod common;

use bytes::Bytes;
use common::{proxy_serving, spawn_app};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use trellis_model::config::{MatchConfig, PathConfig, Protocol, Rate, RateLimitConfig};
use trellis_model::{Backend, RuleConfig};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// An app that answers every request 200 at once.
async fn ok_app() -> SocketAddr {
    spawn_app(|stream| async move {
        let io = hyper_util::rt::TokioIo::new(stream);
        let svc = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(Bytes::from_static(b"ok"))))
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
    })
    .await
}

fn limit(by: &str, per_second: u32, burst: u32) -> RateLimitConfig {
    RateLimitConfig { by: by.into(), total: Some(Rate { per_second, burst }), per_caller: None, overrides: vec![] }
}

/// A proxy in front of [`ok_app`] whose own service has `limit`.
async fn limited_service(limit: RateLimitConfig) -> trellis_proxy::Running {
    proxy_serving(ok_app().await, Protocol::Http, |_| {}, |svc| svc.traffic.rate_limit = Some(limit)).await
}

/// (status, headers) of `GET path` to the proxy's inbound listener.
async fn get(client: &HttpClient, inbound: SocketAddr, path: &str) -> (u16, http::HeaderMap) {
    let req = http::Request::get(format!("http://{inbound}{path}")).header("host", "svc").body(Empty::new()).unwrap();
    let resp = client.request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let _ = body.collect().await;
    (parts.status.as_u16(), parts.headers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admitted_rate_holds_to_the_limit_over_ten_seconds() {
    const LIMIT: u32 = 100;
    // A small burst, so that the ten seconds measure the rate, not the bucket.
    let proxy = limited_service(limit("TrafficPolicy/svc", LIMIT, 10)).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let (admitted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let window = Duration::from_secs(10);
    // Four callers as fast as they can: far more than the limit is offered.
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (client, admitted, refused) = (client.clone(), admitted.clone(), refused.clone());
            let inbound = proxy.inbound;
            tokio::spawn(async move {
                while started.elapsed() < window {
                    match get(&client, inbound, "/").await.0 {
                        200 => admitted.fetch_add(1, Ordering::Relaxed),
                        429 => refused.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected {other}"),
                    };
                }
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let (admitted, refused) = (admitted.load(Ordering::Relaxed), refused.load(Ordering::Relaxed));
    let rate = admitted as f64 / seconds;
    eprintln!("{admitted} admitted, {refused} refused in {seconds:.2} s: {rate:.1}/s against a limit of {LIMIT}/s");
    assert!(refused > admitted, "the load offered ({} requests) was not above the limit", admitted + refused);
    let error = (rate - f64::from(LIMIT)).abs() / f64::from(LIMIT);
    assert!(error <= 0.05, "admitted {rate:.1}/s, {:.1} % from the limit", error * 100.0);
    let metrics = proxy.shared.metrics.render("p", "t.1");
    let line = format!(
        "trellis_proxy_rate_limited_total{{caller=\"plaintext\",by=\"TrafficPolicy/svc\",scope=\"total\"}} {refused}"
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
}

#[tokio::test]
async fn a_refusal_says_who_refused_and_when_to_come_back() {
    let proxy = limited_service(limit("TrafficPolicy/svc", 1, 2)).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    assert_eq!(get(&client, proxy.inbound, "/").await.0, 200);
    assert_eq!(get(&client, proxy.inbound, "/").await.0, 200, "the burst");
    let (status, headers) = get(&client, proxy.inbound, "/").await;
    assert_eq!(status, 429);
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(header("x-trellis-error").as_deref(), Some("rate-limited"));
    assert_eq!(header("x-trellis-denied-by").as_deref(), Some("TrafficPolicy/svc"));
    assert_eq!(header("retry-after").as_deref(), Some("1"), "one token a second");
    // The service's own counts: a 4xx, the caller's doing, not a failure of the service.
    let series = proxy.shared.metrics.render("p", "t.1");
    assert!(
        series.contains("direction=\"inbound\",dst_service=\"svc\",dst_version=\"v1\",route=\"\",status=\"4xx\"} 1"),
        "{series}"
    );
}

#[tokio::test]
async fn a_rule_limits_what_it_matches_and_a_new_config_keeps_unchanged_buckets() {
    let app = ok_app().await;
    let backends = vec![Backend { version: "v1".into(), weight: 100 }];
    let reports = RuleConfig {
        matches: vec![MatchConfig { path: Some(PathConfig::Prefix("/reports".into())), ..Default::default() }],
        rate_limit: Some(limit("Route/svc: /reports/*", 1, 1)),
        ..RuleConfig::catch_all(backends.clone())
    };
    let rules = vec![reports, RuleConfig::catch_all(backends)];
    let proxy = proxy_serving(app, Protocol::Http, |_| {}, |svc| svc.rules = rules).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    assert_eq!(get(&client, proxy.inbound, "/reports/q3").await.0, 200);
    let (status, headers) = get(&client, proxy.inbound, "/reports/q4").await;
    assert_eq!((status, headers.get("x-trellis-denied-by").unwrap().to_str().unwrap()), (429, "Route/svc: /reports/*"));
    for _ in 0..20 {
        assert_eq!(get(&client, proxy.inbound, "/items").await.0, 200, "other paths are not limited");
    }
    // The same config again under a new version: the spent bucket stays spent.
    let mut config = proxy.shared.config.load().config.clone();
    config.version = "t.2".into();
    proxy.shared.config.store(Arc::new(trellis_proxy::applied::Applied::new(config.clone()).unwrap()));
    assert_eq!(get(&client, proxy.inbound, "/reports/q4").await.0, 429, "a config swap is no refill");
    // A changed limit starts afresh.
    let svc = config.services.get_mut("svc").unwrap();
    svc.rules[0].rate_limit = Some(limit("Route/svc: /reports/*", 1, 3));
    config.version = "t.3".into();
    proxy.shared.config.store(Arc::new(trellis_proxy::applied::Applied::new(config).unwrap()));
    let statuses: Vec<u16> = futures::future::join_all((0..4).map(|_| get(&client, proxy.inbound, "/reports/q4")))
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 3, "{statuses:?}");
}
