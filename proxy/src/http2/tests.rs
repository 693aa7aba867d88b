//! The server against a client written frame by frame over an in-memory pipe: what a
//! well-behaved client gets, and what each kind of misbehaviour costs it. The client's tests
//! use the same peer and service.

use super::frame::{self, Head, Reason};
use super::*;
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Echoes the request: its body, its trailers, and `x-path`. `/slow` never answers (and says
/// so when dropped); `/big` answers 100,000 bytes; `/count` the length of the body.
#[derive(Clone, Default)]
pub(crate) struct Echo {
    dropped: Arc<AtomicBool>,
}

struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl tower_service::Service<http::Request<crate::ReqBody>> for Echo {
    type Response = http::Response<crate::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<crate::ReqBody>) -> Self::Future {
        let dropped = self.dropped.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            if path == "/slow" {
                let _flag = Flag(dropped);
                std::future::pending::<()>().await;
            }
            if path == "/big" {
                return Ok(http::Response::new(crate::errors::text(vec![b'x'; 100_000])));
            }
            let collected = req.into_body().collect().await;
            let Ok(collected) = collected else {
                return Ok(http::Response::builder().status(499).body(crate::errors::text("")).unwrap());
            };
            let trailers = collected.trailers().cloned();
            let body = collected.to_bytes();
            if path == "/count" {
                return Ok(http::Response::new(crate::errors::text(body.len().to_string())));
            }
            let frames = futures::stream::iter(
                [Ok(http_body::Frame::data(body))]
                    .into_iter()
                    .chain(trailers.map(|t| Ok(http_body::Frame::trailers(t)))),
            );
            let mut resp = http::Response::new(http_body_util::StreamBody::new(frames).boxed_unsync());
            resp.headers_mut().insert("x-path", path.parse().unwrap());
            Ok(resp)
        })
    }
}

/// A peer written frame by frame: the client of these tests, the upstream of the client's.
pub(crate) struct Wire {
    io: Box<dyn Socket>,
    buf: bytes::BytesMut,
    decoder: hpack::Decoder,
}

/// A literal field with a literal name, not indexed: what any encoder may send.
pub(crate) fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn get(path: &str) -> Vec<u8> {
    block(&[(":method", "GET"), (":scheme", "http"), (":authority", "svc"), (":path", path)])
}

fn post(path: &str) -> Vec<u8> {
    block(&[(":method", "POST"), (":scheme", "http"), (":authority", "svc"), (":path", path)])
}

pub(crate) trait Socket: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Socket for T {}

impl Wire {
    pub(crate) fn new(io: impl Socket + 'static) -> Wire {
        Wire { io: Box::new(io), buf: Default::default(), decoder: Default::default() }
    }

    /// An upstream's side of a client's handshake: the preface and the client's SETTINGS
    /// read, `settings` sent, and the client's acknowledgement of them read.
    pub(crate) async fn accept(&mut self, settings: &[(u16, u32)]) {
        self.greet(settings).await;
        while self.next(frame::SETTINGS).await.0.flags & frame::ACK == 0 {}
    }

    /// The same, without waiting for the acknowledgement (requests may come before it).
    pub(crate) async fn greet(&mut self, settings: &[(u16, u32)]) {
        let mut preface = [0; 24];
        self.io.read_exact(&mut preface).await.unwrap();
        assert_eq!(preface, frame::PREFACE);
        let (head, _) = self.next(frame::SETTINGS).await;
        assert_eq!(head.flags, 0, "the client's SETTINGS follow its preface");
        let mut hello = Vec::new();
        frame::settings(&mut hello, settings);
        frame::head(&mut hello, 0, frame::SETTINGS, frame::ACK, 0);
        self.send(&hello).await;
    }

    /// A server on one end of a pipe; the client has sent the preface and its SETTINGS.
    async fn start(
        service: Echo,
        settings: &[(u16, u32)],
    ) -> (Wire, tokio::task::JoinHandle<Result<(), Error>>, tokio::sync::watch::Sender<bool>) {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let (stop_tx, stop) = Shutdown::new();
        let server = tokio::spawn(serve(theirs, Peer::Plaintext, service, stop, Duration::from_secs(5)));
        let mut c = Wire::new(ours);
        let mut hello = frame::PREFACE.to_vec();
        frame::settings(&mut hello, settings);
        c.send(&hello).await;
        (c, server, stop_tx)
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.unwrap();
    }

    pub(crate) async fn headers(&mut self, stream: u32, block: &[u8], end: bool) {
        let mut out = Vec::new();
        frame::headers(&mut out, stream, block, end, 16_384);
        self.send(&out).await;
    }

    /// A response head (or trailers) of these fields.
    pub(crate) async fn respond(&mut self, stream: u32, fields: &[(&str, &str)], end: bool) {
        self.headers(stream, &block(fields), end).await;
    }

    pub(crate) async fn data(&mut self, stream: u32, data: &[u8], end: bool) {
        let mut out = Vec::new();
        frame::head(&mut out, data.len(), frame::DATA, if end { frame::END_STREAM } else { 0 }, stream);
        out.extend_from_slice(data);
        self.send(&out).await;
    }

    /// The next frame, or `None` once the server closed.
    pub(crate) async fn frame(&mut self) -> Option<(Head, Bytes)> {
        loop {
            if self.buf.len() >= 9 {
                let head = Head::parse(&self.buf[..9]);
                if self.buf.len() >= 9 + head.len {
                    self.buf.advance(9);
                    return Some((head, self.buf.split_to(head.len).freeze()));
                }
            }
            let read = tokio::time::timeout(Duration::from_secs(5), self.io.read_buf(&mut self.buf)).await;
            if read.expect("the peer answers within 5 s").unwrap() == 0 {
                return None;
            }
        }
    }

    /// The next frame of `kind`, skipping SETTINGS, WINDOW_UPDATE and PING.
    pub(crate) async fn next(&mut self, kind: u8) -> (Head, Bytes) {
        loop {
            let (head, payload) = self.frame().await.expect("the connection is open");
            if head.kind == kind {
                return (head, payload);
            }
            assert!(matches!(head.kind, frame::SETTINGS | frame::WINDOW_UPDATE | frame::PING), "{head:?}");
        }
    }

    /// A response (on `stream`, if given): its stream, its fields, its body until END_STREAM,
    /// and its trailers' fields.
    pub(crate) async fn response(
        &mut self,
        stream: Option<u32>,
    ) -> (u32, Vec<(String, String)>, Vec<u8>, Vec<(String, String)>) {
        let (head, block) = self.next(frame::HEADERS).await;
        if let Some(stream) = stream {
            assert_eq!(head.stream, stream);
        }
        let fields = self.decode(&block);
        let (mut body, mut trailers) = (Vec::new(), Vec::new());
        let mut end = head.flags & frame::END_STREAM != 0;
        while !end {
            let (head, payload) = self.frame().await.expect("the body");
            match head.kind {
                frame::DATA => body.extend_from_slice(&payload),
                frame::HEADERS => trailers = self.decode(&payload),
                _ => continue,
            }
            end = head.flags & frame::END_STREAM != 0;
        }
        (head.stream, fields, body, trailers)
    }

    pub(crate) fn decode(&mut self, block: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.decoder
            .decode(block, |name, value, _| {
                out.push((name.as_str().to_string(), String::from_utf8_lossy(&value).into_owned()))
            })
            .unwrap();
        out
    }

    /// The GOAWAY's reason, after which the server closes.
    pub(crate) async fn goaway(&mut self) -> Reason {
        let (_, payload) = self.next(frame::GOAWAY).await;
        Reason(frame::be32(&payload[4..]))
    }

    pub(crate) async fn rst(&mut self) -> (u32, Reason) {
        let (head, payload) = self.next(frame::RST_STREAM).await;
        (head.stream, Reason(frame::be32(&payload)))
    }
}

pub(crate) fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn requests_with_bodies_and_trailers_are_answered_on_their_streams() {
    let (mut c, _server, _stop) = Wire::start(Echo::default(), &[]).await;
    let (head, _) = c.next(frame::SETTINGS).await;
    assert_eq!(head.flags & frame::ACK, 0, "the server's own SETTINGS come first");
    c.headers(1, &get("/a"), true).await;
    c.headers(3, &post("/b"), false).await;
    c.data(3, b"hello ", false).await;
    c.data(3, b"world", false).await;
    c.headers(3, &block(&[("x-sum", "42")]), true).await;
    // Either may be answered first.
    let (mut first, mut second) = (c.response(None).await, c.response(None).await);
    if first.0 == 3 {
        std::mem::swap(&mut first, &mut second);
    }
    let (_, fields, body, _) = first;
    assert_eq!(field(&fields, ":status"), Some("200"));
    assert_eq!(field(&fields, "x-path"), Some("/a"));
    assert!(field(&fields, "date").is_some());
    assert!(body.is_empty());
    let (_, fields, body, trailers) = second;
    assert_eq!(field(&fields, "x-path"), Some("/b"));
    assert_eq!(body, b"hello world");
    assert_eq!(field(&trailers, "x-sum"), Some("42"), "trailers both ways");
}

#[tokio::test]
async fn a_response_waits_for_the_clients_window() {
    // The client's window is 10,000 bytes: the rest of the 100,000 waits for its updates.
    let (mut c, _server, _stop) = Wire::start(Echo::default(), &[(frame::INITIAL_WINDOW_SIZE, 10_000)]).await;
    c.headers(1, &get("/big"), true).await;
    let (head, _) = c.next(frame::HEADERS).await;
    assert_eq!(head.flags & frame::END_STREAM, 0);
    let mut got = 0;
    while got < 10_000 {
        got += c.next(frame::DATA).await.0.len;
    }
    assert_eq!(got, 10_000, "no more than the window");
    let mut more = Vec::new();
    frame::window_update(&mut more, 0, 1 << 20);
    frame::window_update(&mut more, 1, 90_000);
    c.send(&more).await;
    loop {
        let (head, _) = c.next(frame::DATA).await;
        got += head.len;
        if head.flags & frame::END_STREAM != 0 {
            break;
        }
        assert!(head.len <= 16_384, "frames no larger than the client allows");
    }
    assert_eq!(got, 100_000);
}

#[tokio::test]
async fn a_large_request_body_is_given_window_as_it_is_read() {
    let (mut c, _server, _stop) = Wire::start(Echo::default(), &[]).await;
    c.headers(1, &post("/count"), false).await;
    // 1,500,000 bytes: more than the stream's 1 MB window, so the server must give some back.
    let chunk = vec![7u8; 15_000];
    let mut sent = 0;
    let mut window = i64::from(conn::STREAM_WINDOW);
    while sent < 1_500_000 {
        while window < chunk.len() as i64 {
            let (head, payload) = c.next(frame::WINDOW_UPDATE).await;
            if head.stream == 1 {
                window += i64::from(frame::be31(&payload));
            }
        }
        c.data(1, &chunk, sent + chunk.len() >= 1_500_000).await;
        sent += chunk.len();
        window -= chunk.len() as i64;
    }
    let (_, _, body, _) = c.response(Some(1)).await;
    assert_eq!(body, b"1500000");
}

#[tokio::test]
async fn a_reset_stream_stops_its_request_and_the_connection_goes_on() {
    let echo = Echo::default();
    let (mut c, _server, _stop) = Wire::start(echo.clone(), &[]).await;
    c.headers(1, &get("/slow"), true).await;
    // Its answer to a ping means the request was read and its future started.
    let mut ping = Vec::new();
    frame::ping(&mut ping, 0, b"12345678");
    c.send(&ping).await;
    while c.next(frame::PING).await.0.flags & frame::ACK == 0 {}
    let mut rst = Vec::new();
    frame::rst_stream(&mut rst, 1, Reason(8));
    c.send(&rst).await;
    c.headers(3, &get("/after"), true).await;
    let (_, fields, _, _) = c.response(Some(3)).await;
    assert_eq!(field(&fields, "x-path"), Some("/after"));
    assert!(echo.dropped.load(Ordering::SeqCst), "the reset request's future was dropped");
}

#[tokio::test]
async fn malformed_requests_are_reset_and_the_connection_goes_on() {
    let (mut c, _server, _stop) = Wire::start(Echo::default(), &[]).await;
    let cases = [
        block(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), ("Upper", "x")]),
        block(&[(":method", "GET"), (":path", "/")]),
        block(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), ("connection", "close")]),
        block(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), ("content-length", "5")]),
    ];
    // The uppercase name is a decoding error of the block as a whole.
    c.headers(1, &cases[0], true).await;
    assert_eq!(c.goaway().await, Reason::COMPRESSION_ERROR);
    let (mut c, _server, _stop) = Wire::start(Echo::default(), &[]).await;
    for (i, case) in cases[1..].iter().enumerate() {
        let id = 2 * i as u32 + 1;
        c.headers(id, case, true).await;
        assert_eq!(c.rst().await, (id, Reason::PROTOCOL_ERROR));
    }
    // Trailers that do not end the stream: the request's body breaks, the stream is reset.
    c.headers(9, &post("/b"), false).await;
    c.headers(9, &block(&[("x-sum", "1")]), false).await;
    assert_eq!(c.rst().await, (9, Reason::PROTOCOL_ERROR));
    c.headers(11, &get("/fine"), true).await;
    assert_eq!(field(&c.response(Some(11)).await.1, "x-path"), Some("/fine"));
    // A request CONNECT: answered as the HTTP/1.1 server answers it.
    c.headers(13, &block(&[(":method", "CONNECT"), (":authority", "svc:443")]), true).await;
    assert_eq!(field(&c.response(Some(13)).await.1, ":status"), Some("405"));
}

#[tokio::test]
async fn protocol_errors_end_the_connection_with_goaway() {
    let mut too_big = Vec::new();
    frame::head(&mut too_big, 20_000, frame::DATA, 0, 1);
    too_big.extend_from_slice(&[0; 20_000]);
    let mut data_on_zero = Vec::new();
    frame::head(&mut data_on_zero, 1, frame::DATA, 0, 0);
    data_on_zero.push(0);
    let mut even = Vec::new();
    frame::headers(&mut even, 2, &get("/"), true, 16_384);
    let mut continuation_alone = Vec::new();
    frame::head(&mut continuation_alone, 0, frame::CONTINUATION, frame::END_HEADERS, 1);
    let mut bad_window = Vec::new();
    frame::window_update(&mut bad_window, 0, 0);
    for (bytes, reason) in [
        (too_big, Reason::FRAME_SIZE_ERROR),
        (data_on_zero, Reason::PROTOCOL_ERROR),
        (even, Reason::PROTOCOL_ERROR),
        (continuation_alone, Reason::PROTOCOL_ERROR),
        (bad_window, Reason::PROTOCOL_ERROR),
    ] {
        let (mut c, server, _stop) = Wire::start(Echo::default(), &[]).await;
        c.send(&bytes).await;
        assert_eq!(c.goaway().await, reason);
        assert!(c.frame().await.is_none(), "then it closes");
        assert!(server.await.unwrap().is_err());
    }
}

#[tokio::test]
async fn floods_end_the_connection_with_enhance_your_calm() {
    // CONTINUATION without end.
    let (mut c, _server, _stop) = Wire::start(Echo::default(), &[]).await;
    let mut out = Vec::new();
    frame::head(&mut out, 0, frame::HEADERS, 0, 1);
    for _ in 0..40 {
        frame::head(&mut out, 16_000, frame::CONTINUATION, 0, 1);
        out.extend_from_slice(&[0x40; 16_000]);
    }
    c.send(&out).await;
    assert_eq!(c.goaway().await, Reason::ENHANCE_YOUR_CALM);
    // Streams opened and reset at once (rapid reset).
    let (mut c, _server, _stop) = Wire::start(Echo::default(), &[]).await;
    let mut out = Vec::new();
    for i in 0..500u32 {
        frame::headers(&mut out, 2 * i + 1, &get("/slow"), true, 16_384);
        frame::rst_stream(&mut out, 2 * i + 1, Reason(8));
    }
    c.send(&out).await;
    assert_eq!(c.goaway().await, Reason::ENHANCE_YOUR_CALM);
}

#[tokio::test]
async fn streams_past_the_limit_are_refused() {
    let (mut c, _server, _stop) = Wire::start(Echo::default(), &[]).await;
    let mut out = Vec::new();
    for i in 0..conn::MAX_STREAMS + 1 {
        frame::headers(&mut out, 2 * i + 1, &get("/slow"), true, 16_384);
    }
    c.send(&out).await;
    assert_eq!(c.rst().await, (2 * conn::MAX_STREAMS + 1, Reason::REFUSED_STREAM));
}

#[tokio::test]
async fn a_shutdown_finishes_the_streams_in_flight_then_closes() {
    let (mut c, server, stop) = Wire::start(Echo::default(), &[]).await;
    c.headers(1, &post("/late"), false).await;
    c.next(frame::SETTINGS).await;
    stop.send(true).unwrap();
    assert_eq!(c.goaway().await, Reason::NO_ERROR);
    c.data(1, b"still", true).await;
    let (_, _, body, _) = c.response(Some(1)).await;
    assert_eq!(body, b"still");
    assert!(c.frame().await.is_none());
    assert!(server.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_client_that_never_sends_settings_is_let_go() {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (_stop_tx, stop) = Shutdown::new();
    let server = tokio::spawn(serve(theirs, Peer::Plaintext, Echo::default(), stop, Duration::from_millis(200)));
    let mut ours = ours;
    ours.write_all(frame::PREFACE).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), server).await.expect("closed in time");
    assert!(ended.unwrap().is_err());
}

#[test]
fn random_frames_and_header_blocks_never_panic() {
    use conn::open::{Request, exchange};
    let mut rng = fastrand::Rng::with_seed(23);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    for round in 0..4_000 {
        // As a server, and as a client with streams 1, 3 and 5 open.
        let role = if round % 2 == 0 { Role::Server } else { Role::Client };
        let mut state = State::new(role);
        let mut bytes = Vec::new();
        let mut waiting = Vec::new();
        match role {
            Role::Server => bytes.extend_from_slice(frame::PREFACE),
            Role::Client => {
                for _ in 0..3 {
                    let (answer, responding) = exchange(state.credit.clone());
                    let req = Request { head: get("/r"), body: conn::Sending::Done, head_only: false };
                    state.open(req, answer, &mut cx);
                    waiting.push(responding);
                }
            }
        }
        frame::settings(&mut bytes, &[]);
        for _ in 0..rng.usize(1..8) {
            let len = rng.usize(0..64);
            let kind = rng.u8(0..11);
            // Mostly well-formed blocks, so that HEADERS get past the decoder.
            let payload: Vec<u8> = match (kind, role) {
                (frame::HEADERS, Role::Server) if rng.bool() => get("/r"),
                (frame::HEADERS, Role::Client) if rng.bool() => block(&[(":status", "200")]),
                _ => (0..len).map(|_| rng.u8(..)).collect(),
            };
            frame::head(&mut bytes, payload.len(), kind, rng.u8(..), rng.u32(0..8));
            bytes.extend_from_slice(&payload);
        }
        let mut buf = bytes::BytesMut::from(&bytes[..]);
        let _ = state.read(&mut buf, &mut Vec::new());
        state.credit();
        state.pump_all(&mut cx);
        let mut decoder = hpack::Decoder::default();
        let block: Vec<u8> = (0..rng.usize(0..40)).map(|_| rng.u8(..)).collect();
        let _ = decoder.decode(&block, |_, _, _| {});
    }
}
