//! The exporter: a task that sends the queued spans to the collector in batches, on a
//! schedule or as soon as a batch is full, retrying what the OTLP specification says a client
//! may retry. One export at a time: while the collector is slow the queue fills, and spans
//! past it are dropped and counted by the request path, never waited for.

use super::Tracer;
use crate::Shared;
use crate::sync::Shutdown;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

type Https = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The waits before a second and a third try of a batch.
const BACKOFF: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

pub struct Exporter {
    client: Https,
}

impl Exporter {
    /// Fails when `OTEL_EXPORTER_OTLP_CERTIFICATE` names no readable PEM certificate.
    pub fn new(tracer: &Tracer) -> Result<Self, String> {
        let tls = trellis_host::client_tls(tracer.settings.ca_file.as_deref(), "OTEL_EXPORTER_OTLP_CERTIFICATE")?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        Ok(Exporter { client: Client::builder(TokioExecutor::new()).build(https) })
    }
}

/// Exports until shutdown, then once more what is still queued.
pub async fn run(exporter: Exporter, shared: Arc<Shared>, mut shutdown: Shutdown) {
    let Some(tracer) = shared.tracer.as_deref() else { return };
    let mut healthy = true;
    loop {
        let stopping = tokio::select! {
            () = tracer.full.notified() => false,
            () = tokio::time::sleep(tracer.delay()) => false,
            () = shutdown.recv() => true,
        };
        loop {
            let batch = tracer.take();
            if batch.is_empty() {
                break;
            }
            let n = batch.len() as u64;
            let body = Bytes::from(super::span::request(&batch, &tracer.settings.resource, |at| tracer.unix_nanos(at)));
            drop(batch);
            match send(&exporter, tracer, body, stopping).await {
                Ok(()) => {
                    shared.metrics.spans.exported.fetch_add(n, Relaxed);
                    if !healthy {
                        tracing::info!(endpoint = %tracer.settings.endpoint, "spans are exported again");
                    }
                    healthy = true;
                }
                Err(why) => {
                    shared.metrics.spans.failed.fetch_add(n, Relaxed);
                    if healthy {
                        tracing::warn!(endpoint = %tracer.settings.endpoint, error = %why, "spans could not be exported; they are counted as failed in trellis_proxy_spans_total");
                    }
                    healthy = false;
                }
            }
            // Between schedules, batches go one after another only while they come full.
            if !stopping && (n as usize) < tracer.settings.batch {
                break;
            }
        }
        if stopping {
            return;
        }
    }
}

/// One batch, tried up to three times when the collector says it may be (429, 502, 503,
/// 504) or cannot be reached; once only when the proxy is stopping.
async fn send(exporter: &Exporter, tracer: &Tracer, body: Bytes, stopping: bool) -> Result<(), String> {
    let settings = &tracer.settings;
    let mut tries = 0;
    loop {
        let mut req = http::Request::post(settings.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(http::header::USER_AGENT, concat!("trellis-proxy/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body.clone()))
            .map_err(|e| e.to_string())?;
        req.headers_mut().extend(settings.headers.iter().cloned());
        // A proxy that is stopping waits for its last export no longer than a drain would.
        let limit = if stopping { settings.timeout.min(Duration::from_secs(2)) } else { settings.timeout };
        let answer = match tokio::time::timeout(limit, exporter.client.request(req)).await {
            Err(_) => Err((format!("no answer within {} ms", limit.as_millis()), true)),
            Ok(Err(e)) => Err((trellis_host::with_causes(&e), true)),
            Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                Err((format!("the collector answered {status}"), matches!(status, 429 | 502 | 503 | 504)))
            }
        };
        match answer {
            Ok(()) => return Ok(()),
            Err((why, retry)) if !retry || stopping || tries == BACKOFF.len() => return Err(why),
            Err(_) => {
                tokio::time::sleep(BACKOFF[tries]).await;
                tries += 1;
            }
        }
    }
}
