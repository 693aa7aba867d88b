//! HTTP/2 to upstreams (services declared `http2` or `grpc`), on `h2` directly: one multiplexed
//! connection per endpoint address, used by each request's own task.
//!
//! hyper's pooled client handed every request through a channel to a connection task, and it
//! leaves h2's budget for small DATA frames at its default (half the connection window). A gRPC
//! server streaming small messages faster than the proxy's client passed them on filled that
//! budget, and h2 closed the connection with ENHANCE_YOUR_CALM, failing every call on it
//! (16-37 % of the server-streaming calls in `bench/run.sh`). Here the budget covers what the
//! connection window lets an upstream have buffered, and a response body hands on everything
//! that has arrived as one piece, so frames are consumed (and the budget refunded) as fast as
//! the downstream client takes them.

use crate::errors::{BoxError, UpstreamError};
use crate::sync::Locked;
use crate::transport::Connector;
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::{BoxFuture, FutureExt, Shared};
use http::Response;
use http_body::Frame;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// As hyper's client had them: room for a fast upstream on a busy link.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
/// h2 charges each received DATA frame of n < 256 bytes (256 - n) while it waits to be read.
/// The connection window bounds the bytes an upstream can have waiting; in frames of 16 bytes
/// or more (a gRPC message is 5 bytes of framing and its payload) they are charged at most 15
/// times their size. The memory this lets a misbehaving upstream hold is bounded by the window
/// (some 100 bytes per 16-byte frame: 32 MB at worst), and upstreams are the mesh's own.
const DATA_FRAME_BUDGET: usize = 16 * CONNECTION_WINDOW as usize;
/// Pieces of a response body smaller than this are joined with what else has arrived.
const GATHER: usize = 16 * 1024;
/// A connection that carried no request for this long is closed (checked this often).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request body to send: in hand, or streamed from the client.
pub enum Outgoing {
    Full(Bytes),
    Streamed(crate::ReqBody),
}

/// HTTP/2 connections by upstream address. Cheap to clone.
#[derive(Clone)]
pub struct Pool(Arc<Inner>);

struct Inner {
    conns: Mutex<crate::hash::Map<Box<str>, Entry>>,
    connector: Connector,
    next_id: AtomicU64,
}

type Connecting = Shared<BoxFuture<'static, Result<Conn, Arc<str>>>>;

#[derive(Clone)]
enum Entry {
    /// Being dialled: every request for the address meanwhile waits for the same connection.
    Connecting(u64, Connecting),
    Ready(Conn),
}

#[derive(Clone)]
struct Conn {
    id: u64,
    send: h2::client::SendRequest<Bytes>,
    /// Responses it carried, for `maxRequestsPerConnection`.
    served: Arc<AtomicU32>,
    /// Whether a request picked it since the reaper last looked.
    used: Arc<AtomicBool>,
}

impl Pool {
    pub fn new(connector: Connector) -> Self {
        let inner = Arc::new(Inner { conns: Mutex::default(), connector, next_id: AtomicU64::new(0) });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(reap(Arc::downgrade(&inner)));
        }
        Pool(inner)
    }

    /// Sends one request and waits for its response head. After `max_requests` responses (0: no
    /// limit) a connection takes no new requests and closes once its streams are done.
    pub async fn send(
        &self,
        parts: &http::request::Parts,
        body: Outgoing,
        addr: &str,
        max_requests: u32,
    ) -> Result<Response<crate::Body>, UpstreamError> {
        let (empty, length) = match &body {
            Outgoing::Full(b) => (b.is_empty(), Some(b.len())),
            Outgoing::Streamed(b) => (http_body::Body::is_end_stream(b), None),
        };
        let (conn, (pending, mut tx)) = self.open(addr, || request(parts, addr, length), empty).await?;
        // Set when a streamed body of the client's breaks: the failure is then the client's.
        let failed = match body {
            _ if empty => None,
            Outgoing::Full(bytes) => {
                // h2 queues what the window cannot take yet: no task needed.
                let _ = tx.send_data(bytes, true);
                None
            }
            Outgoing::Streamed(body) => {
                let failed = Arc::new(AtomicBool::new(false));
                tokio::spawn(Pipe { body, tx, failed: failed.clone() });
                Some(failed)
            }
        };
        let resp = pending.await.map_err(|e| match failed.is_some_and(|f| f.load(Ordering::Relaxed)) {
            true => UpstreamError::client_body(e.into()),
            false => UpstreamError::other(e.into()),
        })?;
        if max_requests > 0 && conn.served.fetch_add(1, Ordering::Relaxed) + 1 >= max_requests {
            self.0.forget(addr, conn.id);
        }
        let (mut head, recv) = resp.into_parts();
        // Our listener picks its own version for its client.
        head.version = http::Version::default();
        use http_body_util::BodyExt;
        let body = Incoming { recv, data_done: false, error: None }.boxed_unsync();
        Ok(Response::from_parts(head, body))
    }

    /// Opens a stream for the request `head` makes on the address's connection. A connection
    /// that closed as it was picked sent nothing, so the request goes once more on a new one.
    async fn open(
        &self,
        addr: &str,
        head: impl Fn() -> Result<http::Request<()>, UpstreamError>,
        end: bool,
    ) -> Result<(Conn, (h2::client::ResponseFuture, h2::SendStream<Bytes>)), UpstreamError> {
        let mut again = true;
        loop {
            let conn = self.conn(addr).await?;
            let opened = match conn.send.clone().ready().await {
                Ok(mut send) => send.send_request(head()?, end),
                Err(e) => Err(e),
            };
            match opened {
                Ok(stream) => return Ok((conn, stream)),
                // Not the connection's failure (a head h2 refuses): the same again would fail too.
                Err(e) if !e.is_io() && e.reason().is_none() => return Err(UpstreamError::other(e.into())),
                Err(e) => {
                    self.0.forget(addr, conn.id);
                    if !std::mem::take(&mut again) {
                        return Err(UpstreamError::other(e.into()));
                    }
                }
            }
        }
    }

    /// The address's connection, dialled if there is none.
    async fn conn(&self, addr: &str) -> Result<Conn, UpstreamError> {
        let (id, connecting) = {
            let mut conns = self.0.conns.locked();
            match conns.get(addr) {
                Some(Entry::Ready(conn)) => {
                    if !conn.used.load(Ordering::Relaxed) {
                        conn.used.store(true, Ordering::Relaxed);
                    }
                    return Ok(conn.clone());
                }
                Some(Entry::Connecting(id, connecting)) => (*id, connecting.clone()),
                None => {
                    let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
                    let connecting = dial(Arc::downgrade(&self.0), self.0.connector.clone(), addr.into(), id);
                    let connecting = connecting.boxed().shared();
                    conns.insert(addr.into(), Entry::Connecting(id, connecting.clone()));
                    (id, connecting)
                }
            }
        };
        let dialled = connecting.await;
        let mut conns = self.0.conns.locked();
        if let Some(Entry::Connecting(at, _)) = conns.get(addr)
            && *at == id
        {
            match &dialled {
                Ok(conn) => conns.insert(addr.into(), Entry::Ready(conn.clone())),
                Err(_) => conns.remove(addr),
            };
        }
        dialled.map_err(|e| UpstreamError::connect(e.to_string().into()))
    }
}

impl Inner {
    /// Takes connection `id` out of the pool (it closed, or carried its last request); its
    /// streams in flight finish on it.
    fn forget(&self, addr: &str, id: u64) {
        let mut conns = self.conns.locked();
        let current = match conns.get(addr) {
            Some(Entry::Ready(conn)) => conn.id,
            Some(Entry::Connecting(at, _)) => *at,
            None => return,
        };
        if current == id {
            conns.remove(addr);
        }
    }
}

/// TCP (and mTLS), then the HTTP/2 handshake; the connection is driven by a task of its own,
/// which takes it out of the pool when it ends.
async fn dial(pool: Weak<Inner>, mut connector: Connector, addr: Box<str>, id: u64) -> Result<Conn, Arc<str>> {
    use tower_service::Service;
    let uri = http::Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(&*addr)
        .path_and_query("/")
        .build()
        .map_err(|e| Arc::<str>::from(e.to_string()))?;
    let io = connector.call(uri).await.map_err(|e| Arc::<str>::from(e.to_string()))?.into_inner();
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(16 * 1024)
        .max_header_list_size(16 * 1024)
        .max_send_buffer_size(1024 * 1024)
        .max_local_error_reset_streams(Some(1024))
        .data_frame_budget(DATA_FRAME_BUDGET)
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| Arc::<str>::from(format!("HTTP/2 handshake: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(%addr, error = %e, "upstream HTTP/2 connection failed");
        }
        if let Some(pool) = pool.upgrade() {
            pool.forget(&addr, id);
        }
    });
    Ok(Conn { id, send, served: Arc::default(), used: Arc::new(AtomicBool::new(true)) })
}

/// Lets go of connections no request picked for [`IDLE_TIMEOUT`]: those to endpoints that
/// left, or that are no longer called. One still carrying a stream closes when it ends.
async fn reap(pool: Weak<Inner>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.conns.locked().retain(|_, entry| match entry {
            Entry::Ready(conn) => conn.used.swap(false, Ordering::Relaxed),
            Entry::Connecting(..) => true,
        });
    }
}

/// The request head for an upstream: aimed at `addr` (its Host kept), without what HTTP/2
/// forbids (RFC 9113 §8.2.2), with a `content-length` when the body's `length` is known.
fn request(
    parts: &http::request::Parts,
    addr: &str,
    length: Option<usize>,
) -> Result<http::Request<()>, UpstreamError> {
    let mut req = http::Request::new(());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.headers_mut() = parts.headers.clone();
    *req.version_mut() = http::Version::HTTP_2;
    crate::transport::set_target(&mut req, addr).map_err(|e| UpstreamError::other(e.into()))?;
    let headers = req.headers_mut();
    headers.remove(http::header::TRANSFER_ENCODING);
    if headers.get(http::header::TE).is_some_and(|te| te != "trailers") {
        headers.remove(http::header::TE);
    }
    if let Some(length) = length
        && !headers.contains_key(http::header::CONTENT_LENGTH)
        && (length > 0 || matches!(parts.method, http::Method::POST | http::Method::PUT | http::Method::PATCH))
    {
        headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(length));
    }
    Ok(req)
}

/// Sends a client's streamed body upstream as the upstream's window allows, reading no further
/// from the client than the window has room for. A client's body that breaks resets the stream
/// and says so in `failed`: the failure is the client's, not the upstream's.
struct Pipe {
    body: crate::ReqBody,
    tx: h2::SendStream<Bytes>,
    failed: Arc<AtomicBool>,
}

impl Future for Pipe {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            this.tx.reserve_capacity(1);
            if this.tx.capacity() == 0 {
                loop {
                    match ready!(this.tx.poll_capacity(cx)) {
                        Some(Ok(0)) => {}
                        Some(Ok(_)) => break,
                        // The stream is gone; its response says why.
                        Some(Err(_)) | None => return Poll::Ready(()),
                    }
                }
            } else if this.tx.poll_reset(cx).is_ready() {
                return Poll::Ready(());
            }
            match ready!(http_body::Body::poll_frame(Pin::new(&mut this.body), cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let end = http_body::Body::is_end_stream(&this.body);
                        if this.tx.send_data(data, end).is_err() || end {
                            return Poll::Ready(());
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            let _ = this.tx.send_trailers(trailers);
                        }
                        return Poll::Ready(());
                    }
                },
                Some(Err(_)) => {
                    this.failed.store(true, Ordering::Relaxed);
                    this.tx.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(());
                }
                None => {
                    this.tx.reserve_capacity(0);
                    let _ = this.tx.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// An upstream's response body. What has arrived is handed on as one piece (up to
/// [`GATHER`]), and its window given back as it is.
struct Incoming {
    recv: h2::RecvStream,
    data_done: bool,
    /// An error met while gathering, for the next poll.
    error: Option<h2::Error>,
}

impl Incoming {
    fn gather(&mut self, first: Bytes, cx: &mut Context<'_>) -> Bytes {
        let mut taken = first.len();
        let mut joined: Option<BytesMut> = None;
        while taken < GATHER {
            match self.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(more))) => {
                    taken += more.len();
                    joined
                        .get_or_insert_with(|| {
                            let mut b = BytesMut::with_capacity(GATHER.max(taken));
                            b.put_slice(&first);
                            b
                        })
                        .put_slice(&more);
                }
                Poll::Ready(Some(Err(e))) => {
                    self.error = Some(e);
                    break;
                }
                Poll::Ready(None) => {
                    self.data_done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        let _ = self.recv.flow_control().release_capacity(taken);
        joined.map_or(first, BytesMut::freeze)
    }
}

/// A stream the upstream reset with NO_ERROR after a complete response (RFC 9113 §8.1) ends
/// the body; any other error fails it.
fn ended(e: h2::Error) -> Option<Result<Frame<Bytes>, BoxError>> {
    match e.reason() {
        Some(h2::Reason::NO_ERROR) => None,
        _ => Some(Err(e.into())),
    }
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(e) = this.error.take() {
            return Poll::Ready(ended(e));
        }
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(first)) => return Poll::Ready(Some(Ok(Frame::data(this.gather(first, cx))))),
                Some(Err(e)) => return Poll::Ready(ended(e)),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Err(e) => Poll::Ready(ended(e)),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }
}
