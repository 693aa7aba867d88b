//! Certificates from the control plane: a key made here (it never leaves the process), a CSR
//! sent with the service's join token, and the certificate that comes back, renewed at two
//! thirds of its lifetime.

use crate::Shared;
use crate::client::ControlPlane;
use crate::transport::tls::Certified;
use crate::transport::tls::install;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use trellis_model::fleet;

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// Keeps a valid certificate until shutdown.
pub async fn maintain(shared: Arc<Shared>, client: ControlPlane, token: String, mut shutdown: crate::sync::Shutdown) {
    let mut retry = RETRY_MIN;
    loop {
        let wait = match certify(&client, &shared, &token).await {
            Ok(cert) => {
                let left = (cert.not_after_ms - now_ms()).max(0) as u64;
                tracing::info!(identity = %cert.identity, expires_in_s = left / 1000, "certificate issued");
                if let Err(e) = install(&shared, cert) {
                    tracing::error!(error = %e, "the issued certificate cannot be used for mTLS");
                }
                retry = RETRY_MIN;
                // Renew at two thirds of the lifetime: a day-long certificate lasts 16 hours.
                Duration::from_millis(left * 2 / 3).max(RETRY_MIN)
            }
            Err(why) => {
                // Another replica is asked at once; after all of them, back off.
                let target = client.targets.current().map(|t| t.base).unwrap_or_default();
                if client.targets.fail() {
                    client.targets.resolve().await;
                    tracing::warn!(%why, %target, retry_in = ?retry, "no certificate yet");
                    let wait = retry;
                    retry = (retry * 2).min(RETRY_MAX);
                    wait
                } else {
                    tracing::warn!(%why, %target, "no certificate from this replica; asking the next");
                    RETRY_MIN / 10
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            () = shutdown.recv() => return,
        }
    }
}

async fn certify(client: &ControlPlane, shared: &Shared, token: &str) -> Result<Certified, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|r| r.pem())
        .map_err(|e| e.to_string())?;
    let s = &shared.settings;
    let body = fleet::CertifyRequest {
        proxy_id: s.proxy_id.clone(),
        service: s.service.clone(),
        token: token.to_string(),
        csr,
    };
    let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
    let resp =
        client.post_plain(fleet::CERTIFY, body).await.map_err(|e| format!("cannot reach the control plane: {e}"))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("the control plane answered {status}: {}", String::from_utf8_lossy(&bytes)));
    }
    let issued: fleet::Issued = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok(Certified::new(issued, key.serialize_pem()))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
