//! Pooled upstream clients: HTTP/1.1 (the proxy's own for bodies in hand, see `h1`; hyper's
//! for streamed bodies and upgrades), and HTTP/2 with prior knowledge for services declared
//! `http2` or `grpc` (trailers and streams in both directions need it end to end; the proxy's
//! own, pooled in `h2`). Connections to an endpoint whose proxy has an identity are mTLS once
//! this proxy has one too. Request bodies are buffered here when small ([`Replay`]), and
//! [`UpstreamError`] says why an upstream gave no response.

mod h2;
pub mod link;
pub mod targets;
mod tee;

use crate::errors::UpstreamError;
use crate::transport::Connector;
use crate::{MAX_REPLAY_BODY, ReqBody, Shared};
use bytes::Bytes;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use trellis_model::config::Protocol;

pub type HttpClient = Client<Connector, ReqBody>;

/// The upstream clients; cheap to clone (one shared set), as every request's stack does.
#[derive(Clone)]
pub struct Clients(Arc<Pools>);

struct Pools {
    http1: HttpClient,
    http2: h2::Pool,
    /// HTTP/1.1 for requests whose body is in hand: most of them.
    fast: crate::transport::h1::Pool,
}

impl Clients {
    /// Clients to the mesh (`Some`: endpoints looked up in its config, mTLS when they have an
    /// identity) or to the local application (`None`: plaintext over loopback).
    pub fn new(mesh: Option<Arc<Shared>>) -> Self {
        let mut http = HttpConnector::new();
        // Every hop on the data path wants Nagle off; a dead endpoint must fail fast.
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(1)));
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            // A burst must not leave a thousand idle upstream connections behind: keep as many
            // as nginx's `keepalive 128` would.
            b.pool_idle_timeout(Duration::from_secs(30)).pool_max_idle_per_host(128);
            b
        };
        let connector = |h2| Connector::new(http.clone(), mesh.clone(), h2, None);
        Clients(Arc::new(Pools {
            http1: builder().build(connector(false)),
            http2: h2::Pool::new(connector(true)),
            fast: crate::transport::h1::Pool::new(connector(false)),
        }))
    }

    /// Sends a request to the endpoint at `addr` over `protocol`; `max_requests` is the
    /// service's `maxRequestsPerConnection` (0: no limit).
    pub async fn send(
        &self,
        protocol: Protocol,
        parts: &http::request::Parts,
        body: Replay,
        addr: &str,
        max_requests: u32,
    ) -> Result<http::Response<crate::Body>, UpstreamError> {
        use h2::Outgoing;
        let (body, client_failed) = match (protocol, body) {
            (Protocol::Http, Replay::Buffered(bytes)) => {
                return self.0.fast.send(parts, bytes, addr, max_requests).await;
            }
            (Protocol::Http2 | Protocol::Grpc, body) => {
                let body = match body {
                    Replay::Buffered(bytes) => Outgoing::Full(bytes),
                    body => Outgoing::Streamed(body.into_body()),
                };
                return self.0.http2.send(parts, body, addr, max_requests).await;
            }
            (_, body @ Replay::Buffered(_)) => (body.into_body(), None),
            (_, body) => {
                let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let body = body.into_body();
                let body = http_body_util::BodyExt::boxed_unsync(Watched { inner: body, failed: failed.clone() });
                (body, Some(failed))
            }
        };
        let mut req = http::Request::from_parts(parts.clone(), body);
        crate::transport::set_target(&mut req, addr).map_err(|e| UpstreamError::other(e.into()))?;
        *req.version_mut() = http::Version::HTTP_11;
        let captured = (max_requests > 0).then(|| hyper_util::client::legacy::connect::capture_connection(&mut req));
        // Boxed: hyper's future is large, and inline it would be copied with every request's.
        let sent = Box::pin(self.0.http1.request(req)).await;
        let resp = match sent {
            Ok(resp) => resp,
            // The client's body broke, not the upstream: the client's error, not the endpoint's.
            Err(e) if client_failed.is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed)) => {
                return Err(UpstreamError::client_body(e.into()));
            }
            Err(e) => return Err(e.into()),
        };
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(UpstreamError::other("101 Switching Protocols to a request that asked for no upgrade".into()));
        }
        if let Some(captured) = &captured {
            retire_if_spent(captured, &resp, max_requests);
        }
        Ok(downstream(resp))
    }

    pub fn http1(&self) -> &HttpClient {
        &self.0.http1
    }
}

/// `maxRequestsPerConnection` on hyper's pool: the connection that carried its last allowed
/// response is not reused (it closes once the response is read).
fn retire_if_spent(
    captured: &hyper_util::client::legacy::connect::CaptureConnection,
    resp: &http::Response<hyper::body::Incoming>,
    limit: u32,
) {
    let Some(served) = resp.extensions().get::<crate::transport::Served>() else { return };
    if served.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 >= limit
        && let Some(connection) = captured.connection_metadata().as_ref()
    {
        connection.poison();
    }
}

/// A request body: buffered (and so replayable) when small with a known length; teed (sent as
/// it comes, and replayable while the copy holds it) when its length is unknown and it may be
/// retried; otherwise streamed once.
pub enum Replay {
    Buffered(Bytes),
    Teed(tee::Tee),
    Streaming(ReqBody),
}

impl Replay {
    /// Buffers bodies with a known length up to [`MAX_REPLAY_BODY`] (and empty ones); tees
    /// those of unknown length when the request may be `retried`; streams the rest, which are
    /// then never retried.
    pub async fn read(
        body: ReqBody,
        headers: &http::HeaderMap,
        retried: bool,
    ) -> Result<Self, crate::errors::ProxyError> {
        use crate::errors::ProxyError;
        use http_body_util::{BodyExt, LengthLimitError, Limited};
        use hyper::body::Body as _;
        if body.is_end_stream() {
            return Ok(Replay::Buffered(Bytes::new()));
        }
        let length = headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        match length {
            Some(n) if n <= MAX_REPLAY_BODY => {
                let collected = Limited::new(body, MAX_REPLAY_BODY).collect().await;
                let bytes = collected.map_err(|e| match e.downcast::<LengthLimitError>() {
                    Ok(_) => ProxyError::BodyTooLarge(MAX_REPLAY_BODY),
                    Err(e) => ProxyError::BadRequestBody(e.to_string()),
                })?;
                Ok(Replay::Buffered(bytes.to_bytes()))
            }
            None if retried => Ok(Replay::Teed(tee::Tee::new(body))),
            _ => Ok(Replay::Streaming(body)),
        }
    }

    /// This body to send once more, when it can be: a buffered copy is cheap; a teed one can
    /// be while its copy holds all that was read (see [`Replay::still`]).
    #[inline]
    pub fn again(&self) -> Option<Replay> {
        match self {
            Replay::Buffered(b) => Some(Replay::Buffered(b.clone())),
            Replay::Teed(t) => t.replay().map(Replay::Teed),
            Replay::Streaming(_) => None,
        }
    }

    /// A copy made by [`Replay::again`] before an attempt, if it can still be sent once the
    /// attempt is over: a teed body's copy may have overflowed meanwhile.
    #[inline]
    pub fn still(self) -> Option<Replay> {
        match self {
            Replay::Teed(t) if t.spoiled() => None,
            other => Some(other),
        }
    }

    fn into_body(self) -> ReqBody {
        use http_body_util::BodyExt;
        match self {
            Replay::Buffered(b) => http_body_util::Full::new(b).map_err(|never| match never {}).boxed_unsync(),
            Replay::Teed(t) => t.boxed_unsync(),
            Replay::Streaming(b) => b,
        }
    }
}

pin_project_lite::pin_project! {
    /// A client's streamed request body that remembers whether it failed: a request to an
    /// upstream that failed because of it is the client's error, not the upstream's.
    struct Watched {
        #[pin]
        inner: ReqBody,
        failed: Arc<std::sync::atomic::AtomicBool>,
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = crate::errors::BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, crate::errors::BodyError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.failed.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Requests to the control plane: to `TRELLIS_CONTROL_PLANE_URL` (plaintext, or HTTPS checked
/// against the system's roots and `TRELLIS_CONTROL_PLANE_CA`) while the proxy has no identity,
/// then mTLS to the fleet port it learned with its certificate, checking the server is the
/// control plane of its trust domain. One per proxy, shared: the config stream is a connection
/// of its own (HTTP/1.1, upgraded to carry ACKs and reports too); what is POSTed (renewals,
/// and ACKs and reports to a control plane without the upgrade) goes over one HTTP/2
/// connection.
#[derive(Clone)]
pub struct ControlPlane {
    shared: Arc<Shared>,
    plain: Client<hyper_rustls::HttpsConnector<HttpConnector>, http_body_util::Full<Bytes>>,
    mtls: Client<Connector, http_body_util::Full<Bytes>>,
    /// Connectors for the stream's own connection (ALPN http/1.1, which can be upgraded).
    plain_h1: hyper_rustls::HttpsConnector<HttpConnector>,
    mtls_h1: Connector,
    /// The replicas, and the one followed now: every request goes to it.
    pub targets: Arc<targets::Targets>,
    /// The duplex stream, while one is open.
    pub link: Arc<link::Link>,
}

/// What the control plane calls itself in its trust domain.
const CONTROL_PLANE: &str = "trellis";

impl ControlPlane {
    /// Fails when `TRELLIS_CONTROL_PLANE_CA` names no readable PEM certificate.
    pub fn new(shared: Arc<Shared>) -> Result<Self, String> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        // Pings on the one long-lived connection: one that stops answering is closed and the
        // next request dials again, rather than waiting on it for ever.
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.http2_only(true)
                .timer(hyper_util::rt::TokioTimer::new())
                .http2_keep_alive_interval(Duration::from_secs(10))
                .http2_keep_alive_timeout(Duration::from_secs(5))
                .http2_keep_alive_while_idle(true);
            b
        };
        let mut either = http.clone();
        either.enforce_http(false);
        let tls =
            trellis_host::client_tls(shared.settings.control_plane_ca.as_deref(), crate::env::ENV_CONTROL_PLANE_CA)?;
        let https = || hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls.clone()).https_or_http();
        let plain_h1 = https().enable_http1().wrap_connector(either.clone());
        let plain = builder().build(https().enable_http2().wrap_connector(either));
        let mtls_h1 = Connector::new(http.clone(), Some(shared.clone()), false, Some(CONTROL_PLANE));
        let connector = Connector::new(http, Some(shared.clone()), true, Some(CONTROL_PLANE));
        let targets = Arc::new(targets::Targets::new(&shared.settings.control_planes));
        let link = Arc::default();
        Ok(ControlPlane { mtls: builder().build(connector), plain, plain_h1, mtls_h1, shared, targets, link })
    }

    /// Opens the config stream with `registration`, upgraded when the control plane offers it.
    pub async fn open_stream(&self, registration: Vec<u8>) -> Result<link::Opened, String> {
        let (base, mtls) = self.base()?;
        let mut req = self.request(&base, trellis_model::fleet::STREAM, registration)?;
        let uri = req.uri().clone();
        // A connection of our own carries no Host of a pool's making.
        if let Some(host) = uri.authority().and_then(|a| http::HeaderValue::from_str(a.as_str()).ok()) {
            req.headers_mut().insert(http::header::HOST, host);
        }
        let opening = async {
            use link::open;
            if mtls {
                open(connect(self.mtls_h1.clone(), uri).await?, req).await
            } else {
                open(connect(self.plain_h1.clone(), uri).await?, req).await
            }
        };
        // The answer's head must come within this; the stream has its own idle timeout.
        tokio::time::timeout(Duration::from_secs(10), opening)
            .await
            .map_err(|_| format!("no answer from {base} within 10 s"))?
    }

    /// POSTs JSON to `path` over whichever way the proxy may take now.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<http::Response<hyper::body::Incoming>, String> {
        match self.base()? {
            (base, true) => self.send(&self.mtls, &base, path, body).await,
            (base, false) => self.send(&self.plain, &base, path, body).await,
        }
    }

    /// Where requests go now, and whether over mTLS: the followed replica's fleet port once the
    /// proxy has its certificate (scheme http: TLS is the connector's business, not the
    /// URI's), else its URL.
    fn base(&self) -> Result<(String, bool), String> {
        let target = self.targets.current().ok_or("no control plane is configured (TRELLIS_CONTROL_PLANE_URL)")?;
        let port = self.shared.identity.load().as_ref().and_then(|c| c.fleet_port);
        Ok(match port.filter(|_| self.shared.tls.load().is_some()) {
            Some(port) => (target.with_port(port), true),
            None => (target.base, false),
        })
    }

    /// POSTs JSON to `path` in plaintext, as a certificate request must go: the join token is
    /// the proof, and an expired certificate could not open the mTLS port.
    pub async fn post_plain(&self, path: &str, body: Vec<u8>) -> Result<http::Response<hyper::body::Incoming>, String> {
        let target = self.targets.current().ok_or("no control plane is configured (TRELLIS_CONTROL_PLANE_URL)")?;
        self.send(&self.plain, &target.base, path, body).await
    }

    /// A JSON `POST` of `body` to `path` at `base`, naming the proxy.
    fn request(
        &self,
        base: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<http::Request<http_body_util::Full<Bytes>>, String> {
        let mut req = http::Request::post(format!("{base}{path}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(Bytes::from(body)))
            .map_err(|e| format!("{base}{path}: {e}"))?;
        // Who asks, readable without the body: a control plane too busy to read a report
        // still counts it as the proxy's heartbeat.
        if let Ok(id) = http::HeaderValue::from_str(&self.shared.settings.proxy_id) {
            req.headers_mut().insert(trellis_model::fleet::PROXY_ID_HEADER, id);
        }
        Ok(req)
    }

    async fn send<C>(
        &self,
        client: &Client<C, http_body_util::Full<Bytes>>,
        base: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<http::Response<hyper::body::Incoming>, String>
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
        let req = self.request(base, path, body)?;
        // The answer's head must come within this; a stream's body has its own idle timeout.
        let sent = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| format!("no answer from {base}{path} within 10 s"))?;
        // The legacy client's error hides its cause in `source`; say it.
        sent.map_err(|e| trellis_host::with_causes(&e))
    }
}

/// A connection of its own to `uri`.
async fn connect<C>(mut connector: C, uri: http::Uri) -> Result<C::Response, String>
where
    C: tower_service::Service<http::Uri>,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let error = |e: C::Error| {
        let e: Box<dyn std::error::Error + Send + Sync> = e.into();
        trellis_host::with_causes(&*e)
    };
    std::future::poll_fn(|cx| connector.poll_ready(cx)).await.map_err(error)?;
    connector.call(uri).await.map_err(error)
}

/// An upstream response, ready for our listener: the upstream's HTTP version (1.0, or 2 between
/// proxies) says nothing about the connection our client opened, so the server picks its own.
pub fn downstream(mut resp: http::Response<hyper::body::Incoming>) -> http::Response<crate::Body> {
    *resp.version_mut() = http::Version::default();
    crate::transport::h1::strip_nominated(resp.headers_mut());
    use http_body_util::BodyExt;
    resp.map(|b| b.map_err(Into::into).boxed_unsync())
}
