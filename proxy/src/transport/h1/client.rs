//! The upstream side: requests whose body is in hand, over pooled connections.

use super::wire::{self, Chunked, Framing, Piece};
use crate::errors::{BoxError, UpstreamError};
use crate::sync::Locked;
use crate::transport::Connector;
use bytes::{Bytes, BytesMut};
use http::{Method, Response};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

/// Idle connections kept per upstream address, as nginx's `keepalive 128` would...
const MAX_IDLE_PER_ADDR: usize = 128;
/// ...and more during a burst: a connection beyond those is kept while it was used this
/// recently. Closing each one as it came back, with more requests in flight than 128, made
/// every request past them open a connection of its own (HTTP/2 at 100 streams on 16
/// connections: 3 × the CPU per request; HAProxy keeps them all). Each still holds its slot
/// of the service's `maxConnections`.
const BURST_IDLE: Duration = Duration::from_secs(2);
const MAX_IDLE_BURST: usize = 8192;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 16 * 1024;
/// A connection's read buffer. Heads and small bodies are sliced out of it, not copied, so it
/// is shared with them; room for a read is found in what is left of it (at least
/// [`MIN_READ`]), and only then is a new one allocated.
const READ_CHUNK: usize = 8 * 1024;
const MIN_READ: usize = 1024;

/// Pooled HTTP/1.1 connections by upstream address. Cheap to clone.
#[derive(Clone)]
pub struct Pool(Arc<Inner>);

struct Inner {
    /// Per address, least recently used first.
    idle: Mutex<crate::hash::Map<Box<str>, VecDeque<Idle>>>,
    connector: Connector,
    /// Requests waiting for a connection (under `maxConnections`) that want to hear when one
    /// comes back to the pool.
    waiting: AtomicUsize,
    returned: tokio::sync::Notify,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

struct Conn {
    /// Before `io`, as fields drop in order: a request still queued is submitted before the
    /// socket closes.
    pending: crate::batch::Pending,
    io: crate::transport::Upstream,
    /// Bytes read and not yet used.
    buf: BytesMut,
    served: u32,
}

impl Pool {
    pub fn new(connector: Connector) -> Self {
        let inner = Arc::new(Inner {
            idle: Mutex::default(),
            connector,
            waiting: AtomicUsize::new(0),
            returned: tokio::sync::Notify::new(),
        });
        // Idle connections to an address no one calls any more are closed in the background.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(reap(Arc::downgrade(&inner)));
        }
        Pool(inner)
    }

    /// Sends one request and reads its response head. Without a Host header, the request's
    /// authority or `addr` is sent as one; after `max_requests` responses (0: no limit) a
    /// connection is closed.
    pub async fn send(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        addr: &str,
        max_requests: u32,
    ) -> Result<Response<crate::Body>, UpstreamError> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let host = parts.uri.authority().map_or(addr, |a| a.as_str());
        let inline = body.len() <= INLINE_BODY;
        let mut head = Vec::with_capacity(256 + if inline { body.len() } else { 0 });
        wire::encode_head(&parts.method, path, &parts.headers, host, body.len(), &mut head);
        let body = if inline {
            head.extend_from_slice(&body);
            Bytes::new()
        } else {
            body
        };
        loop {
            let (mut conn, reused) = match self.checkout(addr) {
                Some(conn) => (conn, true),
                // Boxed, like the other rare paths below: the common request's future stays small.
                None => (Box::pin(self.connect(addr)).await?, false),
            };
            match conn.exchange(&head, &body, &parts.method).await {
                Ok(h) => return Ok(self.respond(conn, h, addr, max_requests)),
                // An idle connection the upstream closed as we picked it: nothing was
                // processed, so an idempotent request goes again on another connection.
                Err(Exchange::NothingBack(_)) if reused && parts.method.is_idempotent() => continue,
                Err(Exchange::NothingBack(e) | Exchange::Failed(e)) => return Err(e),
            }
        }
    }

    /// The response, with a body that reads the rest from the connection and gives it back
    /// to the pool at its end. A body already read whole returns the connection at once.
    fn respond(&self, mut conn: Conn, head: wire::Head, addr: &str, max_requests: u32) -> Response<crate::Body> {
        conn.served += 1;
        let keep = head.keep_alive && (max_requests == 0 || conn.served < max_requests);
        let body = match head.framing {
            Framing::Length(n) if (conn.buf.len() as u64) >= n => {
                let data = conn.buf.split_to(n as usize).freeze();
                self.checkin(addr, conn, keep);
                if data.is_empty() {
                    Empty::new().map_err(|never| match never {}).boxed_unsync()
                } else {
                    Full::new(data).map_err(|never| match never {}).boxed_unsync()
                }
            }
            framing => {
                let state = match framing {
                    Framing::Length(n) => State::Length(n),
                    Framing::Chunked => State::Chunked(Chunked::Size),
                    Framing::Eof => State::Eof,
                };
                let back = keep.then(|| (self.clone(), Box::<str>::from(addr)));
                Incoming { conn: Some(conn), state, back }.boxed_unsync()
            }
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        resp.extensions_mut().insert(head.headers);
        resp
    }

    /// The most recently used idle connection to `addr` that is still open.
    fn checkout(&self, addr: &str) -> Option<Conn> {
        let mut idle = self.0.idle.locked();
        let list = idle.get_mut(addr)?;
        while let Some(Idle { mut conn, since }) = list.pop_back() {
            if crate::clock::now().saturating_duration_since(since) > IDLE_TIMEOUT {
                // The rest are older still.
                list.clear();
                return None;
            }
            if conn.is_open() {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, addr: &str, conn: Conn, keep: bool) {
        // Bytes beyond the response mean the upstream and this client disagree on framing.
        if !keep || !conn.buf.is_empty() {
            return;
        }
        {
            let mut idle = self.0.idle.locked();
            let list = match idle.get_mut(addr) {
                Some(list) => list,
                None => idle.entry(addr.into()).or_default(),
            };
            let now = crate::clock::now();
            // Beyond the 128, the least recently used go once a burst is over.
            while list.len() >= MAX_IDLE_PER_ADDR
                && list.front().is_some_and(|i| now.saturating_duration_since(i.since) > BURST_IDLE)
            {
                list.pop_front();
            }
            if list.len() >= MAX_IDLE_BURST {
                return;
            }
            list.push_back(Idle { conn, since: now });
        }
        if self.0.waiting.load(Ordering::Relaxed) > 0 {
            self.0.returned.notify_waiters();
        }
    }

    /// A new connection, or, while the service is at its `maxConnections`, whichever comes
    /// first: a free slot or a connection given back to the pool.
    async fn connect(&self, addr: &str) -> Result<Conn, UpstreamError> {
        let uri = http::Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(addr)
            .path_and_query("/")
            .build()
            .map_err(|e| UpstreamError::connect(Box::new(e)))?;
        let connecting = tower_service::Service::call(&mut self.0.connector.clone(), uri);
        tokio::pin!(connecting);
        let _waiting = Waiting::new(&self.0.waiting);
        loop {
            let returned = self.0.returned.notified();
            tokio::select! {
                connected = &mut connecting => {
                    let io = connected.map_err(UpstreamError::connect)?.into_inner();
                    return Ok(Conn { pending: Default::default(), io, buf: BytesMut::with_capacity(READ_CHUNK), served: 0 });
                }
                _ = returned => {
                    if let Some(conn) = self.checkout(addr) {
                        return Ok(conn);
                    }
                }
            }
        }
    }
}

/// Counts a waiter for as long as it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn reap(pool: Weak<Inner>) {
    loop {
        tokio::time::sleep(BURST_IDLE).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle.locked();
        idle.retain(|_, list| {
            // Least recently used first: those beyond the 128 unused since a burst, and any
            // unused for the idle timeout.
            while list.front().is_some_and(|i| {
                let unused = i.since.elapsed();
                unused > IDLE_TIMEOUT || (list.len() > MAX_IDLE_PER_ADDR && unused > BURST_IDLE)
            }) {
                list.pop_front();
            }
            !list.is_empty()
        });
    }
}

/// How an exchange failed: before the upstream sent a single byte back (so a stale idle
/// connection may be why), or after.
enum Exchange {
    NothingBack(UpstreamError),
    Failed(UpstreamError),
}

impl Conn {
    /// Writes the request and reads the response head.
    async fn exchange(&mut self, head: &[u8], body: &[u8], method: &Method) -> Result<wire::Head, Exchange> {
        let written = async {
            if body.is_empty() {
                return self.pending.write(&mut self.io, head).await;
            }
            // A large body follows its head straight, not through the batch.
            self.pending.settle().await?;
            self.io.write_all(head).await?;
            self.io.write_all(body).await?;
            self.io.flush().await
        };
        written.await.map_err(|e| Exchange::NothingBack(UpstreamError::io(e)))?;
        let mut got_any = !self.buf.is_empty();
        let mut interim = Vec::new();
        loop {
            match wire::parse_head(&mut self.buf, method, &mut interim) {
                Ok(Some(mut head)) if !interim.is_empty() => {
                    head.headers = head.headers.with_interim(interim.into());
                    return Ok(head);
                }
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err(Exchange::Failed(UpstreamError::other(Box::new(e)))),
            }
            self.buf.reserve(MIN_READ);
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) if !got_any => return Err(Exchange::NothingBack(UpstreamError::closed())),
                Ok(0) => return Err(Exchange::Failed(UpstreamError::closed())),
                Ok(_) => got_any = true,
                Err(e) if !got_any => return Err(Exchange::NothingBack(UpstreamError::io(e))),
                Err(e) => return Err(Exchange::Failed(UpstreamError::io(e))),
            }
        }
    }

    /// True unless the upstream closed (or sent something unasked) while the connection was
    /// idle. Looks without waiting: readiness already known to the runtime, no system call.
    fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        let mut byte = [0u8; 1];
        let mut probe = ReadBuf::new(&mut byte);
        matches!(Pin::new(&mut self.io).poll_read(&mut cx, &mut probe), Poll::Pending)
    }
}

/// What one look at the buffered bytes gave.
enum Step {
    Frame(Frame<Bytes>),
    End,
    More,
}

enum State {
    Length(u64),
    Chunked(Chunked),
    Eof,
}

/// A response body read from its connection; at its end the connection goes back to the pool
/// (`back`), unless it may not be reused. Dropped early, it closes the connection.
struct Incoming {
    conn: Option<Conn>,
    state: State,
    back: Option<(Pool, Box<str>)>,
}

impl Incoming {
    fn done(&mut self) {
        if let (Some(conn), Some((pool, addr))) = (self.conn.take(), self.back.take()) {
            pool.checkin(&addr, conn, true);
        }
    }
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            let step = match &mut this.state {
                State::Length(0) => Step::End,
                State::Length(left) if !conn.buf.is_empty() => {
                    let n = (conn.buf.len() as u64).min(*left);
                    *left -= n;
                    Step::Frame(Frame::data(conn.buf.split_to(n as usize).freeze()))
                }
                State::Chunked(chunked) => match wire::decode_chunked(&mut conn.buf, chunked) {
                    Ok(Some(Piece::Data(data))) => Step::Frame(Frame::data(data)),
                    Ok(Some(Piece::Trailers(trailers))) => Step::Frame(Frame::trailers(trailers)),
                    Ok(Some(Piece::End)) => Step::End,
                    Ok(None) => Step::More,
                    Err(e) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                },
                State::Eof if !conn.buf.is_empty() => Step::Frame(Frame::data(conn.buf.split().freeze())),
                State::Length(_) | State::Eof => Step::More,
            };
            match step {
                Step::End => {
                    this.done();
                    return Poll::Ready(None);
                }
                Step::Frame(frame) => {
                    // The last bytes, or the trailers: a reader may stop polling here.
                    if matches!(this.state, State::Length(0) | State::Chunked(Chunked::Done)) {
                        this.done();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Step::More => {}
            }
            conn.buf.reserve(MIN_READ);
            let read = std::pin::pin!(conn.io.read_buf(&mut conn.buf));
            match ready!(read.poll(cx)) {
                Ok(0) if matches!(this.state, State::Eof) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(UpstreamError::closed()))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.state, State::Length(0) | State::Chunked(Chunked::Done))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
