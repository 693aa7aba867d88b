//! The client against the proxy's own server over an in-memory pipe (what a well-behaved
//! upstream gives), and against an upstream written frame by frame (what each of its
//! misbehaviours costs the callers).

use super::*;
use crate::http2::frame::{self, Reason};
use crate::http2::tests::{Echo, Wire, field};
use bytes::Bytes;
use http_body_util::BodyExt;

fn request(method: http::Method, path: &str, body: Sending, length: Option<usize>) -> Request {
    let req = http::Request::builder().method(method.clone()).uri(path).header("host", "svc").body(()).unwrap();
    let mut head = Vec::new();
    encode(&req.into_parts().0, "127.0.0.1:1", length, &mut head);
    Request { head, body, head_only: method == http::Method::HEAD }
}

fn get(path: &str) -> Request {
    request(http::Method::GET, path, Sending::Done, None)
}

fn post(path: &str, body: impl Into<Bytes>) -> Request {
    let body: Bytes = body.into();
    let rest = http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync();
    let length = body.len();
    request(http::Method::POST, path, Sending::Body(rest, Some(body)), Some(length))
}

/// A body sent as it comes: these pieces, then these trailers (or this error).
fn streamed(path: &str, pieces: &[&'static str], end: Result<Option<(&'static str, &'static str)>, ()>) -> Request {
    let mut frames: Vec<Result<http_body::Frame<Bytes>, crate::errors::BoxError>> =
        pieces.iter().map(|p| Ok(http_body::Frame::data(Bytes::from_static(p.as_bytes())))).collect();
    match end {
        Ok(Some((name, value))) => {
            let mut t = http::HeaderMap::new();
            t.insert(name, value.parse().unwrap());
            frames.push(Ok(http_body::Frame::trailers(t)));
        }
        Ok(None) => {}
        Err(()) => frames.push(Err("the client went away".into())),
    }
    let body = http_body_util::StreamBody::new(futures::stream::iter(frames)).boxed_unsync();
    request(http::Method::POST, path, Sending::Body(body, None), None)
}

/// Queues `req` on a connection that takes it.
fn sent(client: &Handle, req: Request) -> Responding {
    client.send(req).ok().expect("the connection takes requests")
}

/// A client connected to the proxy's HTTP/2 server serving [`Echo`].
fn served() -> (Handle, tokio::sync::watch::Sender<bool>) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (stop_tx, stop) = crate::sync::Shutdown::new();
    let service = Echo::default();
    tokio::spawn(crate::http2::serve(theirs, crate::transport::Peer::Plaintext, service, stop, Duration::from_secs(5)));
    (Handle::start(ours, "echo".into()), stop_tx)
}

/// A client and an upstream written frame by frame, past the handshake: the upstream has read
/// the preface and the client's SETTINGS, and sent `settings`, which the client acknowledged.
async fn upstream(settings: &[(u16, u32)]) -> (Handle, Wire) {
    let (ours, theirs) = tokio::io::duplex(1 << 22);
    let handle = Handle::start(ours, "upstream".into());
    let mut wire = Wire::new(theirs);
    wire.accept(settings).await;
    (handle, wire)
}

async fn text(resp: http::Response<crate::Body>) -> (String, Option<http::HeaderMap>) {
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (String::from_utf8(collected.to_bytes().to_vec()).unwrap(), trailers)
}

#[tokio::test]
async fn requests_and_responses_round_trip_through_the_proxys_own_server() {
    let (client, _stop) = served();
    let resp = sent(&client, get("/a")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-path"], "/a");
    assert_eq!(resp.version(), http::Version::HTTP_11, "the listener picks its client's version");
    assert_eq!(text(resp).await.0, "");

    let resp = sent(&client, post("/b", "hello world")).await.unwrap();
    assert_eq!(text(resp).await.0, "hello world");

    let resp = sent(&client, streamed("/c", &["one ", "two"], Ok(Some(("x-sum", "42"))))).await.unwrap();
    let (body, trailers) = text(resp).await;
    assert_eq!(body, "one two");
    assert_eq!(trailers.unwrap()["x-sum"], "42", "trailers both ways");

    // More than the first 1 MB windows of the server: sent as it gives window back.
    let big = vec![b'x'; 3 << 20];
    let resp = sent(&client, post("/count", big)).await.unwrap();
    assert_eq!(text(resp).await.0, (3 << 20).to_string());
    let resp = sent(&client, get("/big")).await.unwrap();
    assert_eq!(text(resp).await.0.len(), 100_000);

    // Many at once on the one connection, each answered on its own stream.
    let calls = (0..150).map(|i| {
        let client = client.clone();
        async move {
            let resp = sent(&client, post(&format!("/n/{i}"), format!("body {i}"))).await.unwrap();
            assert_eq!(resp.headers()["x-path"], format!("/n/{i}").as_str());
            assert_eq!(text(resp).await.0, format!("body {i}"));
        }
    });
    futures::future::join_all(calls).await;
}

#[tokio::test]
async fn streams_the_upstream_refused_or_went_away_from_were_not_processed() {
    let (client, mut up) = upstream(&[]).await;
    let first = sent(&client, get("/1"));
    let (head, block1) = up.next(frame::HEADERS).await;
    assert_eq!(head.stream, 1);
    let fields = up.decode(&block1);
    assert_eq!(field(&fields, ":authority"), Some("svc"));
    assert_eq!(field(&fields, ":path"), Some("/1"));
    let second = sent(&client, get("/3"));
    assert_eq!(up.next(frame::HEADERS).await.0.stream, 3);
    let third = sent(&client, get("/5"));
    assert_eq!(up.next(frame::HEADERS).await.0.stream, 5);

    let mut out = Vec::new();
    frame::rst_stream(&mut out, 3, Reason::REFUSED_STREAM);
    frame::goaway(&mut out, 1, Reason::NO_ERROR);
    up.send(&out).await;
    assert_eq!(second.await.unwrap_err(), Broken::Refused);
    assert_eq!(third.await.unwrap_err(), Broken::Refused, "past the GOAWAY's last stream");
    // The connection takes no more, and gives the request back to be sent elsewhere.
    let mut back = None;
    for _ in 0..100 {
        match client.send(get("/7")) {
            Err(req) => back = Some(req),
            Ok(pending) => assert_eq!(pending.await.unwrap_err(), Broken::Refused),
        }
        if back.is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(back.is_some() && client.is_closed());

    // The stream before the GOAWAY's last is still answered.
    up.respond(1, &[(":status", "200")], false).await;
    up.data(1, b"ok", true).await;
    assert_eq!(text(first.await.unwrap()).await.0, "ok");
    assert!(up.frame().await.is_none(), "then the client closes");
}

#[tokio::test]
async fn no_more_streams_are_open_than_the_upstream_allows() {
    let (client, mut up) = upstream(&[(frame::MAX_CONCURRENT_STREAMS, 1)]).await;
    let first = sent(&client, get("/1"));
    let second = sent(&client, get("/3"));
    assert_eq!(up.next(frame::HEADERS).await.0.stream, 1);
    // Whatever the client had to send before answering this PING came before its answer.
    let mut out = Vec::new();
    frame::ping(&mut out, 0, b"12345678");
    up.send(&out).await;
    let (head, _) = up.frame().await.unwrap();
    assert_eq!((head.kind, head.flags), (frame::PING, frame::ACK), "the second request waits");
    up.respond(1, &[(":status", "204")], true).await;
    assert_eq!(first.await.unwrap().status(), 204);
    assert_eq!(up.next(frame::HEADERS).await.0.stream, 3, "sent once the first is done");
    up.respond(3, &[(":status", "200")], true).await;
    assert_eq!(second.await.unwrap().status(), 200);
}

#[tokio::test]
async fn informational_heads_are_skipped_and_malformed_ones_reset() {
    let (client, mut up) = upstream(&[]).await;
    let first = sent(&client, get("/1"));
    up.next(frame::HEADERS).await;
    let second = sent(&client, get("/3"));
    up.next(frame::HEADERS).await;
    up.respond(1, &[(":status", "100")], false).await;
    up.respond(1, &[(":status", "200"), ("grpc-status", "0")], true).await;
    up.respond(3, &[("x-no-status", "1")], true).await;
    let resp = first.await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["grpc-status"].to_str().unwrap()), (200, "0"));
    assert!(matches!(second.await.unwrap_err(), Broken::Other(_)));
    assert_eq!(up.rst().await, (3, Reason::PROTOCOL_ERROR));
}

#[tokio::test]
async fn a_caller_that_lets_go_cancels_its_stream() {
    let (client, mut up) = upstream(&[]).await;
    // Before the response's head.
    let pending = sent(&client, get("/1"));
    up.next(frame::HEADERS).await;
    drop(pending);
    assert_eq!(up.rst().await, (1, Reason::CANCEL));
    // Partway through its body.
    let pending = sent(&client, get("/3"));
    up.next(frame::HEADERS).await;
    up.respond(3, &[(":status", "200")], false).await;
    up.data(3, b"first", false).await;
    let mut body = pending.await.unwrap().into_body();
    assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "first");
    drop(body);
    assert_eq!(up.rst().await, (3, Reason::CANCEL));
}

#[tokio::test]
async fn a_failing_request_body_is_the_callers_failure() {
    let (client, mut up) = upstream(&[]).await;
    let pending = sent(&client, streamed("/1", &["part"], Err(())));
    assert_eq!(up.next(frame::HEADERS).await.0.stream, 1);
    assert_eq!(up.next(frame::DATA).await.1, "part");
    assert_eq!(pending.await.unwrap_err(), Broken::Body);
    assert_eq!(up.rst().await, (1, Reason::CANCEL));
}

#[tokio::test]
async fn a_response_body_gets_window_back_as_it_is_read() {
    let (client, mut up) = upstream(&[]).await;
    let pending = sent(&client, get("/big"));
    up.next(frame::HEADERS).await;
    up.respond(1, &[(":status", "200")], false).await;
    let mut body = pending.await.unwrap().into_body();
    // The stream's whole window (2 MB), then no more until the reader takes some.
    let piece = vec![7u8; 16_384];
    for _ in 0..128 {
        up.data(1, &piece, false).await;
    }
    let mut read = 0;
    while read < 1 << 20 {
        read += body.frame().await.unwrap().unwrap().into_data().unwrap().len();
    }
    let (head, payload) = loop {
        let (head, payload) = up.next(frame::WINDOW_UPDATE).await;
        if head.stream == 1 {
            break (head, payload);
        }
    };
    let increment = frame::be31(&payload);
    assert!(increment >= 64 * 1024, "window comes back in steps: {head:?} {increment}");
    up.data(1, b"last!", true).await;
    let mut rest = 0;
    while let Some(frame) = body.frame().await {
        rest += frame.unwrap().into_data().unwrap().len();
    }
    assert_eq!(read + rest, 128 * 16_384 + 5);
}

#[tokio::test]
async fn an_upstream_that_closes_fails_what_it_carried() {
    let (client, mut up) = upstream(&[]).await;
    let pending = sent(&client, get("/1"));
    up.next(frame::HEADERS).await;
    drop(up);
    assert!(matches!(pending.await.unwrap_err(), Broken::Other(_)));
    for _ in 0..100 {
        if client.is_closed() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(client.is_closed());
}
