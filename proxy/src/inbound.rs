//! The inbound listener's connections: from other proxies, mTLS, or plaintext where the mesh
//! mode allows it. What each request may do is the access layer's decision (`stack::access`);
//! a `protocol: tcp` service's connections go to [`crate::tcp`] whole.

use crate::Shared;
use crate::transport::Peer;
use crate::transport::{Stream, TLS_HANDSHAKE};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// A connection must start its handshake, and finish it, within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub type InboundStream = Stream<tokio_rustls::server::TlsStream<TcpStream>>;

/// Tells TLS from plaintext by the first byte, and shakes hands with a TLS caller: only a
/// certificate from the mesh's trust anchor gets through. Plaintext is let in here and
/// refused (or not) per request, so a plaintext caller in strict mode reads why.
pub async fn accept(shared: Arc<Shared>, stream: TcpStream) -> Option<(InboundStream, Peer)> {
    let (stream, peer) = handshake(&shared, stream).await?;
    if crate::tcp::is_own_service_tcp(&shared) {
        crate::tcp::inbound(shared.clone(), stream, caller(&peer)).await;
        return None;
    }
    Some((stream, peer))
}

/// Who is calling, as the connection proved it.
pub fn caller(peer: &Peer) -> crate::decide::access::Caller<'_> {
    use crate::decide::access::Caller;
    match peer {
        Peer::Mtls(service) => service.as_deref().map_or(Caller::Unknown, Caller::Verified),
        Peer::Plaintext => Caller::Plaintext,
    }
}

async fn handshake(shared: &Arc<Shared>, stream: TcpStream) -> Option<(InboundStream, Peer)> {
    // A server-speaks-first protocol (MySQL, SMTP) sends nothing to peek at: with mTLS off
    // there is nothing to tell apart, and its connection goes straight on.
    if shared.config.load().mesh.mtls == trellis_model::config::MtlsMode::Disabled
        && crate::tcp::is_own_service_tcp(shared)
    {
        return Some((Stream::Plain(stream), Peer::Plaintext));
    }
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
            let identity = crate::transport::tls::peer_identity(s.get_ref().1.peer_certificates());
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
