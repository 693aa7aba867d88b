//! mTLS between proxies: TLS 1.3 only, both sides present their certificate from the control
//! plane's CA, ALPN offers h2 and http/1.1. The configs are rebuilt from each new certificate;
//! connections already open keep the one they shook hands with, so a rotation drops nothing.
//!
//! A caller checks it reached the service it meant by the DNS name each certificate carries
//! beside its SPIFFE ID (`<service>.svc.<domain>`); a server learns its caller from the
//! SPIFFE ID in the client certificate, once webpki verified the chain to the trust anchor.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::sync::Arc;

/// Everything TLS needs, built from one certificate.
pub struct Tls {
    pub server: Arc<rustls::ServerConfig>,
    client_h1: Arc<rustls::ClientConfig>,
    client_h2: Arc<rustls::ClientConfig>,
    /// The trust domain its identity is in, which callers' identities must share.
    pub domain: String,
}

impl Tls {
    pub fn new(cert: &Certified) -> Result<Tls, String> {
        let chain = CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("certificate chain: {e}"))?;
        let key = || PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).map_err(|e| format!("private key: {e}"));
        let mut roots = rustls::RootCertStore::empty();
        for anchor in CertificateDer::pem_slice_iter(cert.anchor_pem.as_bytes()) {
            roots.add(anchor.map_err(|e| format!("trust anchor: {e}"))?).map_err(|e| format!("trust anchor: {e}"))?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls13 = &[&rustls::version::TLS13];

        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(tls13)
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key()?)
            .map_err(|e| format!("server certificate: {e}"))?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let client = |alpn: &[u8]| -> Result<Arc<rustls::ClientConfig>, String> {
            let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(tls13)
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots.clone())
                .with_client_auth_cert(chain.clone(), key()?)
                .map_err(|e| format!("client certificate: {e}"))?;
            c.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(c))
        };
        let (domain, _) = trellis_model::config::parse_identity(&cert.identity)
            .ok_or_else(|| format!("{} is not a mesh identity", cert.identity))?;
        Ok(Tls {
            server: Arc::new(server),
            client_h1: client(b"http/1.1")?,
            client_h2: client(b"h2")?,
            domain: domain.to_string(),
        })
    }

    /// The client config offering h2 (true) or http/1.1 only.
    pub fn client(&self, h2: bool) -> Arc<rustls::ClientConfig> {
        if h2 { self.client_h2.clone() } else { self.client_h1.clone() }
    }
}

/// The name to verify on the server a caller expects to be `identity`.
pub fn server_name(identity: &str) -> Option<ServerName<'static>> {
    let dns = trellis_model::config::identity_dns_name(identity)?;
    ServerName::try_from(dns).ok()
}

/// The SPIFFE ID a verified peer certificate names.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(certs?.first()?).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(uri.to_string()),
        _ => None,
    })
}

/// Makes `cert` the proxy's identity: its mTLS configs, and its expiry in the metrics.
pub fn install(shared: &crate::Shared, cert: Certified) -> Result<(), String> {
    shared.metrics.set_identity_expiry(cert.not_after_ms / 1000);
    let tls = Tls::new(&cert);
    shared.identity.store(Some(Arc::new(cert)));
    shared.tls.store(Some(Arc::new(tls?)));
    Ok(())
}

/// What the control plane issued, and the key it belongs to.
#[derive(Clone)]
pub struct Certified {
    pub identity: String,
    pub chain_pem: String,
    pub anchor_pem: String,
    pub not_after_ms: i64,
    /// The control plane's mTLS port for certified proxies.
    pub fleet_port: Option<u16>,
    pub key_pem: String,
}

impl Certified {
    /// The control plane's answer, with the key the request was made from.
    pub fn new(issued: trellis_model::fleet::Issued, key_pem: String) -> Self {
        let trellis_model::fleet::Issued { identity, chain_pem, anchor_pem, not_after_ms, fleet_port } = issued;
        Certified { identity, chain_pem, anchor_pem, not_after_ms, fleet_port, key_pem }
    }
}

/// Reads a certificate an operator issued (`trellis issue-cert SERVICE --out DIR`).
pub fn load(dir: &std::path::Path) -> Result<Certified, String> {
    let read =
        |name: &str| std::fs::read_to_string(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
    let chain_pem = read("cert.pem")?;
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let leaf = CertificateDer::from_pem_slice(chain_pem.as_bytes())
        .map_err(|e| format!("{}: {e}", dir.join("cert.pem").display()))?;
    let certs = [leaf];
    let identity = peer_identity(Some(&certs[..])).ok_or("cert.pem names no spiffe:// identity")?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&certs[0]).map_err(|e| e.to_string())?;
    let not_after_ms = leaf.validity().not_after.timestamp() * 1000;
    Ok(Certified {
        identity,
        chain_pem,
        anchor_pem: read("anchor.pem")?,
        not_after_ms,
        fleet_port: None,
        key_pem: read("key.pem")?,
    })
}
