//! A connection that is plaintext or TLS, decided when it opens: the inbound listener takes
//! both (in permissive mode, or to answer plaintext with a clear refusal), and the outbound
//! client speaks mTLS only to endpoints with an identity.

pub mod h1;
pub mod tls;

use crate::Shared;
use crate::batch::Wire;
use crate::errors::BoxError;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub enum Stream<T> {
    Plain(TcpStream),
    /// Boxed: a TLS session is large, and most plaintext connections should not pay for it.
    Tls(Box<T>),
}

impl<T: Wire> Wire for Stream<T> {
    fn wire(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<RawFd> {
        match self {
            Stream::Plain(tcp) => tcp.wire(plain, out),
            Stream::Tls(tls) => tls.wire(plain, out),
        }
    }
}

/// A TLS session sealed here rather than by the stream's own writes: the records go out in
/// the same order, since every record the session holds (a session ticket, a key update, what
/// an earlier write left) is taken before the new one.
macro_rules! seal_tls {
    ($($tls:ty),*) => {$(
        impl Wire for $tls {
            fn wire(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<RawFd> {
                use std::io::Write;
                let (tcp, session) = self.get_mut();
                let mut rest = plain;
                loop {
                    while session.wants_write() {
                        session.write_tls(out)?;
                    }
                    if rest.is_empty() {
                        return Ok(tcp.as_raw_fd());
                    }
                    match session.writer().write(rest)? {
                        0 => return Err(io::ErrorKind::WriteZero.into()),
                        n => rest = &rest[n..],
                    }
                }
            }
        }
    )*};
}

seal_tls!(tokio_rustls::server::TlsStream<TcpStream>, tokio_rustls::client::TlsStream<TcpStream>);

/// A TLS record starts with its content type; 22 is a handshake (the ClientHello).
pub const TLS_HANDSHAKE: u8 = 0x16;

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

impl hyper_util::client::legacy::connect::Connection for Stream<tokio_rustls::client::TlsStream<TcpStream>> {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        let tcp = match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        };
        tcp.connected()
    }
}

/// A connection that holds a slot of its service's `maxConnections` for as long as it lives,
/// and counts the responses it carried (for `maxRequestsPerConnection`).
pub struct Held<S> {
    pub io: S,
    pub _slot: Option<tokio::sync::OwnedSemaphorePermit>,
    pub served: Served,
}

/// Responses a connection carried; the client puts it in each response's extensions.
#[derive(Clone, Default)]
pub struct Served(pub std::sync::Arc<std::sync::atomic::AtomicU32>);

impl<S: Wire> Wire for Held<S> {
    fn wire(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<RawFd> {
        self.io.wire(plain, out)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

/// Writes straight through to the wrapped connection in field `io`.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}
pub(crate) use write_through;

write_through!(Held);

impl<S: hyper_util::client::legacy::connect::Connection> hyper_util::client::legacy::connect::Connection for Held<S> {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.io.connected().extra(self.served.clone())
    }
}

/// A connection to an upstream: TLS or plaintext, holding its `maxConnections` slot.
pub type Upstream = Held<Stream<tokio_rustls::client::TlsStream<TcpStream>>>;
/// The same, as hyper's client takes it.
pub type Connection = TokioIo<Upstream>;
/// How long a connection waits for a slot under its service's `maxConnections` (meanwhile a
/// connection that comes free serves the request) before the attempt fails.
const SLOT_WAIT: Duration = Duration::from_secs(10);

/// TCP, then TLS when the endpoint at that address has an identity and this proxy has a
/// certificate. An endpoint with an identity reached without one gets plaintext, which a
/// strict peer refuses with a clear answer.
#[derive(Clone)]
pub struct Connector {
    http: HttpConnector,
    mesh: Option<Arc<Shared>>,
    /// ALPN to offer: h2, or http/1.1.
    h2: bool,
    /// The service every address must prove to be, instead of the config's endpoint identities.
    fixed: Option<&'static str>,
}

impl Connector {
    /// `h2` offers ALPN h2 rather than http/1.1; `fixed` names the service every address must
    /// prove to be (the control plane), instead of the config's endpoint identities.
    pub fn new(http: HttpConnector, mesh: Option<Arc<Shared>>, h2: bool, fixed: Option<&'static str>) -> Self {
        Connector { http, mesh, h2, fixed }
    }
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = Connection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Connection, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let addr = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let (mut tls, mut slots) = (None, None);
        if let Some(shared) = &self.mesh {
            let config = shared.config.load();
            tls = shared.tls.load_full().and_then(|tls| {
                let identity = match self.fixed {
                    Some(service) => trellis_model::config::spiffe_id(&tls.domain, service),
                    None => config.identity_at(&addr)?.to_string(),
                };
                Some((tls, identity))
            });
            slots = config.service_at(&addr).and_then(|service| {
                let limit = config.services.get(service)?.traffic.limits.max_connections;
                Some((
                    service.to_string(),
                    shared.connections.get(service, limit, tokio::sync::Semaphore::new),
                    shared.clone(),
                ))
            });
        }
        let (connecting, h2) = (self.http.call(uri), self.h2);
        Box::pin(async move {
            let slot = match slots {
                None => None,
                Some((service, slots, shared)) => Some(match slots.clone().try_acquire_owned() {
                    Ok(slot) => slot,
                    Err(_) => {
                        shared.metrics.inc("trellis_proxy_connection_limit_waits_total", &[("dst_service", &service)]);
                        tokio::time::timeout(SLOT_WAIT, slots.acquire_owned())
                            .await
                            .map_err(|_| format!("{service} is at its maxConnections"))?
                            .map_err(|e| e.to_string())?
                    }
                }),
            };
            let tcp = connecting.await?.into_inner();
            let Some((tls, identity)) = tls else {
                return Ok(TokioIo::new(Held { io: Stream::Plain(tcp), _slot: slot, served: Default::default() }));
            };
            let name = crate::transport::tls::server_name(&identity)
                .ok_or_else(|| format!("{identity} is not a mesh identity"))?;
            let stream = tokio_rustls::TlsConnector::from(tls.client(h2))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("mTLS to {identity}: {e}"))?;
            Ok(TokioIo::new(Held { io: Stream::Tls(Box::new(stream)), _slot: slot, served: Default::default() }))
        })
    }
}

/// What a connection proved about its peer before HTTP started.
#[derive(Clone, Debug)]
pub enum Peer {
    Plaintext,
    /// mTLS; the mesh service its client certificate names, if it names one of this trust
    /// domain's (resolved once per connection, not per request).
    Mtls(Option<std::sync::Arc<str>>),
}

/// Puts a verified caller in the request's extensions for the access layer; plaintext, the
/// default, costs nothing.
pub fn with_peer<B>(req: &mut http::Request<B>, peer: &Peer) {
    if let Peer::Mtls(_) = peer {
        req.extensions_mut().insert(peer.clone());
    }
}

/// Points a request at an endpoint, keeping its Host, without connection-level headers.
pub fn set_target<B>(req: &mut http::Request<B>, addr: &str) -> Result<(), crate::errors::ProxyError> {
    // Built from parts: the path is already parsed, only the endpoint's address is new.
    let path = req.uri().path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let uri = http::Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(addr)
        .path_and_query(path)
        .build()
        .map_err(|_| crate::errors::ProxyError::NoAuthority)?;
    if !req.headers().contains_key(http::header::HOST)
        && let Some(a) = req.uri().authority().cloned()
        && let Ok(v) = http::HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(http::header::HOST, v);
    }
    *req.uri_mut() = uri;
    strip_hop_by_hop(req.headers_mut());
    Ok(())
}

/// Headers that describe one connection and must not cross a proxy (RFC 9110 §7.6.1), as
/// names made once (a lookup by `&str` parses the name every time).
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    use http::header::{CONNECTION, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, UPGRADE};
    const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    for name in [CONNECTION, KEEP_ALIVE, PROXY_CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, UPGRADE] {
        headers.remove(&name);
    }
}
