//! The fleet's mTLS listener. A proxy, once certified, talks to the control plane here
//! (`https::serve`, admitting with [`admit`]); each request carries the service its client
//! certificate names ([`FleetPeer`]), so a proxy can register, acknowledge and report only as
//! its own service. The control plane's own certificate (`trellis.svc.<domain>`) is issued by
//! its CA and renewed before it expires.

use crate::identity::Ca;
use crate::sync::Locked;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, Mutex};

/// The service a connected proxy's certificate names, with the certificate's identity and
/// expiry (so a replica that did not issue it still tells callers to speak mTLS to it).
#[derive(Clone, Debug)]
pub struct FleetPeer(pub String, pub Certificate);

#[derive(Clone, Debug)]
pub struct Certificate {
    pub identity: String,
    /// Unix ms.
    pub not_after: i64,
}

/// The control plane's name in its own trust domain.
pub const CONTROL_PLANE: &str = "trellis";

/// TLS 1.3, client certificates from the trust anchor required.
pub fn server_config(ca: Arc<Ca>) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let anchor = CertificateDer::from_pem_slice(ca.anchor_pem.as_bytes()).map_err(|e| e.to_string())?;
    roots.add(anchor).map_err(|e| e.to_string())?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let own = OwnCert { ca, names: None, provider: provider.clone(), current: Mutex::new(None) };
    own.renewed().ok_or("cannot issue the control plane's certificate")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(own));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS 1.3 without client certificates, for clients outside the mesh that reach the
/// control plane by `dns_names` and trust its anchor (the Kubernetes API server calling the
/// sidecar injector); the certificate is issued by the CA and renewed like the fleet's.
pub fn named_server_config(ca: Arc<Ca>, dns_names: Vec<String>) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let own = OwnCert { ca, names: Some(dns_names), provider: provider.clone(), current: Mutex::new(None) };
    own.renewed().ok_or("cannot issue the admission listener's certificate")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(own));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The app a proxy's mTLS connection is served, carrying the service its certificate names;
/// `None` (the connection is closed) when it names no service of `domain`.
pub fn admit(
    tls: &crate::https::Tls<tokio::net::TcpStream>,
    peer: std::net::SocketAddr,
    domain: &str,
    app: &axum::Router,
) -> Option<(axum::Router, http::Extensions)> {
    let leaf = tls.peer_certificates().and_then(|c| c.first());
    let identity = leaf.and_then(|c| crate::identity::spiffe_of(c));
    let not_after = leaf.map_or(0, |c| crate::identity::der_not_after_ms(c));
    let Some(service) = identity.as_deref().and_then(|id| trellis_model::config::identity_service(id, domain)) else {
        tracing::info!(%peer, ?identity, "fleet peer names no service of this trust domain");
        return None;
    };
    let cert = Certificate { identity: identity.clone().unwrap_or_default(), not_after };
    // Given to each request, not layered onto a router of its own: layering rebuilds every
    // route, some kilobytes per connection, and a control plane holds thousands.
    let mut extensions = http::Extensions::new();
    extensions.insert(FleetPeer(service.to_string(), cert));
    Some((app.clone(), extensions))
}

/// The control plane's certificate, issued again once a third of its lifetime is left: its
/// identity in the mesh, or a server certificate for DNS names.
struct OwnCert {
    ca: Arc<Ca>,
    names: Option<Vec<String>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<Option<(Arc<CertifiedKey>, i64, i64)>>,
}

impl OwnCert {
    fn renewed(&self) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.locked();
        let now = crate::now_ms();
        if let Some((key, issued, expires)) = &*current
            && now < expires - (expires - issued) / 3
        {
            return Some(key.clone());
        }
        match self.issue() {
            Ok((key, expires)) => {
                *current = Some((key.clone(), now, expires));
                Some(key)
            }
            Err(e) => {
                tracing::error!(error = %e, names = ?self.names, "cannot renew the control plane's certificate");
                current.as_ref().map(|(k, ..)| k.clone())
            }
        }
    }

    fn issue(&self) -> Result<(Arc<CertifiedKey>, i64), String> {
        let issued = match &self.names {
            None => self.ca.issue(CONTROL_PLANE),
            Some(names) => self.ca.issue_server(names),
        };
        let (issued, key_pem) = issued.map_err(|e| e.to_string())?;
        let chain = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
        let signing = self.provider.key_provider.load_private_key(der).map_err(|e| e.to_string())?;
        Ok((Arc::new(CertifiedKey::new(chain, signing)), issued.not_after_ms))
    }
}

impl std::fmt::Debug for OwnCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnCert")
    }
}

impl rustls::server::ResolvesServerCert for OwnCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.renewed()
    }
}
