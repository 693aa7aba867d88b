//! The downstream side: a connection is served request by request in its own task while its
//! requests are simple; the first that is not hands the connection, with every byte read so
//! far, to hyper for the rest of its life.

use super::wire::{self, Out};
use crate::MAX_REPLAY_BODY;
use crate::batch::Wire;
use crate::sync::Shutdown;
use crate::transport::Peer;
use crate::transport::Stream;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// A connection's read buffer, shared with the heads sliced out of it; room for a read is
/// found in what is left (at least [`MIN_READ`]) before a new one is allocated.
const READ_CHUNK: usize = 4 * 1024;
const MIN_READ: usize = 1024;
/// A connection idle longer than this gives its buffers back: an idle keep-alive connection
/// then costs only its task, while a busy one does not allocate them per request.
const KEEP_BUFFERS: Duration = Duration::from_secs(1);
/// Body bytes up to this size go out in the same write as what precedes them.
const INLINE: usize = 16 * 1024;
/// Far enough away that the first deadline moves a new connection's timer.
const UNSET: Duration = Duration::from_secs(86_400);

/// What the fast server asks of a connection besides reading and writing.
pub trait Socket {
    /// Whether a connection has bytes to read, asked without reading: an idle keep-alive
    /// connection then holds no buffer and costs only its task. Polled, not awaited: the
    /// socket's reader slot takes the waker, where a `readable()` future would join (and leave)
    /// a list of waiters under a lock on every wait.
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Socket for TcpStream {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl<T> Socket for Stream<T> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(tcp) => tcp.poll_read_ready(cx),
            // TLS may hold decrypted bytes the socket no longer shows: read, and find out.
            Stream::Tls(_) => Poll::Ready(Ok(())),
        }
    }
}

/// How a connection left the fast server.
pub enum Served<IO> {
    /// Closed, or given up (idle too long, shutdown, broken).
    Done,
    /// For hyper to serve from here, starting with the bytes already read.
    Handoff(Rewind<IO>),
}

/// Serves `io` while its requests are simple. `header_timeout` bounds the wait for each
/// request's head (idle keep-alive included) and body; after `shutdown` flips, the request in
/// hand is answered and the connection closed.
pub async fn serve_connection<IO, S>(
    mut io: IO,
    peer: &Peer,
    service: &mut S,
    header_timeout: Duration,
    shutdown: &Shutdown,
) -> Served<IO>
where
    IO: AsyncRead + AsyncWrite + Socket + Wire + Unpin,
    S: tower_service::Service<
            Request<crate::ReqBody>,
            Response = Response<crate::Body>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        >,
{
    // Dropped before `io` (locals go before arguments): a response still queued is submitted
    // before the socket closes.
    let mut pending = crate::batch::Pending::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let timer = tokio::time::sleep(UNSET);
    tokio::pin!(timer);
    // Listened to for the connection's whole life: a registration per idle wait costs more.
    let mut stop = shutdown.clone();
    let stopped = async move { stop.recv().await };
    tokio::pin!(stopped);
    loop {
        let now = Instant::from_std(crate::clock::now());
        let (deadline, keep_until) = (now + header_timeout, now + KEEP_BUFFERS.min(header_timeout));
        let (head, body_len, close, trailers) = loop {
            if !buf.is_empty() {
                match wire::parse_request(&mut buf, MAX_REPLAY_BODY) {
                    wire::Request::Simple { head, body, close, trailers } => break (head, body, close, trailers),
                    wire::Request::Other => {
                        // hyper writes next: the last response goes first.
                        if pending.settle().await.is_err() {
                            return Served::Done;
                        }
                        return Served::Handoff(Rewind { prefix: buf.freeze(), io });
                    }
                    wire::Request::Refused(refused) => {
                        // Boxed: its drain buffer would otherwise sit in every connection's task.
                        Box::pin(refuse(&mut io, &mut pending, refused, &mut out)).await;
                        return Served::Done;
                    }
                    wire::Request::Partial => {}
                }
            } else if shutdown.is_shutdown() {
                return Served::Done;
            } else {
                let waited = match wait(timer.as_mut(), readable(&io), keep_until, Some(stopped.as_mut())).await {
                    Wait::Late => {
                        // Idle: no buffer held while waiting.
                        (buf, out) = (BytesMut::new(), Vec::new());
                        matches!(
                            wait(timer.as_mut(), readable(&io), deadline, Some(stopped.as_mut())).await,
                            Wait::Done(Ok(()))
                        )
                    }
                    Wait::Done(r) => r.is_ok(),
                    Wait::Shutdown => false,
                };
                if !waited {
                    return Served::Done;
                }
            }
            if !read_more(&mut io, &mut buf, timer.as_mut(), deadline).await {
                return Served::Done;
            }
        };
        while buf.len() < body_len {
            if !read_more(&mut io, &mut buf, timer.as_mut(), deadline).await {
                return Served::Done;
            }
        }
        let body = match body_len {
            0 => Empty::new().map_err(|never| match never {}).boxed_unsync(),
            n => Full::new(buf.split_to(n).freeze()).map_err(|never| match never {}).boxed_unsync(),
        };
        let method = head.method.clone();
        let mut req = Request::from_parts(head, body);
        crate::transport::with_peer(&mut req, peer);
        let resp = match alarmed(timer.as_mut(), service.call(req)).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
        let close = close || shutdown.is_shutdown();
        let written = write_response(&mut io, &mut pending, resp, &method, close, trailers, &mut out).await;
        if written.is_err() || close {
            // The response goes out before the FIN.
            let _ = pending.settle().await;
            let _ = io.shutdown().await;
            return Served::Done;
        }
    }
}

/// The answer to a request refused before it was routed; it closes an HTTP/1 connection.
pub fn refusal(refused: wire::Refused, version: http::Version) -> Response<crate::Body> {
    let mut resp = Response::new(crate::errors::text(format!("{}\n", refused.why)));
    *resp.status_mut() = refused.status;
    let kind = match refused.status {
        http::StatusCode::URI_TOO_LONG => "uri-too-long",
        http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers-too-large",
        http::StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        http::StatusCode::NOT_IMPLEMENTED => "not-implemented",
        _ => "bad-request",
    };
    let headers = resp.headers_mut();
    headers.insert(crate::errors::ERROR_HEADER, http::HeaderValue::from_static(kind));
    if version < http::Version::HTTP_2 {
        headers.insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    resp
}

/// How long a refused connection's further bytes are read and dropped after the answer, so
/// that closing it with bytes unread (which resets it) does not destroy the answer in flight.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Answers a head that was refused, closes the connection, and reads nothing after it as a
/// request: what still comes is dropped for a moment (a lingering close, as nginx does).
async fn refuse<IO>(io: &mut IO, pending: &mut crate::batch::Pending, refused: wire::Refused, out: &mut Vec<u8>)
where
    IO: AsyncRead + AsyncWrite + Wire + Unpin,
{
    let resp = refusal(refused, http::Version::HTTP_11);
    tracing::debug!(status = refused.status.as_u16(), why = refused.why, "request head refused");
    if write_response(io, pending, resp, &Method::GET, true, false, out).await.is_err()
        || pending.settle().await.is_err()
        || io.shutdown().await.is_err()
    {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut read = 0;
        while read < LINGER_BYTES {
            match io.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

fn readable(io: &impl Socket) -> impl Future<Output = io::Result<()>> + '_ {
    std::future::poll_fn(|cx| io.poll_readable(cx))
}

/// How a wait ended.
enum Wait<T> {
    Done(T),
    Late,
    Shutdown,
}

/// Waits for `fut` until `deadline`, or until `shutdown` (when given) completes; it is not
/// polled again after it has. `timer` is the connection's one timer for all its deadlines:
/// setting a timer costs more than a request, and almost every deadline is met, so a later
/// deadline does not move it; when it fires early it is moved on then, once a second or so
/// rather than once a request.
async fn wait<F: Future>(
    mut timer: Pin<&mut Sleep>,
    fut: F,
    deadline: Instant,
    shutdown: Option<Pin<&mut (dyn Future<Output = ()> + Send)>>,
) -> Wait<F::Output> {
    // What is ready now (the bytes that woke the connection, mostly) is taken without
    // touching the timer or the shutdown signal, each of which costs a registration.
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(done) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        return Wait::Done(done);
    }
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    let fired = std::future::poll_fn(|cx| {
        loop {
            std::task::ready!(timer.as_mut().poll(cx));
            if timer.deadline() >= deadline {
                return Poll::Ready(());
            }
            timer.as_mut().reset(deadline);
        }
    });
    tokio::select! {
        biased;
        done = &mut fut => Wait::Done(done),
        () = fired => Wait::Late,
        () = async { match shutdown { Some(s) => s.await, None => std::future::pending().await } } => Wait::Shutdown,
    }
}

/// Runs a request's future with its deadlines served by the connection's `timer` (see
/// `alarm`): the timer is moved only when it would fire after the earliest of them, or has
/// fired already.
async fn alarmed<F: Future>(mut timer: Pin<&mut Sleep>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut fired = None;
    std::future::poll_fn(|cx| {
        loop {
            let deadline = match crate::alarm::poll(fut.as_mut(), cx, fired.take()) {
                (Poll::Ready(out), _) => return Poll::Ready(out),
                (Poll::Pending, None) => return Poll::Pending,
                (Poll::Pending, Some(deadline)) => Instant::from_std(deadline),
            };
            if timer.is_elapsed() || timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            // Fired: the futures whose deadline it reached are polled again to say so.
            std::task::ready!(timer.as_mut().poll(cx));
            fired = Some(timer.deadline().into_std());
        }
    })
    .await
}

/// Reads what has arrived (at least one byte) before `deadline`. False: closed, failed or
/// late. A request begun is read to its end whatever `shutdown` says: it will be answered.
async fn read_more<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut BytesMut,
    timer: Pin<&mut Sleep>,
    deadline: Instant,
) -> bool {
    if buf.capacity() == 0 {
        *buf = BytesMut::with_capacity(READ_CHUNK);
    }
    buf.reserve(MIN_READ);
    matches!(wait(timer, io.read_buf(buf), deadline, None).await, Wait::Done(Ok(n)) if n > 0)
}

/// Writes a response: the head and a small first piece of body in one write, each later piece
/// as it comes (a stream is not held back), chunked when its length is not known.
async fn write_response<IO: AsyncWrite + Wire + Unpin>(
    io: &mut IO,
    pending: &mut crate::batch::Pending,
    resp: Response<crate::Body>,
    method: &Method,
    close: bool,
    trailers_wanted: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    use http_body::Body as _;
    // What follows goes after the last response.
    pending.settle().await?;
    let (parts, mut body) = resp.into_parts();
    out.clear();
    let (head_request, length) = (*method == Method::HEAD, body.size_hint().exact());
    let framing = wire::encode_response_head(&parts, head_request, length, close, &date(), out);
    let mut left = match framing {
        Out::Nothing => 0,
        Out::Length(n) => n,
        Out::Chunked => u64::MAX,
    };
    while left > 0 && !body.is_end_stream() {
        let Some(frame) = body.frame().await else { break };
        let frame = frame.map_err(io::Error::other)?;
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let (Ok(t), true) = (frame.into_trailers(), trailers_wanted) {
                    wire::last_chunk(Some(&t), out);
                    left = 0;
                }
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        if framing == Out::Chunked {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        } else if data.len() as u64 > left {
            return Err(io::Error::other("the response body is longer than its Content-Length"));
        } else {
            left -= data.len() as u64;
        }
        if data.len() <= INLINE {
            out.extend_from_slice(&data);
        } else {
            io.write_all(out).await?;
            out.clear();
            io.write_all(&data).await?;
        }
        if framing == Out::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        if left > 0 && !body.is_end_stream() {
            io.write_all(out).await?;
            io.flush().await?;
            out.clear();
        }
    }
    match framing {
        Out::Chunked if left > 0 => wire::last_chunk(None, out),
        Out::Length(_) if left > 0 => {
            io.write_all(out).await?;
            return Err(io::Error::other("the response body ended before its Content-Length"));
        }
        _ => {}
    }
    pending.write(io, out).await
}

/// The `Date` header's value, formatted once a second: the wall clock is read when the
/// second the text names is over, by the task's monotonic time.
pub fn date() -> [u8; 29] {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(Option<std::time::Instant>, [u8; 29])> = const { RefCell::new((None, [0; 29])) };
    }
    let now = crate::clock::now();
    CACHE.with_borrow_mut(|(until, text)| {
        if until.is_none_or(|until| now >= until) {
            let wall = std::time::SystemTime::now();
            let into_second = wall.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
            let formatted = httpdate::fmt_http_date(wall);
            let n = formatted.len().min(29);
            text[..n].copy_from_slice(&formatted.as_bytes()[..n]);
            *until = Some(now + Duration::from_secs(1) - Duration::from_nanos(into_second.into()));
        }
        *text
    })
}

/// A connection whose first bytes were already read: they are read again first.
pub struct Rewind<S> {
    prefix: Bytes,
    io: S,
}

impl<S> Rewind<S> {
    /// The bytes read so far open HTTP/2 with prior knowledge.
    pub fn is_http2(&self) -> bool {
        self.prefix.starts_with(wire::PREFACE)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

crate::transport::write_through!(Rewind);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn the_date_header_names_the_current_second_and_moves_with_it() {
        let parse = |d: [u8; 29]| httpdate::parse_http_date(std::str::from_utf8(&d).unwrap()).unwrap();
        let first = parse(date());
        let behind = std::time::SystemTime::now().duration_since(first).unwrap();
        assert!(behind < Duration::from_secs(1), "{behind:?}");
        std::thread::sleep(Duration::from_millis(1100));
        assert!(parse(date()) > first, "a later second, a later date");
    }

    /// Answers every request 200 with an empty body.
    #[derive(Clone)]
    struct Ok200;

    impl tower_service::Service<Request<crate::ReqBody>> for Ok200 {
        type Response = Response<crate::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<crate::ReqBody>) -> Self::Future {
            std::future::ready(Ok(Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync())))
        }
    }

    /// A client connected to `serve_connection` with `timeout`, and the server's task.
    async fn connected(timeout: Duration) -> (TcpStream, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (io, _) = listener.accept().await.unwrap();
        let server = tokio::spawn(async move {
            let (_keep, shutdown) = Shutdown::new();
            serve_connection(io, &Peer::Plaintext, &mut Ok200, timeout, &shutdown).await;
        });
        (client, server)
    }

    async fn ask(client: &mut TcpStream) -> String {
        client.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        let mut got = vec![0; 1024];
        let n = client.read(&mut got).await.unwrap();
        String::from_utf8_lossy(&got[..n]).into_owned()
    }

    #[tokio::test]
    async fn a_busy_connection_outlives_its_first_deadline_and_an_idle_one_does_not() {
        let (mut client, server) = connected(Duration::from_millis(300)).await;
        // Requests every 100 ms for a second: the deadline the first set passes long before the
        // last, and the connection must stay open all along.
        for _ in 0..10 {
            assert!(ask(&mut client).await.starts_with("HTTP/1.1 200"));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let idle = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
        let waited = idle.elapsed();
        assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(2), "{waited:?}");
    }

    #[tokio::test]
    async fn a_head_that_never_ends_is_given_up() {
        let (mut client, server) = connected(Duration::from_millis(200)).await;
        client.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
    }
}
