//! HTTP/2 to upstreams (services declared `http2` or `grpc`): one multiplexed connection per
//! endpoint address, on the proxy's own client ([`crate::http2::client`]).

use crate::errors::{BoxError, UpstreamError};
use crate::http2::client::{Broken, Handle, Request, Sending};
use crate::sync::Locked;
use crate::transport::Connector;
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use http::Response;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

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
    handle: Handle,
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
    ///
    /// A request the upstream did not process (its connection closed as it was picked, it
    /// refused the stream, or it went away with GOAWAY before the stream) goes once more, on a
    /// new connection if need be, when its body is in hand.
    pub async fn send(
        &self,
        parts: &http::request::Parts,
        body: Outgoing,
        addr: &str,
        max_requests: u32,
    ) -> Result<Response<crate::Body>, UpstreamError> {
        let replay = match &body {
            Outgoing::Full(bytes) => Some(bytes.clone()),
            Outgoing::Streamed(_) => None,
        };
        let mut req = request(parts, addr, body);
        let mut again = true;
        loop {
            let conn = self.conn(addr).await?;
            let sent = match conn.handle.send(req) {
                Ok(responding) => responding.await,
                Err(back) => {
                    self.0.forget(addr, conn.id);
                    req = back;
                    if std::mem::take(&mut again) {
                        continue;
                    }
                    return Err(UpstreamError::other(
                        "the upstream's connections closed before the request was sent".into(),
                    ));
                }
            };
            let broken = match sent {
                Ok(resp) => {
                    if max_requests > 0 && conn.served.fetch_add(1, Ordering::Relaxed) + 1 >= max_requests {
                        self.0.forget(addr, conn.id);
                    }
                    return Ok(resp);
                }
                Err(broken) => broken,
            };
            match (broken, &replay) {
                (Broken::Refused, Some(bytes)) if std::mem::take(&mut again) => {
                    req = request(parts, addr, Outgoing::Full(bytes.clone()));
                }
                (Broken::Body, _) => return Err(UpstreamError::client_body(broken.why().into())),
                _ => return Err(UpstreamError::other(broken.why().into())),
            }
        }
    }

    /// The address's connection, dialled if there is none or it takes no more requests.
    async fn conn(&self, addr: &str) -> Result<Conn, UpstreamError> {
        let (id, connecting) = {
            let mut conns = self.0.conns.locked();
            let closed = matches!(conns.get(addr), Some(Entry::Ready(conn)) if conn.handle.is_closed());
            if closed {
                conns.remove(addr);
            }
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
                    let connecting = dial(self.0.connector.clone(), addr.into(), id);
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

/// TCP (and mTLS); the HTTP/2 connection is then driven by a task of its own, which ends once
/// the pool and every request let go of it.
async fn dial(mut connector: Connector, addr: Box<str>, id: u64) -> Result<Conn, Arc<str>> {
    use tower_service::Service;
    let uri = http::Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(&*addr)
        .path_and_query("/")
        .build()
        .map_err(|e| Arc::<str>::from(e.to_string()))?;
    let io = connector.call(uri).await.map_err(|e| Arc::<str>::from(e.to_string()))?.into_inner();
    let handle = Handle::start(io, addr);
    Ok(Conn { id, handle, served: Arc::default(), used: Arc::new(AtomicBool::new(true)) })
}

/// Lets go of connections no request picked for [`IDLE_TIMEOUT`]: those to endpoints that
/// left, or that are no longer called. One still carrying a stream closes when it ends.
async fn reap(pool: Weak<Inner>) {
    loop {
        tokio::time::sleep(IDLE_TIMEOUT).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.conns.locked().retain(|_, entry| match entry {
            Entry::Ready(conn) => conn.used.swap(false, Ordering::Relaxed) && !conn.handle.is_closed(),
            Entry::Connecting(..) => true,
        });
    }
}

/// The request for an upstream at `addr`: its head encoded, its body to send.
fn request(parts: &http::request::Parts, addr: &str, body: Outgoing) -> Request {
    let length = match &body {
        Outgoing::Full(bytes) => Some(bytes.len()),
        Outgoing::Streamed(_) => None,
    };
    let mut head = Vec::with_capacity(256);
    crate::http2::client::encode(parts, addr, length, &mut head);
    let body = match body {
        Outgoing::Full(bytes) if bytes.is_empty() => Sending::Done,
        Outgoing::Full(bytes) => {
            let rest = http_body_util::Empty::new().map_err(|never| match never {}).boxed_unsync();
            Sending::Body(rest, Some(bytes))
        }
        Outgoing::Streamed(body) if http_body::Body::is_end_stream(&body) => Sending::Done,
        Outgoing::Streamed(body) => Sending::Body(body.map_err(BoxError::from).boxed_unsync(), None),
    };
    Request { head, body, head_only: parts.method == http::Method::HEAD }
}

#[cfg(test)]
mod tests;
