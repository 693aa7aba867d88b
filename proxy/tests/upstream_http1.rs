//! The proxy's own HTTP/1.1 client against an upstream that speaks HTTP/1.1 the many ways it
//! may: chunked bodies with trailers, arriving a few bytes at a time; bodies larger than any
//! buffer; bodies that end when the connection does; interim `100 Continue`; idle
//! connections the upstream closes, whether the proxy saw it coming or not; and a burst's
//! connections kept for the next.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trellis_model::config::Protocol;

mod common;

/// An upstream written against the wire: each path answers its own way. Counts the
/// connections it accepted and the requests it answered.
struct Scripted {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
}

const BIG: usize = 1024 * 1024;

impl Scripted {
    async fn start() -> Self {
        let (connections, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, a) = (connections.clone(), answered.clone());
        let addr = common::spawn_app(move |stream| {
            c.fetch_add(1, Ordering::SeqCst);
            serve(stream, a.clone())
        })
        .await;
        Scripted { addr, connections, answered }
    }
}

async fn serve(mut s: TcpStream, answered: Arc<AtomicUsize>) {
    let mut on_this_connection = 0;
    loop {
        let Some((path, body)) = read_request(&mut s).await else { return };
        on_this_connection += 1;
        // The race a keep-alive client must survive: the upstream drops an idle connection
        // just as the next request arrives on it, having processed nothing.
        if path == "/drop-second" && on_this_connection == 2 {
            return;
        }
        answered.fetch_add(1, Ordering::SeqCst);
        let ok = match path.as_str() {
            "/chunked" => chunked(&mut s).await,
            "/big" => big(&mut s).await,
            "/until-close" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\nall of this, then the connection closes").await;
                return;
            }
            "/continue" => {
                let reply = format!(
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(reply.as_bytes()).await.is_ok()
            }
            // Long enough for a burst's requests to be in flight all at once.
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_ok()
            }
            // Answers, then closes without saying so: the proxy finds out from the socket.
            "/close-quietly" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
                return;
            }
            _ => s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await.is_ok(),
        };
        if !ok {
            return;
        }
    }
}

async fn chunked(s: &mut TcpStream) -> bool {
    let parts: [&[u8]; 6] = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/plain\r\ntrailer: x-checksum\r\n\r\n",
        b"5\r\nhel",
        b"lo\r\n6;ext=1\r\n wor",
        b"ld\r\n",
        b"0\r\nx-checksum: ",
        b"abc\r\n\r\n",
    ];
    for p in parts {
        if s.write_all(p).await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

async fn big(s: &mut TcpStream) -> bool {
    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n");
    if s.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    for _ in 0..BIG / chunk.len() {
        if s.write_all(&chunk).await.is_err() {
            return false;
        }
    }
    true
}

/// The path and body of the next request on `s`, or `None` once the client is gone.
async fn read_request(s: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    let path = head.split_whitespace().nth(1)?.to_string();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, String::from_utf8_lossy(&body).into_owned()))
}

/// One keep-alive connection to the proxy's outbound listener.
async fn client(proxy: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let io = TokioIo::new(TcpStream::connect(proxy).await.unwrap());
    let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    send
}

async fn call(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, http::HeaderMap, Bytes, Option<http::HeaderMap>) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "svc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send.ready().await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req)).await.unwrap().unwrap();
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (parts.status.as_u16(), parts.headers, collected.to_bytes(), trailers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_large_and_close_delimited_bodies_arrive_whole_over_reused_connections() {
    let up = Scripted::start().await;
    let proxy = common::proxy_to(up.addr, Protocol::Http).await;
    let mut c = client(proxy.outbound).await;

    let (status, headers, body, trailers) = call(&mut c, "GET", "/chunked", "").await;
    assert_eq!((status, &body[..]), (200, &b"hello world"[..]));
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(trailers.expect("trailers travel on")["x-checksum"], "abc");

    let (status, _, body, _) = call(&mut c, "GET", "/big", "").await;
    assert_eq!((status, body.len()), (200, BIG));
    assert!(body.iter().take(64 * 1024).enumerate().all(|(i, b)| *b == (i % 251) as u8), "bytes intact");

    for _ in 0..3 {
        assert_eq!(call(&mut c, "GET", "/", "").await.0, 200);
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 1, "one upstream connection carried all five");

    let (status, _, body, _) = call(&mut c, "GET", "/until-close", "").await;
    assert_eq!((status, &body[..]), (200, &b"all of this, then the connection closes"[..]));
    let (status, _, body, _) = call(&mut c, "POST", "/continue", "payload").await;
    assert_eq!((status, &body[..]), (201, &b"payload"[..]), "the interim 100 is not the answer");
    assert_eq!(up.connections.load(Ordering::SeqCst), 2, "a body read to its close is not reused");

    let (status, headers, body, _) = call(&mut c, "HEAD", "/", "").await;
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(headers["content-length"], "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_upstream_closed_while_idle_are_never_a_failed_request() {
    let up = Scripted::start().await;
    let proxy = common::proxy_to(up.addr, Protocol::Http).await;
    let mut c = client(proxy.outbound).await;
    // Seen coming: the upstream's FIN is already there when the connection is next wanted.
    for _ in 0..5 {
        assert_eq!(call(&mut c, "GET", "/close-quietly", "").await.0, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 5);
    // Not seen coming: the request is written, then the connection closes with nothing back.
    // A GET is sent again on a new connection; the caller never knows.
    for _ in 0..4 {
        let (status, _, body, _) = call(&mut c, "GET", "/drop-second", "").await;
        assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    }
    assert_eq!(up.answered.load(Ordering::SeqCst), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bursts_connections_are_kept_for_the_next_burst() {
    const BURST: usize = 300; // more than the 128 idle connections kept at rest
    let up = Scripted::start().await;
    let proxy = common::proxy_serving(
        up.addr,
        Protocol::Http,
        |_| {},
        |svc| {
            svc.traffic.limits.max_connections = 1000;
            svc.traffic.limits.max_pending_requests = 1000;
        },
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..BURST {
        clients.push(client(proxy.outbound).await);
    }
    for wave in 0..2 {
        let calls = clients.iter_mut().map(|c| call(c, "GET", "/slow", ""));
        for (status, ..) in futures::future::join_all(calls).await {
            assert_eq!(status, 200, "wave {wave}");
        }
    }
    let opened = up.connections.load(Ordering::SeqCst);
    assert_eq!(up.answered.load(Ordering::SeqCst), 2 * BURST);
    // Every request of the first wave needed a connection; the second found them idle. (Not
    // exactly all: on a loaded machine the first wave can take longer than the 2 s a
    // connection beyond the 128 is kept unused, and a few are closed. Without the keeping,
    // the second wave would open 172 more.)
    assert!(opened <= BURST + BURST / 10, "{opened} upstream connections for two waves of {BURST}");
}
