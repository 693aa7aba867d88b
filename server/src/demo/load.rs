//! A steady load generator, so the demo always has traffic to look at.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// The header that asks the demo's services to fail when they run the named version.
pub const FAIL_HEADER: &str = "x-demo-fail";

/// Sends `rps` requests per second to `target` (naming `host`) until shutdown. While the file
/// `fail_flag` names a version, requests ask that version to fail (to watch a canary abort).
pub async fn run(
    target: SocketAddr,
    host: String,
    rps: u32,
    fail_flag: std::path::PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
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
                let (client, host, ok, failed) = (client.clone(), host.clone(), ok.clone(), failed.clone());
                let fail = failing.clone();
                tokio::spawn(async move {
                    let mut req = http::Request::get(format!("http://{target}/")).header(http::header::HOST, host);
                    if !fail.is_empty() {
                        req = req.header(FAIL_HEADER, fail);
                    }
                    let req = req.body(Empty::new());
                    let Ok(req) = req else { return };
                    let good = match client.request(req).await {
                        Ok(resp) => {
                            let status = resp.status();
                            let _ = resp.into_body().collect().await;
                            status.is_success()
                        }
                        Err(_) => false,
                    };
                    if good { ok.fetch_add(1, Ordering::Relaxed) } else { failed.fetch_add(1, Ordering::Relaxed) };
                });
            }
            _ = report.tick() => {
                tracing::info!(ok = ok.load(Ordering::Relaxed), failed = failed.load(Ordering::Relaxed), "demo load");
            }
            _ = shutdown.changed() => return,
        }
    }
}
