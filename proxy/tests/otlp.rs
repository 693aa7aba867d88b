//! Span export, against a real OTLP/HTTP receiver that decodes the protobuf with
//! OpenTelemetry's own messages: one request through two proxies makes one trace (the caller's
//! span the child of the application's, the callee's the child of the caller's, the
//! application's context the callee's span), sampling follows the caller's flag, a refused
//! export is tried again, and a collector that is gone costs requests nothing: spans are
//! dropped and counted.

mod common;

use bytes::Bytes;
use common::otlp::{Receiver, settings};
use common::proxy_with;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::net::SocketAddr;
use trellis_model::config::Protocol;

/// An app that answers with the `traceparent` it was sent.
async fn app() -> SocketAddr {
    common::spawn_app(|stream| async move {
        let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let seen = req.headers().get("traceparent").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(seen))))
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
    })
    .await
}

/// GET `path` through `outbound`, with a `traceparent` when given: status and body.
async fn get(outbound: SocketAddr, path: &str, traceparent: Option<&str>) -> (u16, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::get(format!("http://{outbound}{path}")).header("host", "svc");
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let resp = client.request(req.body(Full::default()).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn kind(spans: &[Value], kind: u64) -> &Value {
    spans.iter().find(|s| s["kind"] == kind).unwrap_or_else(|| panic!("no span of kind {kind} in {spans:?}"))
}

async fn metric(admin: SocketAddr, series: &str) -> u64 {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(http::Request::get(format!("http://{admin}/metrics")).body(Full::default()).unwrap());
    let text = resp.await.unwrap().into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&text).into_owned();
    let line = text.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

const CLIENT: u64 = 3;
const SERVER: u64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_through_two_proxies_is_one_trace_with_the_right_parents() {
    let receiver = Receiver::start(0);
    let app = app().await;
    let inventory =
        settings(&receiver.endpoint, "inventory-sidecar", &[("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=k%2C1")]);
    let callee = proxy_with(app, Protocol::Http, |s| s.otlp = Some(inventory)).await;
    let storefront = settings(&receiver.endpoint, "storefront-sidecar", &[]);
    let caller = proxy_with(callee.inbound, Protocol::Http, |s| s.otlp = Some(storefront)).await;

    // The application's own span, b7ad6b7169203331, is the parent of the whole hop.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let (status, seen) = get(caller.outbound, "/items?id=1", Some(&format!("00-{trace}-b7ad6b7169203331-01"))).await;
    assert_eq!(status, 200);
    let spans = receiver.trace(trace, 2).await;
    assert_eq!(spans.len(), 2, "{spans:?}");
    let (client, server) = (kind(&spans, CLIENT), kind(&spans, SERVER));
    assert_eq!(client["parent_span_id"], "b7ad6b7169203331");
    assert_eq!(server["parent_span_id"], client["span_id"], "the callee's span is the caller's child");
    let server_span = server["span_id"].as_str().unwrap();
    assert_eq!(seen, format!("00-{trace}-{server_span}-01"), "the application's context is the callee's span");

    assert_eq!(client["name"], "GET svc");
    assert_eq!(client["resource"]["service.name"], "storefront-sidecar");
    assert_eq!(server["resource"]["service.name"], "inventory-sidecar");
    assert_eq!(server["resource"]["telemetry.sdk.name"], "trellis-proxy");
    assert_eq!(client["scope"], "trellis-proxy");
    for span in [client, server] {
        let a = &span["attributes"];
        assert_eq!((a["http.request.method"].as_str(), a["url.path"].as_str()), (Some("GET"), Some("/items")));
        assert_eq!(a["http.response.status_code"], 200);
        assert_eq!((a["trellis.service"].as_str(), a["trellis.version"].as_str()), (Some("svc"), Some("v1")));
        assert_eq!((span["status"].clone(), span["flags"].clone()), (0.into(), 1.into()), "unset status, sampled");
        let (start, end) = (span["start"].as_u64().unwrap(), span["end"].as_u64().unwrap());
        assert!(start > 1_700_000_000_000_000_000 && start <= end, "Unix nanoseconds: {start}..{end}");
    }
    let (c, s) = (&client["attributes"], &server["attributes"]);
    assert_eq!(c["trellis.direction"], "outbound");
    assert_eq!(c["trellis.retries"], 0);
    assert_eq!(c["server.address"], "127.0.0.1");
    assert_eq!(c["server.port"], callee.inbound.port());
    assert_eq!(s["trellis.direction"], "inbound");
    assert_eq!(s["trellis.peer.identity"], "plaintext", "the caller, as its connection proved it");
    // The server's span lies within the client's, up to what two proxies' clocks (each turns
    // its instants into Unix time from an epoch of its own, read per poll) may disagree by.
    let at = |span: &Value, key: &str| span[key].as_u64().unwrap() as i64;
    let slack = 10_000_000; // 10 ms
    assert!(at(client, "start") - slack <= at(server, "start"), "{client} {server}");
    assert!(at(server, "end") <= at(client, "end") + slack, "{client} {server}");
    assert_eq!(server["api_key"], "k,1", "OTEL_EXPORTER_OTLP_HEADERS, percent-decoded");

    // No context from the application: the caller's span starts the trace.
    let (_, seen) = get(caller.outbound, "/", None).await;
    let trace = &seen[3..35];
    let spans = receiver.trace(trace, 2).await;
    assert_eq!(kind(&spans, CLIENT)["parent_span_id"], "", "a root span");
    assert_eq!(kind(&spans, SERVER)["parent_span_id"], kind(&spans, CLIENT)["span_id"]);

    // A caller that did not sample its trace: nobody records it, and it stays unsampled.
    let unsampled = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (_, seen) = get(caller.outbound, "/", Some(&format!("00-{unsampled}-00f067aa0ba902b7-00"))).await;
    assert_eq!(seen, format!("00-{unsampled}-00f067aa0ba902b7-00"), "passed on as it came");
    let (_, after) = get(caller.outbound, "/", None).await;
    receiver.trace(&after[3..35], 2).await;
    assert!(receiver.lines().iter().all(|s| s["trace_id"] != unsampled), "{:?}", receiver.lines());
    assert_eq!(metric(caller.admin, "trellis_proxy_spans_total{result=\"exported\"}").await, 3);
    assert_eq!(metric(callee.admin, "trellis_proxy_spans_total{result=\"exported\"}").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_request_is_an_error_span_and_a_refused_export_is_tried_again() {
    // The collector refuses the first export (503, as a busy one does).
    let receiver = Receiver::start(1);
    let nobody = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let export = settings(&receiver.endpoint, "storefront", &[]);
    let proxy = proxy_with(nobody, Protocol::Http, |s| s.otlp = Some(export)).await;
    let (status, _) = get(proxy.outbound, "/", Some("00-11111111111111111111111111111111-2222222222222222-01")).await;
    assert_eq!(status, 502);
    let spans = receiver.trace("11111111111111111111111111111111", 1).await;
    let span = &spans[0];
    assert_eq!(span["status"], 2, "an error: {span}");
    assert_eq!(span["attributes"]["http.response.status_code"], 502);
    assert!(span["attributes"]["error.type"].is_string(), "{span}");
    assert!(receiver.lines()[0]["refused"].is_number(), "the first try was refused: {:?}", receiver.lines());
    assert_eq!(metric(proxy.admin, "trellis_proxy_spans_total{result=\"exported\"}").await, 1);
    assert_eq!(metric(proxy.admin, "trellis_proxy_spans_total{result=\"failed\"}").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_requests_go_on_and_spans_are_dropped_or_failed_and_counted() {
    let app = app().await;
    let gone = format!("http://127.0.0.1:{}", common::free_port());
    // A queue of 5: while a batch is tried (three times, over more than a second) the next five
    // wait, and the spans past them are dropped.
    let export = settings(&gone, "storefront", &[("OTEL_BSP_MAX_QUEUE_SIZE", "5")]);
    let proxy = proxy_with(app, Protocol::Http, |s| s.otlp = Some(export)).await;
    for _ in 0..20 {
        assert_eq!(get(proxy.outbound, "/", None).await.0, 200);
    }
    let dropped = metric(proxy.admin, "trellis_proxy_spans_total{result=\"dropped\"}").await;
    assert!(dropped > 0, "twenty spans do not fit a queue of five");
    let mut failed = 0;
    for _ in 0..200 {
        failed = metric(proxy.admin, "trellis_proxy_spans_total{result=\"failed\"}").await;
        if failed + dropped == 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!((failed, dropped, failed + dropped), (failed, dropped, 20), "every span is accounted for");
    assert_eq!(metric(proxy.admin, "trellis_proxy_spans_total{result=\"exported\"}").await, 0);
}
