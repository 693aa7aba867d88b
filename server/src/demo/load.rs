//! A steady load generator, so the demo always has traffic to look at. It plays the mesh's
//! ingress: it holds its own certificate (`spiffe://<domain>/svc/ingress`) and calls the
//! storefront's inbound listener over mTLS, as a meshed gateway would in a strict mesh.

use crate::identity::Ca;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The header that asks the demo's services to fail when they run the named version.
pub const FAIL_HEADER: &str = "x-demo-fail";
/// The identity the load generator calls the mesh with.
const INGRESS: &str = "ingress";

/// Sends `rps` requests per second to `service`'s inbound listener at `target` until
/// shutdown. While the file `fail_flag` names a version, requests ask that version to fail
/// (to watch a canary abort).
pub async fn run(
    ca: Arc<Ca>,
    target: SocketAddr,
    service: String,
    rps: u32,
    fail_flag: std::path::PathBuf,
    mut shutdown: crate::sync::Shutdown,
) {
    let ingress = Arc::new(Ingress { ca, target, service, conn: tokio::sync::Mutex::new(None) });
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rps.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut report = tokio::time::interval(Duration::from_secs(30));
    let mut look = tokio::time::interval(Duration::from_secs(1));
    let mut failing = String::new();
    loop {
        tokio::select! {
            _ = look.tick() => {
                let now = std::fs::read_to_string(&fail_flag).map(|s| s.trim().to_string()).unwrap_or_default();
                if now != failing {
                    tracing::info!(version = %now, "demo load: asking this version to fail (empty: none)");
                    failing = now;
                }
            }
            _ = tick.tick() => {
                let (ingress, ok, failed, fail) = (ingress.clone(), ok.clone(), failed.clone(), failing.clone());
                tokio::spawn(async move {
                    let good = match ingress.get(&fail).await {
                        Ok(status) => status.is_success(),
                        Err(e) => {
                            tracing::debug!(error = %e, "demo load: request failed");
                            false
                        }
                    };
                    if good { ok.fetch_add(1, Ordering::Relaxed) } else { failed.fetch_add(1, Ordering::Relaxed) };
                });
            }
            _ = report.tick() => {
                tracing::info!(ok = ok.load(Ordering::Relaxed), failed = failed.load(Ordering::Relaxed), "demo load");
            }
            () = shutdown.recv() => return,
        }
    }
}

/// One HTTP/2 connection over mTLS, dialled again (with a fresh certificate) when it drops.
struct Ingress {
    ca: Arc<Ca>,
    target: SocketAddr,
    service: String,
    conn: tokio::sync::Mutex<Option<SendRequest<Empty<Bytes>>>>,
}

impl Ingress {
    async fn get(&self, fail: &str) -> Result<http::StatusCode, String> {
        let mut send = {
            let mut conn = self.conn.lock().await;
            match conn.as_ref().filter(|s| !s.is_closed()) {
                Some(s) => s.clone(),
                None => conn.insert(self.dial().await?).clone(),
            }
        };
        let mut req = http::Request::get("/").header(http::header::HOST, &self.service);
        if !fail.is_empty() {
            req = req.header(FAIL_HEADER, fail);
        }
        let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
        let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        resp.into_body().collect().await.map_err(|e| e.to_string())?;
        Ok(status)
    }

    async fn dial(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let (issued, key_pem) = self.ca.issue(INGRESS).map_err(|e| e.to_string())?;
        let chain = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        let anchor = CertificateDer::from_pem_slice(issued.anchor_pem.as_bytes()).map_err(|e| e.to_string())?;
        roots.add(anchor).map_err(|e| e.to_string())?;
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let identity = self.ca.identity_of(&self.service);
        let name = trellis_model::config::identity_dns_name(&identity)
            .and_then(|n| ServerName::try_from(n).ok())
            .ok_or_else(|| format!("{identity} has no DNS name"))?;
        let tcp = tokio::net::TcpStream::connect(self.target).await.map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("mTLS to {identity}: {e}"))?;
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(send)
    }
}
