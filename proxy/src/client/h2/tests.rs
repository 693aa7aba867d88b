//! The pool against an upstream written frame by frame over TCP: a request it left
//! unprocessed goes once more, on a new connection, when its body is in hand.

use super::*;
use crate::http2::frame::{self, Reason};
use crate::http2::tests::{Wire, field};
use tokio::net::TcpListener;

fn pool() -> Pool {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    Pool::new(Connector::new(http, None, true, None))
}

fn post() -> http::request::Parts {
    http::Request::post("/svc.Api/Call").header("host", "svc").body(()).unwrap().into_parts().0
}

/// Accepts a connection and reads the next request's head: its stream and fields.
async fn next_request(listener: &TcpListener) -> (Wire, u32, Vec<(String, String)>) {
    let accepted = tokio::time::timeout(std::time::Duration::from_secs(5), listener.accept()).await;
    let (socket, _) = accepted.expect("the pool connects within 5 s").unwrap();
    let mut wire = Wire::new(socket);
    wire.greet(&[]).await;
    let (head, block) = wire.next(frame::HEADERS).await;
    let fields = wire.decode(&block);
    (wire, head.stream, fields)
}

#[tokio::test]
async fn a_request_the_upstream_refused_goes_again_on_a_new_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let pool = pool();
    let parts = post();
    let sent = tokio::spawn({
        let (pool, addr) = (pool.clone(), addr.clone());
        async move { pool.send(&parts, Outgoing::Full(Bytes::from_static(b"hello")), &addr, 0).await }
    });
    // The first connection refuses the stream and goes away.
    let (mut first, stream, fields) = next_request(&listener).await;
    assert_eq!(field(&fields, ":authority"), Some("svc"));
    assert_eq!(field(&fields, "content-length"), Some("5"));
    let mut out = Vec::new();
    frame::rst_stream(&mut out, stream, Reason::REFUSED_STREAM);
    frame::goaway(&mut out, 0, Reason::NO_ERROR);
    first.send(&out).await;
    // The second gets the same request, body and all, and answers it.
    let (mut second, stream, fields) = next_request(&listener).await;
    assert_eq!(field(&fields, ":path"), Some("/svc.Api/Call"));
    assert_eq!(&second.next(frame::DATA).await.1[..], b"hello");
    second.respond(stream, &[(":status", "200")], true).await;
    let resp = sent.await.unwrap().expect("answered on the second connection");
    assert_eq!(resp.status(), 200);

    // A streamed body cannot go again: the refusal is the caller's answer.
    let parts = post();
    let body = http_body_util::Full::new(Bytes::from_static(b"once")).map_err(|never| match never {}).boxed_unsync();
    let sent = tokio::spawn(async move { pool.send(&parts, Outgoing::Streamed(body), &addr, 0).await });
    let (head, _) = second.next(frame::HEADERS).await;
    let mut out = Vec::new();
    frame::rst_stream(&mut out, head.stream, Reason::REFUSED_STREAM);
    second.send(&out).await;
    let failed = sent.await.unwrap().expect_err("not sent again");
    assert!(!failed.is_connect() && failed.to_string().contains("refused"), "{failed}");
}
