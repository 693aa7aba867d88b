//! HTTPS for the control plane's main listener (the dashboard, `/api/v1`, proxies' joins) with
//! the operator's own certificate, and the client that talks to a control plane so served
//! (the CLI, replicas passing requests on to the leader).
//!
//! The certificate and key are read again when their files change (checked at most every
//! [`RELOAD_EVERY`]), so cert-manager or an ACME client can renew them without a restart; a
//! renewal that does not load is logged and the previous certificate kept.

use crate::sync::Locked;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{TcpListener, TcpStream};

mod tls;
pub use tls::Tls;

/// The variable (and flag) naming a PEM file of the CA that signed the control plane's
/// certificate, for everything that connects to it: proxies, the CLI, the other replicas.
pub const CA_ENV: &str = "TRELLIS_CONTROL_PLANE_CA";
const RELOAD_EVERY: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may finish their requests after shutdown (streams end at once).
const DRAIN: Duration = Duration::from_secs(10);

/// The operator's certificate chain and key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// TLS 1.3 with the operator's certificate, offering HTTP/2 and HTTP/1.1; no client
/// certificates (people and the CLI prove themselves with tokens, proxies with join tokens).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let loaded = load(files, &provider)?;
    let resolver = Reloading {
        files: files.clone(),
        provider: provider.clone(),
        current: Mutex::new(Current { key: loaded, stamp: stamp(files), checked: Instant::now() }),
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load(files: &TlsFiles, provider: &rustls::crypto::CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let chain = CertificateDer::pem_slice_iter(&read(&files.cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain ({e})", files.cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: holds no certificate", files.cert.display()));
    }
    let der = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| format!("{}: not a PEM private key ({e})", files.key.display()))?;
    let signing = provider.key_provider.load_private_key(der).map_err(|e| format!("{}: {e}", files.key.display()))?;
    let key = CertifiedKey::new(chain, signing);
    key.keys_match().map_err(|e| format!("{} is not the key of {}: {e}", files.key.display(), files.cert.display()))?;
    Ok(Arc::new(key))
}

/// When the files were last changed: a renewal shows as a new stamp.
fn stamp(files: &TlsFiles) -> Option<(SystemTime, SystemTime)> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((modified(&files.cert)?, modified(&files.key)?))
}

struct Current {
    key: Arc<CertifiedKey>,
    stamp: Option<(SystemTime, SystemTime)>,
    checked: Instant,
}

struct Reloading {
    files: TlsFiles,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<Current>,
}

impl Reloading {
    fn key(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.locked();
        if current.checked.elapsed() >= RELOAD_EVERY {
            current.checked = Instant::now();
            let stamp = stamp(&self.files);
            if stamp != current.stamp {
                current.stamp = stamp;
                match load(&self.files, &self.provider) {
                    Ok(key) => {
                        tracing::info!(cert = %self.files.cert.display(), "serving the renewed certificate");
                        current.key = key;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the renewed certificate does not load; keeping the previous one")
                    }
                }
            }
        }
        current.key.clone()
    }
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reloading({})", self.files.cert.display())
    }
}

impl rustls::server::ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

/// Serves TLS connections until shutdown, then lets them finish what they are doing (at most
/// [`DRAIN`]). `admit` looks at each completed handshake and gives the app to serve on it with
/// what each of its requests carries (the fleet's: who the proxy is), or `None` to close it
/// (the fleet's listener admits only proxies of its trust domain). Each
/// request carries its client's address as axum's `ConnectInfo<SocketAddr>`, as on the
/// plaintext listener (login rate limits read it). Handshakes run beside the accept loop, so a
/// client that stalls in one holds up nobody.
pub async fn serve<F>(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    mut shutdown: crate::sync::Shutdown,
    admit: F,
) where
    F: Fn(&Tls<TcpStream>, SocketAddr) -> Option<(axum::Router, http::Extensions)> + Clone + Send + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.recv() => break,
        };
        let (config, admit, watcher) = (config.clone(), admit.clone(), graceful.watcher());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls::accept(config, tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::info!(%peer, error = %e, "TLS handshake refused"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let Some((app, extensions)) = admit(&tls, peer) else { return };
            let service = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().extend(extensions.clone());
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                tower_service::Service::call(&mut app.clone(), req)
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            // With upgrades: a proxy's duplex config stream (`Upgrade: trellis-fleet/1`) leaves
            // HTTP for the rest of its connection.
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after {} s of draining; closing them", DRAIN.as_secs());
    }
}

pub use trellis_host::with_causes;

pub type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// A client for `http://` and `https://` control planes, trusting the system's roots and,
/// when given, the CA in `ca_file` (a private CA, or a self-signed certificate).
pub fn client(ca_file: Option<&Path>) -> Result<Client, String> {
    let tls = trellis_host::client_tls(ca_file, CA_ENV)?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
        let files = TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key") };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// Makes the next handshake look at the files, as it would after `RELOAD_EVERY`; the
    /// files' times are moved on so that the change shows on any filesystem's clock.
    fn due(resolver: &Reloading) {
        resolver.current.locked().checked = Instant::now() - RELOAD_EVERY;
        let later = SystemTime::now() + Duration::from_secs(5);
        for path in [&resolver.files.cert, &resolver.files.key] {
            std::fs::File::options().write(true).open(path).unwrap().set_modified(later).unwrap();
        }
    }

    #[test]
    fn a_renewed_certificate_is_served_and_a_broken_renewal_keeps_the_last_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "first.example");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = load(&files, &provider).unwrap();
        let resolver = Reloading {
            files: files.clone(),
            provider: provider.clone(),
            current: Mutex::new(Current { key: first.clone(), stamp: stamp(&files), checked: Instant::now() }),
        };
        // Not yet due: the files are not even looked at.
        write_pair(dir.path(), "second.example");
        assert_eq!(resolver.key().cert, first.cert);

        due(&resolver);
        let second = resolver.key();
        assert_ne!(second.cert, first.cert, "the renewed certificate is served");

        std::fs::write(&files.key, "not a key").unwrap();
        due(&resolver);
        assert_eq!(resolver.key().cert, second.cert, "a renewal that does not load changes nothing");
    }

    #[test]
    fn files_that_do_not_make_a_certificate_say_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let provider = rustls::crypto::ring::default_provider();
        let files = TlsFiles { cert: dir.path().join("missing.crt"), key: dir.path().join("missing.key") };
        assert!(load(&files, &provider).unwrap_err().contains("missing.crt"));
        let files = write_pair(dir.path(), "a.example");
        std::fs::write(&files.cert, "").unwrap();
        assert!(load(&files, &provider).unwrap_err().contains("holds no certificate"));
        let ca = dir.path().join("empty-ca.pem");
        std::fs::write(&ca, "").unwrap();
        assert!(client(Some(&ca)).err().unwrap().contains("holds no certificate"));
    }
}
