//! The proxy's own HTTP/1.1 server, as clients on the wire see it: pipelined requests answered
//! in order, heads that arrive in pieces, `Connection: close` honoured, and a connection moved
//! to hyper, mid-stream, at the first request that needs more (chunked bodies, HTTP/1.0,
//! `Expect`), without losing a byte. A drain answers the request in flight and closes idle
//! connections. Each runs on one runtime thread (the sidecar's default, whose socket writes go
//! out in batches) and on several (written straight).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trellis_model::config::Protocol;

mod common;

/// Runs the test `$name` on a single-threaded runtime and on a multi-threaded one.
macro_rules! on_both_runtimes {
    ($($name:ident),*) => {$(
        mod $name {
            #[tokio::test]
            async fn one_thread() {
                super::$name().await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn threads() {
                super::$name().await
            }
        }
    )*};
}

on_both_runtimes!(
    pipelined_requests_are_answered_in_order_and_close_is_honoured,
    a_head_in_pieces_and_a_connection_moved_to_hyper_mid_stream_lose_nothing,
    a_drain_answers_the_request_in_flight_and_closes_idle_connections,
    many_connections_at_once_each_get_their_own_responses_whole
);

/// An app answering `METHOD PATH BODY`; `/slow` takes 300 ms.
async fn echo_app() -> SocketAddr {
    common::spawn_app(|stream| async move {
        let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let (method, path) = (req.method().clone(), req.uri().path().to_string());
            if path == "/slow" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let text = format!("{method} {path} {}", String::from_utf8_lossy(&body));
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(text))))
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
    })
    .await
}

/// Everything the proxy sends until it closes the connection.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all)).await.expect("the proxy closes").unwrap();
    String::from_utf8_lossy(&all).into_owned()
}

/// The bodies of the responses in `text`, in order (each body is the echo line).
fn bodies(text: &str) -> Vec<String> {
    text.split("HTTP/1.1 ")
        .skip(1)
        .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or_default().trim_end_matches("0\r\n").to_string())
        .collect()
}

async fn pipelined_requests_are_answered_in_order_and_close_is_honoured() {
    let proxy = common::proxy_to(echo_app().await, Protocol::Http).await;
    let mut s = TcpStream::connect(proxy.outbound).await.unwrap();
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: svc\r\n\r\nPOST /b HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\n\r\nbodyGET /c HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let text = read_to_close(&mut s).await;
    assert_eq!(bodies(&text), ["GET /a ", "POST /b body", "GET /c "], "{text}");
    assert_eq!(text.matches("date: ").count(), 3, "{text}");
    assert!(text.ends_with("GET /c ") && text.contains("connection: close"), "{text}");
}

async fn a_head_in_pieces_and_a_connection_moved_to_hyper_mid_stream_lose_nothing() {
    let proxy = common::proxy_to(echo_app().await, Protocol::Http).await;
    let mut s = TcpStream::connect(proxy.outbound).await.unwrap();
    for piece in ["GET /fi", "rst HTTP/1.1\r\nHo", "st: svc\r\n", "\r\n"] {
        s.write_all(piece.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut first = [0u8; 1024];
    let n = s.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).ends_with("GET /first "));
    // A chunked body is hyper's to read: the connection moves, this request's bytes with it.
    s.write_all(b"POST /chunked HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .await
        .unwrap();
    s.write_all(b"GET /after HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n").await.unwrap();
    let text = read_to_close(&mut s).await;
    assert_eq!(bodies(&text), ["POST /chunked hello", "GET /after "], "{text}");

    // HTTP/1.0, and a client that waits for `100 Continue` before its body.
    let mut s = TcpStream::connect(proxy.outbound).await.unwrap();
    s.write_all(b"GET /old HTTP/1.0\r\nHost: svc\r\n\r\n").await.unwrap();
    assert!(read_to_close(&mut s).await.ends_with("GET /old "));
    let mut s = TcpStream::connect(proxy.outbound).await.unwrap();
    s.write_all(
        b"PUT /expect HTTP/1.1\r\nHost: svc\r\nContent-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut interim = [0u8; 64];
    let n = s.read(&mut interim).await.unwrap();
    assert!(String::from_utf8_lossy(&interim[..n]).starts_with("HTTP/1.1 100 Continue"));
    s.write_all(b"ok").await.unwrap();
    assert!(read_to_close(&mut s).await.ends_with("PUT /expect ok"));
}

async fn a_drain_answers_the_request_in_flight_and_closes_idle_connections() {
    let proxy = common::proxy_to(echo_app().await, Protocol::Http).await;
    let mut idle = TcpStream::connect(proxy.outbound).await.unwrap();
    idle.write_all(b"GET /warm HTTP/1.1\r\nHost: svc\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let _ = idle.read(&mut buf).await.unwrap();
    // Idle long enough to have given its buffers back.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let mut busy = TcpStream::connect(proxy.outbound).await.unwrap();
    busy.write_all(b"GET /slow HTTP/1.1\r\nHost: svc\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let drained = tokio::spawn(proxy.shutdown());
    let text = read_to_close(&mut busy).await;
    assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("GET /slow "), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert_eq!(read_to_close(&mut idle).await, "", "the idle connection is closed");
    tokio::time::timeout(Duration::from_secs(5), drained).await.expect("shutdown returns").unwrap();
}

async fn many_connections_at_once_each_get_their_own_responses_whole() {
    let proxy = common::proxy_to(echo_app().await, Protocol::Http).await;
    // Every connection's requests in flight together: one pass of the runtime has many
    // connections' writes to send, to the app and back to the clients.
    let clients = (0..32).map(|c| {
        let addr = proxy.outbound;
        tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for r in 0..20 {
                let request = format!("GET /c{c}/r{r} HTTP/1.1\r\nHost: svc\r\n\r\n");
                s.write_all(request.as_bytes()).await.unwrap();
                let mut got = Vec::new();
                while !got.ends_with(format!("GET /c{c}/r{r} ").as_bytes()) {
                    let mut buf = [0u8; 1024];
                    let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
                    let n = read.expect("a response").unwrap();
                    assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
                    got.extend_from_slice(&buf[..n]);
                }
                let text = String::from_utf8_lossy(&got);
                assert!(text.starts_with("HTTP/1.1 200") && text.matches("HTTP/1.1").count() == 1, "{text}");
            }
        })
    });
    for client in clients.collect::<Vec<_>>() {
        client.await.unwrap();
    }
    let text = proxy.shared.metrics.render("p", "r.1");
    let value = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {text}"));
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let writes = value("trellis_proxy_batched_writes_total");
    let calls = value("trellis_proxy_write_submits_total") + value("trellis_proxy_write_sends_total");
    match tokio::runtime::Handle::current().runtime_flavor() {
        // A request and a response per exchange, fewer system calls than writes.
        tokio::runtime::RuntimeFlavor::CurrentThread => assert!(writes >= 1280 && calls < writes, "{writes} {calls}"),
        _ => assert_eq!(writes, 0),
    }
}
