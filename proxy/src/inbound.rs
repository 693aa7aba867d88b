//! The inbound path: connections from other proxies (mTLS, or plaintext where the mesh mode
//! allows it), each request checked against the service's access policy by the caller's
//! verified identity, then forwarded to the local application over the protocol its Service
//! declares.

use crate::access::{Caller, Decision};
use crate::client::{Clients, Replay};
use crate::errors::ProxyError;
use crate::server::Peer;
use crate::transport::{Stream, TLS_HANDSHAKE};
use crate::{Body, Shared};
use http::{Request, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use trellis_model::telemetry::Direction;

/// A connection must start its handshake, and finish it, within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub type InboundStream = Stream<tokio_rustls::server::TlsStream<TcpStream>>;

/// Tells TLS from plaintext by the first byte, and shakes hands with a TLS caller: only a
/// certificate from the mesh's trust anchor gets through. Plaintext is let in here and
/// refused (or not) per request, so a plaintext caller in strict mode reads why.
pub async fn accept(shared: Arc<Shared>, stream: TcpStream) -> Option<(InboundStream, Peer)> {
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await.ok()?.ok()?;
    let m = &shared.metrics;
    if n == 0 || first[0] != TLS_HANDSHAKE {
        m.inc("trellis_proxy_inbound_connections_total", &[("transport", "plaintext")]);
        return Some((Stream::Plain(stream), Peer::Plaintext));
    }
    let Some(tls) = shared.tls.load_full() else {
        m.inc("trellis_proxy_inbound_tls_failures_total", &[("reason", "no-certificate")]);
        tracing::debug!("a TLS caller arrived before this proxy has a certificate");
        return None;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => {
            let identity = crate::tls::peer_identity(s.get_ref().1.peer_certificates());
            let service = identity.as_deref().and_then(|id| trellis_model::config::identity_service(id, &tls.domain));
            m.inc("trellis_proxy_inbound_connections_total", &[("transport", "mtls")]);
            Some((Stream::Tls(Box::new(s)), Peer::Mtls(service.map(Arc::from))))
        }
        Ok(Err(e)) => {
            m.inc("trellis_proxy_inbound_tls_failures_total", &[("reason", "handshake")]);
            tracing::info!(error = %e, "mTLS handshake refused");
            None
        }
        Err(_) => {
            m.inc("trellis_proxy_inbound_tls_failures_total", &[("reason", "timeout")]);
            None
        }
    }
}

pub struct Inbound {
    shared: Arc<Shared>,
    clients: Clients,
    app: String,
}

impl Inbound {
    pub fn new(shared: Arc<Shared>) -> Self {
        let app = shared.settings.app_addr.to_string();
        Inbound { shared, clients: Clients::new(None), app }
    }

    pub async fn handle(self: Arc<Self>, mut req: Request<crate::client::ReqBody>, peer: Peer) -> Response<Body> {
        let arrival = crate::Arrival::new(&self.shared, Direction::Inbound, &mut req);
        let s = &self.shared.settings;
        let Ok(_permit) = self.shared.limit.clone().try_acquire_owned() else {
            self.shared.metrics.inc("trellis_proxy_shed_total", &[("direction", "inbound")]);
            return ProxyError::Overloaded.into_response();
        };
        let protocol = self.shared.config.load().services.get(&s.service).map(|svc| svc.protocol).unwrap_or_default();
        let result = async {
            self.admit(&req, &peer)?;
            if crate::upgrade::is_upgrade(&req) {
                return Box::pin(crate::upgrade::forward(self.clients.http1(), req, &self.app)).await;
            }
            let (parts, body) = req.into_parts();
            let body = Replay::read(body, &parts.headers).await?;
            self.clients
                .send(protocol, &parts, body, &self.app, 0)
                .await
                .map_err(|source| ProxyError::Upstream { addr: self.app.clone(), source })
        }
        .await;
        // The route is the caller's decision; the inbound side only sees its own service.
        self.shared.complete(arrival, &s.service, &s.version, "", result)
    }

    /// The mesh mode and the service's access policy, applied to this caller.
    fn admit<B>(&self, req: &Request<B>, peer: &Peer) -> Result<(), ProxyError> {
        let config = self.shared.config.load();
        let Some(service) = config.services.get(&self.shared.settings.service) else { return Ok(()) };
        let caller = match peer {
            Peer::Plaintext => Caller::Plaintext,
            Peer::Mtls(service) => service.as_deref().map_or(Caller::Unknown, Caller::Verified),
        };
        let enforcing = self.shared.settings.has_identity();
        let path = req.uri().path();
        match crate::access::decide(&config.mesh, &service.access, enforcing, &caller, req.method().as_str(), path) {
            Decision::Allow => Ok(()),
            Decision::Deny { by, why } => {
                self.shared.metrics.denied(caller.label(), &by);
                Err(ProxyError::AccessDenied { by, why })
            }
        }
    }
}
