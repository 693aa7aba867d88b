//! The mesh's issuing CA. A trust anchor (brought as files, or generated once and kept with
//! mode 0600) signs an issuer made at each start; the issuer signs each proxy's certificate
//! from its CSR, so the control plane never sees a proxy's private key. A proxy proves which
//! service it is once, with a join token scoped to that service (an HMAC of the service under
//! a secret only the control plane holds), and receives a short-lived certificate naming it
//! `spiffe://<trust-domain>/svc/<service>`.

mod shared;

pub use shared::load_shared;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;
use time::OffsetDateTime;

/// A proxy certificate's lifetime; proxies renew at two thirds of it.
pub const CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The issuer made at each start lives this long (a restart every month renews it).
const ISSUER_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
const ANCHOR_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("the join token is not valid for service {0:?}")]
    BadToken(String),
    #[error("the CSR does not read: {0}")]
    BadCsr(String),
}

/// The SPIFFE ID a DER certificate names in its URI SAN.
pub fn spiffe_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some(uri.to_string()),
        _ => None,
    })
}

pub struct Ca {
    pub trust_domain: String,
    pub anchor_pem: String,
    pub anchor_not_after_ms: i64,
    issuer: Issuer<'static, KeyPair>,
    pub issuer_pem: String,
    pub issuer_not_after_ms: i64,
    join_secret: Vec<u8>,
    /// How long a proxy's certificate lasts ([`CERT_TTL`] unless the operator says).
    pub cert_ttl: Duration,
}

/// What a proxy receives: the fleet protocol's answer to a certificate request.
pub use trellis_model::fleet::Issued;

impl Ca {
    /// Loads `anchor.pem` / `anchor.key` from `dir` (an operator's own anchor goes there), or
    /// generates them; the join secret likewise. Key files are written 0600.
    pub fn load_or_create(dir: &Path, trust_domain: &str) -> Result<Ca, IdentityError> {
        std::fs::create_dir_all(dir)?;
        let (cert_file, key_file) = (dir.join("anchor.pem"), dir.join("anchor.key"));
        let (anchor_pem, anchor_key) = if cert_file.exists() && key_file.exists() {
            (std::fs::read_to_string(&cert_file)?, KeyPair::from_pem(&std::fs::read_to_string(&key_file)?)?)
        } else {
            let key = KeyPair::generate()?;
            let mut params = ca_params(&format!("{trust_domain} trust anchor"), ANCHOR_TTL)?;
            params.distinguished_name.push(DnType::OrganizationName, "Trellis");
            let cert = params.self_signed(&key)?;
            write_private(&key_file, &key.serialize_pem())?;
            std::fs::write(&cert_file, cert.pem())?;
            (cert.pem(), key)
        };
        let anchor_not_after_ms = not_after_ms(&anchor_pem);
        let anchor = Issuer::from_ca_cert_pem(&anchor_pem, anchor_key)?;
        let issuer_key = KeyPair::generate()?;
        let issuer_params = ca_params(&format!("{trust_domain} issuer"), ISSUER_TTL)?;
        let issuer_cert = issuer_params.signed_by(&issuer_key, &anchor)?;
        let issuer_pem = issuer_cert.pem();
        let join_file = dir.join("join.key");
        let join_secret = match std::fs::read(&join_file) {
            Ok(secret) if secret.len() >= 32 => secret,
            _ => {
                let secret = crate::auth::random_token() + &crate::auth::random_token();
                write_private(&join_file, &secret)?;
                secret.into_bytes()
            }
        };
        Ok(Ca {
            trust_domain: trust_domain.to_string(),
            anchor_pem,
            anchor_not_after_ms,
            issuer_not_after_ms: not_after_ms(&issuer_pem),
            issuer: Issuer::new(issuer_params, issuer_key),
            issuer_pem,
            join_secret,
            cert_ttl: CERT_TTL,
        })
    }

    /// A certificate for `service` with a key made here, for parts of the control plane that
    /// hold an identity themselves (its fleet listener, the demo's ingress, `issue-cert`).
    /// Returns what was issued and the key, PEM.
    pub fn issue(&self, service: &str) -> Result<(Issued, String), IdentityError> {
        let key = KeyPair::generate()?;
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?.pem()?;
        Ok((self.certify(service, &self.join_token(service), &csr)?, key.serialize_pem()))
    }

    /// A server certificate for `dns_names` with a key made here, for a listener that clients
    /// outside the mesh reach by name and verify against the trust anchor (the Kubernetes API
    /// server calling the sidecar injector). Returns what was issued and the key, PEM.
    pub fn issue_server(&self, dns_names: &[String]) -> Result<(Issued, String), IdentityError> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(dns_names.to_vec())?;
        let now = OffsetDateTime::now_utc();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, dns_names.first().map(String::as_str).unwrap_or("trellis"));
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + self.cert_ttl;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer)?;
        let issued = Issued {
            identity: dns_names.join(","),
            chain_pem: format!("{}{}", cert.pem(), self.issuer_pem),
            anchor_pem: self.anchor_pem.clone(),
            not_after_ms: (now + self.cert_ttl).unix_timestamp() * 1000,
            fleet_port: None,
        };
        Ok((issued, key.serialize_pem()))
    }

    /// Issues `service` a certificate and its key as files in `dir` (`cert.pem` leaf then
    /// issuer, `key.pem` 0600, `anchor.pem`): for a proxy run with `TRELLIS_IDENTITY_DIR`.
    pub fn issue_files(&self, service: &str, dir: &Path) -> Result<Issued, IdentityError> {
        let (issued, key_pem) = self.issue(service)?;
        std::fs::create_dir_all(dir)?;
        write_private(&dir.join("key.pem"), &key_pem)?;
        std::fs::write(dir.join("cert.pem"), &issued.chain_pem)?;
        std::fs::write(dir.join("anchor.pem"), &issued.anchor_pem)?;
        Ok(issued)
    }

    /// The token a proxy of `service` joins with (`trellis join-token SERVICE`).
    pub fn join_token(&self, service: &str) -> String {
        // HMAC-SHA256, spelled out: the secret never leaves the control plane.
        let mut key = [0u8; 64];
        let k: Vec<u8> = if self.join_secret.len() > 64 {
            Sha256::digest(&self.join_secret).to_vec()
        } else {
            self.join_secret.clone()
        };
        key[..k.len()].copy_from_slice(&k);
        let (ipad, opad): (Vec<u8>, Vec<u8>) = key.iter().map(|b| (b ^ 0x36, b ^ 0x5c)).unzip();
        let inner = Sha256::new().chain_update(&ipad).chain_update(format!("trellis-join:{service}")).finalize();
        let mac = Sha256::new().chain_update(&opad).chain_update(inner).finalize();
        hex::encode(mac)
    }

    pub fn identity_of(&self, service: &str) -> String {
        trellis_model::config::spiffe_id(&self.trust_domain, service)
    }

    /// Signs a proxy's CSR for `service` if `token` is that service's join token. Whatever
    /// names the CSR asks for, the certificate names the service's identity only.
    pub fn certify(&self, service: &str, token: &str, csr_pem: &str) -> Result<Issued, IdentityError> {
        let expected = self.join_token(service);
        let ok = expected.len() == token.len()
            && expected.bytes().zip(token.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0;
        if !ok || service.is_empty() || !service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
            return Err(IdentityError::BadToken(service.to_string()));
        }
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| IdentityError::BadCsr(e.to_string()))?;
        let identity = self.identity_of(service);
        let now = OffsetDateTime::now_utc();
        let p = &mut csr.params;
        // The DNS name lets callers check who answers with ordinary name verification.
        let dns = trellis_model::config::identity_dns_name(&identity).ok_or(IdentityError::BadToken(service.into()))?;
        p.subject_alt_names = vec![SanType::URI(identity.as_str().try_into()?), SanType::DnsName(dns.try_into()?)];
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, service);
        p.is_ca = IsCa::NoCa;
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + self.cert_ttl;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        let cert = csr.signed_by(&self.issuer)?;
        let not_after_ms = (now + self.cert_ttl).unix_timestamp() * 1000;
        Ok(Issued {
            identity,
            chain_pem: format!("{}{}", cert.pem(), self.issuer_pem),
            anchor_pem: self.anchor_pem.clone(),
            not_after_ms,
            fleet_port: None,
        })
    }
}

fn ca_params(name: &str, ttl: Duration) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + ttl;
    Ok(params)
}

/// When a PEM certificate expires, in unix ms (0 if it does not read).
pub fn not_after_ms(pem: &str) -> i64 {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) else { return 0 };
    pem.parse_x509().map(|c| c.validity().not_after.timestamp() * 1000).unwrap_or(0)
}

/// When a DER certificate expires (unix ms); 0 when it does not read.
pub fn der_not_after_ms(der: &[u8]) -> i64 {
    x509_parser::parse_x509_certificate(der).map(|(_, c)| c.validity().not_after.timestamp() * 1000).unwrap_or(0)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(names: &[&str]) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        (params.serialize_request(&key).unwrap().pem().unwrap(), key)
    }

    #[test]
    fn a_proxy_with_its_services_token_gets_a_day_long_certificate_naming_only_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path(), "mesh.local").unwrap();
        let (request, _key) = csr(&["evil.example.com"]);
        let issued = ca.certify("shop", &ca.join_token("shop"), &request).unwrap();
        assert_eq!(issued.identity, "spiffe://mesh.local/svc/shop");
        let (_, pem) = x509_parser::pem::parse_x509_pem(issued.chain_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            sans,
            vec!["URI(spiffe://mesh.local/svc/shop)", "DNSName(shop.svc.mesh.local)"],
            "the CSR's own names are ignored"
        );
        let lifetime = cert.validity().not_after.timestamp() - OffsetDateTime::now_utc().unix_timestamp();
        assert!((CERT_TTL.as_secs() as i64 - 60..=CERT_TTL.as_secs() as i64).contains(&lifetime), "{lifetime}");
        // The chain holds: leaf ← issuer ← anchor.
        let (_, issuer_pem) = x509_parser::pem::parse_x509_pem(ca.issuer_pem.as_bytes()).unwrap();
        let issuer = issuer_pem.parse_x509().unwrap();
        cert.verify_signature(Some(issuer.public_key())).unwrap();
        let (_, anchor_pem) = x509_parser::pem::parse_x509_pem(ca.anchor_pem.as_bytes()).unwrap();
        issuer.verify_signature(Some(anchor_pem.parse_x509().unwrap().public_key())).unwrap();
    }

    #[test]
    fn another_services_token_or_a_bad_csr_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path(), "mesh.local").unwrap();
        let (request, _) = csr(&[]);
        assert!(matches!(ca.certify("payments", &ca.join_token("shop"), &request), Err(IdentityError::BadToken(_))));
        assert!(matches!(ca.certify("shop", &ca.join_token("shop"), "not a csr"), Err(IdentityError::BadCsr(_))));
    }

    #[test]
    fn the_anchor_and_join_secret_survive_a_restart_with_private_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = Ca::load_or_create(dir.path(), "mesh.local").unwrap();
        let again = Ca::load_or_create(dir.path(), "mesh.local").unwrap();
        assert_eq!(first.anchor_pem, again.anchor_pem);
        assert_eq!(first.join_token("shop"), again.join_token("shop"));
        assert_ne!(first.issuer_pem, again.issuer_pem, "each start makes a fresh issuer");
        for file in ["anchor.key", "join.key"] {
            let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
        assert!(first.anchor_not_after_ms > first.issuer_not_after_ms && first.issuer_not_after_ms > 0);
    }
}
