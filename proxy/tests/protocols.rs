//! HTTP as implementations no one here wrote speak it: curl, h2load and Python's http.server
//! through the proxy; HTTP/2 with trailers and full-duplex streaming (what gRPC needs) across
//! two proxies; a WebSocket-style upgrade spliced through.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trellis_model::config::Protocol;
use trellis_model::{Backend, Endpoint, ProxyConfig, RuleConfig, ServiceConfig};

mod common;
use common::{free_port, proxy_to, spawn_app, wait_listening};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_h2load_through_the_proxy_to_python_http_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello from python\n").unwrap();
    let port = free_port();
    let mut server = Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 is required for this test");
    let upstream: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(upstream).await;
    let proxy = proxy_to(upstream, Protocol::Http).await;
    let out = proxy.outbound.to_string();

    let curl = |extra: &[&str]| {
        let mut args = vec!["-sS", "--max-time", "10", "-H", "Host: svc"];
        args.extend_from_slice(extra);
        let url = format!("http://{out}/hello.txt");
        args.push(&url);
        let o = Command::new("curl").args(&args).output().expect("curl is required for this test");
        (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    assert_eq!(curl(&[]).0, "hello from python\n");
    assert_eq!(curl(&["--http2-prior-knowledge"]).0, "hello from python\n", "h2c in, HTTP/1.0 upstream");
    let head = curl(&["-I"]).0;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_lowercase().contains("content-length: 18"), "{head}");
    // Python's own headers arrive, once each, by HTTP/1.1 (copied as written) and by h2c
    // (through hyper's header map).
    for (extra, status) in [(None, "HTTP/1.1 200 OK"), (Some("--http2-prior-knowledge"), "HTTP/2 200")] {
        let (text, _) = curl(&[&["-si"][..], extra.as_slice()].concat());
        let lower = text.to_lowercase();
        assert!(text.starts_with(status), "{text}");
        for header in ["server: simplehttp/", "content-type: text/plain", "last-modified: ", "date: "] {
            assert_eq!(lower.matches(header).count(), 1, "{header} in {text}");
        }
        assert!(text.ends_with("\r\n\r\nhello from python\n"), "{text}");
    }

    let o = Command::new("h2load")
        .args(["-n", "200", "-c", "4", "-m", "4", "-H", ":authority: svc", &format!("http://{out}/hello.txt")])
        .output()
        .expect("h2load (Debian nghttp2-client) is required for this test");
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(report.contains("200 succeeded, 0 failed"), "{report}");
    assert!(report.contains("200 2xx"), "{report}");
    let _ = server.kill();
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_both_ways_and_trailers_arrive_across_two_proxies() {
    let app = echo_h2_app().await;
    let callee = proxy_to(app, Protocol::Grpc).await;
    let caller = proxy_to(callee.inbound, Protocol::Grpc).await;

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
    let body = StreamBody::new(tokio_stream_from(rx));
    let io = TokioIo::new(tokio::net::TcpStream::connect(caller.outbound).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::post("http://svc/echo.Echo/Stream")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut resp_body = resp.into_body();
    // Full duplex: each message comes back before the next is sent.
    for msg in ["one", "two", "three"] {
        tx.send(Ok(Frame::data(Bytes::from(msg)))).await.unwrap();
        let frame = resp_body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from(msg));
    }
    drop(tx);
    let mut trailers = None;
    while let Some(frame) = resp_body.frame().await {
        if let Ok(t) = frame.unwrap().into_trailers() {
            trailers = Some(t);
        }
    }
    let trailers = trailers.expect("trailers reach the client");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "echoed 3");
    // Each proxy counted the request once: the caller's as outbound on its route, the callee's
    // as inbound to its own service.
    let requests = |p: &trellis_proxy::Running, direction: &str| {
        let labels = [("direction", direction), ("dst_service", "svc"), ("dst_version", "v1")];
        p.shared.metrics.get("trellis_proxy_requests_total", &labels)
    };
    assert_eq!((requests(&caller, "outbound"), requests(&caller, "inbound")), (1, 0));
    assert_eq!((requests(&callee, "outbound"), requests(&callee, "inbound")), (0, 1));
    let series = callee.shared.metrics.series();
    assert_eq!(series.len(), 1);
    assert_eq!((series[0].direction, series[0].requests), (trellis_model::telemetry::Direction::Inbound, 1));
}

/// A gRPC server streaming many small messages to a client slower than the upstream: the
/// proxy holds what the client cannot take yet, and its upstream connection survives it.
/// (h2's default budget for small DATA frames closed it with ENHANCE_YOUR_CALM at some 11,000
/// frames waiting, failing the call; `bench/run.sh` saw 16-37 % of such calls fail.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_small_messages_to_a_slow_client_arrives_whole() {
    const MESSAGES: usize = 30_000;
    let app = small_messages_app(MESSAGES).await;
    let proxy = proxy_to(app, Protocol::Grpc).await;
    let io = TokioIo::new(tokio::net::TcpStream::connect(proxy.outbound).await.unwrap());
    // A client with HTTP/2's default 64 KB stream window, as most have. Its connection window
    // is larger: h2 (this client's library too) sizes its own small-frame budget by it, and
    // the second call, read as it comes, gets the upstream's frames one by one.
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(4 << 20)
        .handshake(io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let call = || {
        http::Request::post("http://svc/stream.Small/Many")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap()
    };
    let resp = send.send_request(call()).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The client is busy: the stream backs up in the proxy.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (mut bytes, mut trailers, mut body) = (0, None, resp.into_body());
    while let Some(frame) = body.frame().await {
        match frame.expect("the stream is not cut").into_data() {
            Ok(data) => bytes += data.len(),
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    assert_eq!(bytes, MESSAGES * 20, "every message arrives");
    assert_eq!(trailers.expect("trailers arrive")["grpc-status"], "0");
    // And the connection upstream is still good for the next call.
    let again = send.send_request(call()).await.unwrap().into_body().collect().await.unwrap();
    assert_eq!(again.to_bytes().len(), MESSAGES * 20);
}

/// HTTP/2 upstreams share one connection per endpoint, retired after the service's
/// `maxRequestsPerConnection`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream_connections_are_shared_and_retired_after_their_last_request() {
    let opened = Arc::new(AtomicU64::new(0));
    let counted = opened.clone();
    let app = spawn_app(move |stream| {
        counted.fetch_add(1, Ordering::SeqCst);
        serve_h2(stream, |_req| async { http::Response::new(Full::new(Bytes::from_static(b"ok"))) })
    })
    .await;
    let shared = proxy_to(app, Protocol::Http2).await;
    let all = futures::future::join_all((0..20).map(|_| get(shared.outbound))).await;
    assert!(all.iter().all(|s| *s == 200), "{all:?}");
    assert_eq!(opened.swap(0, Ordering::SeqCst), 1, "twenty requests at once share one connection");

    let retiring = common::proxy_serving(
        app,
        Protocol::Http2,
        |_| {},
        |svc| {
            svc.traffic.limits.max_requests_per_connection = 3;
        },
    )
    .await;
    for _ in 0..9 {
        assert_eq!(get(retiring.outbound).await, 200);
    }
    assert_eq!(opened.load(Ordering::SeqCst), 3, "each connection carries three requests");
}

/// The status of a GET to `svc` through an HTTP/1.1 connection of its own, its body read.
async fn get(proxy: SocketAddr) -> u16 {
    let io = TokioIo::new(tokio::net::TcpStream::connect(proxy).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/").header("host", "svc").body(Full::new(Bytes::new())).unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_is_spliced_through_both_proxies() {
    let app = upgrade_echo_app().await;
    let callee = proxy_to(app, Protocol::Http).await;
    let caller = proxy_to(callee.inbound, Protocol::Http).await;
    let mut s = tokio::net::TcpStream::connect(caller.outbound).await.unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    for msg in [&b"hello"[..], b"over the tunnel"] {
        s.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, msg);
    }
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let proxy = proxy_to("127.0.0.1:9".parse().unwrap(), Protocol::Http).await;
    let mut s = tokio::net::TcpStream::connect(proxy.outbound).await.unwrap();
    let big = "a".repeat(200 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: svc\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
}

#[tokio::test]
async fn standalone_mode_serves_a_static_config_and_starts_traces() {
    let app = header_echo_app().await;
    let mut svc = ServiceConfig::new(
        "svc",
        &["v1"],
        vec![RuleConfig::catch_all(vec![Backend { version: "v1".into(), weight: 100 }])],
    );
    svc.protocol = Protocol::Http;
    let endpoint = Endpoint { version: "v1".into(), addr: app.to_string(), proxy_id: "up".into(), identity: None };
    let config = ProxyConfig {
        version: "static.1".into(),
        revision: "static".into(),
        mesh: Default::default(),
        services: [("svc".to_string(), svc)].into(),
        endpoints: [("svc".to_string(), vec![endpoint])].into(),
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.json");
    std::fs::write(&file, serde_json::to_string(&config).unwrap()).unwrap();
    let env: std::collections::HashMap<&str, String> = [
        ("TRELLIS_SERVICE", "caller".to_string()),
        ("TRELLIS_VERSION", "v1".to_string()),
        ("TRELLIS_CONFIG_FILE", file.display().to_string()),
        ("TRELLIS_OUTBOUND_ADDR", "127.0.0.1:0".to_string()),
        ("TRELLIS_INBOUND_ADDR", "127.0.0.1:0".to_string()),
        ("TRELLIS_ADMIN_ADDR", "127.0.0.1:0".to_string()),
    ]
    .into();
    let settings = trellis_proxy::Settings::from_lookup(|k| env.get(k).cloned()).expect("no control plane needed");
    let proxy = trellis_proxy::start(settings).await.unwrap();
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let send = |traceparent: Option<&'static str>| {
        let mut req = http::Request::get(format!("http://{}/", proxy.outbound)).header("host", "svc");
        if let Some(t) = traceparent {
            req = req.header("traceparent", t);
        }
        client.request(req.body(Full::default()).unwrap())
    };
    let seen = |resp: http::Response<hyper::body::Incoming>| async move {
        String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned()
    };
    let started = seen(send(None).await.unwrap()).await;
    assert!(started.starts_with("00-") && started.len() == 55, "a trace is started: {started:?}");
    let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(seen(send(Some(given)).await.unwrap()).await, given, "an existing trace is propagated");
    let broken = std::fs::write(&file, "{ not json");
    assert!(broken.is_ok());
    let mut bad = trellis_proxy::Settings::new("c", "v1", app, "");
    bad.config_file = Some(file);
    let err = trellis_proxy::start(bad).await.err().expect("a broken config file stops the start");
    assert!(err.to_string().contains("is not a proxy config"), "{err}");
}

// ---- harness -----------------------------------------------------------------------------

/// An HTTP/1.1 app answering with the `traceparent` it received.
async fn header_echo_app() -> SocketAddr {
    spawn_app(|stream| async move {
        let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let tp = req.headers().get("traceparent").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(tp))))
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
    })
    .await
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// An HTTP/2-only app that echoes each data frame as it arrives and ends with gRPC trailers.
async fn echo_h2_app() -> SocketAddr {
    spawn_app(|stream| {
        serve_h2(stream, |req| async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(4);
            tokio::spawn(async move {
                let mut body = req.into_body();
                let mut n = 0;
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        if data.is_empty() {
                            continue;
                        }
                        n += 1;
                        let _ = tx.send(Ok(Frame::data(data))).await;
                    }
                }
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                trailers.insert("grpc-message", format!("echoed {n}").parse().unwrap());
                let _ = tx.send(Ok(Frame::trailers(trailers))).await;
            });
            http::Response::builder()
                .header("content-type", "application/grpc")
                .body(StreamBody::new(tokio_stream_from(rx)))
                .unwrap()
        })
    })
    .await
}

/// An HTTP/2 app answering every call with `n` gRPC messages of 20 bytes, each in a DATA frame
/// of its own and all at once, then `grpc-status: 0`.
async fn small_messages_app(n: usize) -> SocketAddr {
    spawn_app(move |stream| {
        serve_h2(stream, move |_req| async move {
            let message = Bytes::from_static(b"\0\0\0\0\x0fsmall message 1");
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let frames = std::iter::repeat_n(message, n)
                .map(Frame::data)
                .chain(std::iter::once(Frame::trailers(trailers)))
                .map(Ok::<_, std::convert::Infallible>);
            http::Response::builder()
                .header("content-type", "application/grpc")
                .body(StreamBody::new(futures::stream::iter(frames)))
                .unwrap()
        })
    })
    .await
}

/// Serves one connection as an HTTP/2-only app, each request answered by `answer`.
async fn serve_h2<F, Fut, B>(stream: tokio::net::TcpStream, answer: F)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = http::Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let svc = hyper::service::service_fn(move |req| {
        let answered = answer(req);
        async move { Ok::<_, std::convert::Infallible>(answered.await) }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// An HTTP/1.1 app that accepts any upgrade and echoes bytes on the upgraded connection.
async fn upgrade_echo_app() -> SocketAddr {
    spawn_app(|stream| async move {
        let svc = hyper::service::service_fn(|mut req: http::Request<hyper::body::Incoming>| async move {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let resp = http::Response::builder()
                .status(101)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(Full::<Bytes>::default())
                .unwrap();
            Ok::<_, std::convert::Infallible>(resp)
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades()
            .await;
    })
    .await
}
