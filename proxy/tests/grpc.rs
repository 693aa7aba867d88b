//! gRPC through two proxies with a real gRPC client and server (grpcio, from PyPI): statuses
//! pass through, in trailers and trailers-only responses alike; a call the service failed
//! counts as a failure though its HTTP status is 200; an error the proxy makes reaches the
//! client as a gRPC status with its message; `retries.on: [unavailable]` retries a call the
//! server refused (its body, of unknown length, sent again from the copy kept); a caller's
//! `grpc-timeout` is the call's deadline (against a server that keeps none of its own).

mod common;

use bytes::Bytes;
use common::{proxy_serving, proxy_to, python};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use trellis_model::config::Protocol;
use trellis_model::config::RetryOn;

fn script() -> String {
    format!("{}/tests/grpc/app.py", env!("CARGO_MANIFEST_DIR"))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP/2 server that answers every call `OK` after 3 s, whatever its `grpc-timeout`.
async fn slow_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper::service::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                let resp =
                    http::Response::builder().header("content-type", "application/grpc").header("grpc-status", "0");
                Ok::<_, std::convert::Infallible>(resp.body(Full::new(Bytes::new())).unwrap())
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

fn grpc_server() -> (Server, SocketAddr) {
    let mut child = Command::new(python())
        .args([script().as_str(), "server"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is required for this test");
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
    let port: u16 = port.trim().parse().unwrap_or_else(|_| {
        panic!("the gRPC server did not start: is grpcio installed for {}? (scripts/setup.sh --for-tests)", python())
    });
    (Server(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Makes `calls` (METHOD ARG) through `addr` naming `authority`: (code, details, messages) each.
fn calls(addr: SocketAddr, authority: &str, calls: &[&str]) -> Vec<(String, String, Vec<String>)> {
    let mut child = Command::new(python())
        .args([script().as_str(), "client", &addr.to_string(), authority])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(calls.join("\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the gRPC client failed");
    let lines = String::from_utf8(out.stdout).unwrap();
    lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let messages = v["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
            (v["code"].as_str().unwrap().to_string(), v["details"].as_str().unwrap().to_string(), messages)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_statuses_pass_through_and_count_as_the_services_failures() {
    let (_server, app) = grpc_server();
    let callee = proxy_to(app, Protocol::Grpc).await;
    let caller = proxy_to(callee.inbound, Protocol::Grpc).await;
    let outbound = caller.outbound;
    let answers = tokio::task::spawn_blocking(move || {
        calls(outbound, "svc", &["Say ok", "Say fail:14", "Say fail:5", "Count 3:0", "Count 2:14"])
    })
    .await
    .unwrap();
    let codes: Vec<&str> = answers.iter().map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(codes, ["OK", "UNAVAILABLE", "NOT_FOUND", "OK", "UNAVAILABLE"], "{answers:?}");
    assert_eq!(answers[0].2, ["hello ok"]);
    assert_eq!(answers[1].1, "asked to fail");
    assert_eq!(answers[3].2, ["0", "1", "2"]);
    assert_eq!((answers[4].1.as_str(), answers[4].2.len()), ("stream ends with 14", 2), "messages, then trailers");

    // Both proxies count each call once, by its gRPC status; the two UNAVAILABLE are failures
    // (NOT_FOUND is the caller's), though every response was HTTP 200.
    for (proxy, direction) in [(&caller, "outbound"), (&callee, "inbound")] {
        let count = |grpc_status: &str| {
            let labels = [("direction", direction), ("dst_service", "svc")];
            let all = proxy.shared.metrics.get("trellis_proxy_requests_total", &labels);
            let labels = [("status", "2xx"), ("grpc_status", grpc_status)];
            (all, proxy.shared.metrics.get("trellis_proxy_requests_total", &labels))
        };
        assert_eq!(count("0"), (5, 2), "{direction}");
        assert_eq!(count("14").1, 2, "{direction}");
        assert_eq!(count("5").1, 1, "{direction}");
        let series = proxy.shared.metrics.series();
        let (requests, failures) = series.iter().fold((0, 0), |(r, f), s| (r + s.requests, f + s.failures));
        assert_eq!((requests, failures), (5, 2), "{direction}: what telemetry and rollout analysis count");
    }

    // An error the proxy makes is a gRPC status with its message, not an HTTP error page.
    let answers = tokio::task::spawn_blocking(move || calls(outbound, "nosuch", &["Say ok"])).await.unwrap();
    assert_eq!(answers[0].0, "UNIMPLEMENTED", "{answers:?}");
    assert_eq!(answers[0].1, "unknown service `nosuch`");
    let labels = [("status", "unknown-service"), ("grpc_status", "12")];
    assert_eq!(caller.shared.metrics.get("trellis_proxy_requests_total", &labels), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_grpc_timeout_is_the_calls_deadline() {
    // A server that keeps no deadline of its own (grpcio's does, and answers
    // DEADLINE_EXCEEDED itself at the same instant as the proxy: a race this test would lose
    // now and then): only the proxy's deadline can end the call early.
    let app = slow_server().await;
    let caller = proxy_to(app, Protocol::Grpc).await;
    let io = TokioIo::new(tokio::net::TcpStream::connect(caller.outbound).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    // One length-prefixed message, as gRPC frames it: the server answers after 3 s.
    let payload = b"slow:3000";
    let mut message = vec![0u8];
    message.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    message.extend_from_slice(payload);
    let req = http::Request::post("http://svc/trellis.test.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "200m")
        .body(Full::new(Bytes::from(message)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED, trailers-only: {:?}", resp.headers());
    assert_eq!(resp.headers()["x-trellis-error"], "timeout", "the proxy's deadline, not the server's answer");
    assert_eq!(resp.headers()["grpc-message"], "no response within 200 ms");
    assert!(resp.into_body().collect().await.unwrap().to_bytes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_server_refused_is_retried_on_unavailable() {
    let (_server, app) = grpc_server();
    let callee = proxy_to(app, Protocol::Grpc).await;
    let retrying = |on: Vec<RetryOn>| {
        proxy_serving(
            callee.inbound,
            Protocol::Grpc,
            |_| {},
            move |svc| {
                svc.rules[0].retry.attempts = 2;
                svc.rules[0].retry.on = on;
            },
        )
    };
    let (plain, retried) = (retrying(vec![RetryOn::GatewayError]).await, retrying(vec![RetryOn::Unavailable]).await);
    let (a, b) = (plain.outbound, retried.outbound);
    let answers =
        tokio::task::spawn_blocking(move || (calls(a, "svc", &["Say once:a"]), calls(b, "svc", &["Say once:b"])))
            .await
            .unwrap();
    assert_eq!(answers.0[0].0, "UNAVAILABLE", "gateway-error is HTTP's: {answers:?}");
    assert_eq!((answers.1[0].0.as_str(), answers.1[0].2.as_slice()), ("OK", ["hello once:b".to_string()].as_slice()));
    let sent = retried.shared.metrics.get("trellis_proxy_retries_total", &[("result", "sent")]);
    assert_eq!(sent, 1, "one retry, from the shared budget");
}

/// A stream that ends UNAVAILABLE in its trailers, after its messages, counts against the
/// endpoint as a trailers-only refusal does: consecutive ones eject it. A call that ends OK in
/// its trailers, or that fails by the caller's own fault, resets the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_in_trailers_eject_the_endpoint() {
    let (_server, app) = grpc_server();
    let caller = proxy_serving(
        app,
        Protocol::Grpc,
        |_| {},
        |svc| {
            let outlier = &mut svc.traffic.outlier;
            (outlier.enabled, outlier.consecutive_gateway_errors, outlier.max_ejected_percent) = (true, 2, 100);
            outlier.base_ejection_ms = 60_000;
        },
    )
    .await;
    let ejections = || {
        let labels = [("dst_service", "svc"), ("endpoint", &*app.to_string())];
        caller.shared.metrics.get("trellis_proxy_ejections_total", &labels)
    };
    let out = caller.outbound;
    let answers =
        tokio::task::spawn_blocking(move || calls(out, "svc", &["Count 2:14", "Count 1:0", "Count 2:14", "Count 2:5"]))
            .await
            .unwrap();
    let codes: Vec<&str> = answers.iter().map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(codes, ["UNAVAILABLE", "OK", "UNAVAILABLE", "NOT_FOUND"], "{answers:?}");
    assert_eq!(ejections(), 0, "an OK in between resets the count; NOT_FOUND is the caller's");

    let answers = tokio::task::spawn_blocking(move || calls(out, "svc", &["Count 2:14", "Count 3:14"])).await.unwrap();
    assert_eq!(answers[1].2.len(), 3, "{answers:?}");
    assert_eq!(ejections(), 1, "two UNAVAILABLE in a row in trailers eject it: {answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_call_is_resource_exhausted() {
    let (_server, app) = grpc_server();
    let callee = proxy_serving(
        app,
        Protocol::Grpc,
        |_| {},
        |svc| {
            let rate = trellis_model::config::Rate { per_second: 1, burst: 1 };
            svc.traffic.rate_limit = Some(trellis_model::config::RateLimitConfig {
                by: "TrafficPolicy/svc".into(),
                total: Some(rate),
                per_caller: None,
                overrides: vec![],
            });
        },
    )
    .await;
    let caller = proxy_to(callee.inbound, Protocol::Grpc).await;
    let outbound = caller.outbound;
    let answers = tokio::task::spawn_blocking(move || calls(outbound, "svc", &["Say a", "Say b"])).await.unwrap();
    let codes: Vec<&str> = answers.iter().map(|(c, _, _)| c.as_str()).collect();
    assert_eq!(codes, ["OK", "RESOURCE_EXHAUSTED"], "{answers:?}");
    assert!(answers[1].1.starts_with("rate limited by TrafficPolicy/svc"), "{answers:?}");
    // The caller's doing, by policy: not the service's failure on either side.
    for proxy in [&caller, &callee] {
        let series = proxy.shared.metrics.series();
        assert_eq!(series.iter().map(|s| s.failures).sum::<u64>(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_span_carries_its_grpc_status_from_the_trailers() {
    let receiver = common::otlp::Receiver::start(0);
    let (_server, app) = grpc_server();
    let callee = proxy_to(app, Protocol::Grpc).await;
    let export = common::otlp::settings(&receiver.endpoint, "caller", &[]);
    let caller = common::proxy_with(callee.inbound, Protocol::Grpc, |s| s.otlp = Some(export)).await;
    let outbound = caller.outbound;
    let answers = tokio::task::spawn_blocking(move || calls(outbound, "svc", &["Count 2:14", "Say ok"])).await.unwrap();
    assert_eq!(answers[0].0, "UNAVAILABLE");
    // grpcio's client starts a trace of its own in no header: each call is a new trace here.
    let mut spans = Vec::new();
    for _ in 0..200 {
        spans = receiver.lines();
        if spans.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let by_name = |name: &str| spans.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{spans:?}")).clone();
    let count = by_name("trellis.test.Echo/Count");
    assert_eq!(count["attributes"]["rpc.grpc.status_code"], 14, "from the trailers, after 2 messages");
    assert_eq!(count["attributes"]["http.response.status_code"], 200);
    assert_eq!(count["status"], 2, "an error span");
    let say = by_name("trellis.test.Echo/Say");
    assert_eq!((say["attributes"]["rpc.grpc.status_code"].clone(), say["status"].clone()), (0.into(), 0.into()));
    assert_eq!(say["attributes"]["rpc.system"], "grpc");
}
