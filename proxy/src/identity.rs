//! The proxy's identity: the certificate the control plane issued (its renewal is
//! `control::certify`'s) or one an operator placed in files, and the key made for it, which
//! never leaves the process. Each new certificate becomes new mTLS configs ([`crate::tls`]);
//! connections already open keep theirs.

use crate::Shared;
use std::sync::Arc;

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

/// Makes `cert` the proxy's identity: its mTLS configs, and its expiry in the metrics.
pub fn install(shared: &Shared, cert: Certified) -> Result<(), String> {
    shared.metrics.set_identity_expiry(cert.not_after_ms / 1000);
    let tls = crate::tls::Tls::new(&cert);
    shared.identity.store(Some(Arc::new(cert)));
    shared.tls.store(Some(Arc::new(tls?)));
    Ok(())
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
    let identity = crate::tls::peer_identity(Some(&certs[..])).ok_or("cert.pem names no spiffe:// identity")?;
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
