//! The outbound path: the local application names a service in `Host`; the proxy picks the
//! rule, the version by weight and an endpoint, and forwards to that endpoint's inbound listener.

use crate::errors::ProxyError;
use crate::metrics::{Key, status_class};
use crate::{Body, Shared, split};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub type HttpClient = Client<HttpConnector, Incoming>;

/// A pooled HTTP/1.1 client with Nagle off, as every hop on the data path wants.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

#[derive(Clone)]
pub struct Outbound {
    shared: Arc<Shared>,
    client: HttpClient,
    turn: Arc<AtomicUsize>,
}

impl Outbound {
    pub fn new(shared: Arc<Shared>) -> Self {
        Outbound { shared, client: client(), turn: Arc::new(AtomicUsize::new(0)) }
    }

    pub async fn handle(self, req: Request<Incoming>) -> Response<Body> {
        // Loaded once: the whole request runs on the config it started with.
        let config = self.shared.config.load_full();
        let (service, version, result) = match self.route(&config, &req) {
            Ok((service, version, addr)) => {
                let result = self.forward(req, addr).await;
                (service, version, result)
            }
            Err(e) => (String::new(), String::new(), Err(e)),
        };
        let status = match &result {
            Ok(resp) => status_class(resp.status()),
            Err(e) => e.kind().to_string(),
        };
        self.shared.metrics.record(Key { direction: "outbound", service, version, status });
        result.unwrap_or_else(ProxyError::into_response)
    }

    /// Decides service, version and endpoint address; pure apart from the random roll.
    fn route(
        &self,
        config: &crate::applied::Applied,
        req: &Request<Incoming>,
    ) -> Result<(String, String, String), ProxyError> {
        if config.version.is_empty() {
            return Err(ProxyError::NoConfig);
        }
        let host = authority(req).ok_or(ProxyError::NoAuthority)?;
        let service = config.services.get(host).ok_or_else(|| ProxyError::UnknownService(host.to_string()))?;
        let facts =
            split::RequestFacts { method: req.method().as_str(), path: req.uri().path(), headers: req.headers() };
        let rule =
            split::select_rule(config, service, &facts).ok_or_else(|| ProxyError::NoRoute(service.name.clone()))?;
        let total = split::total_weight(&rule.backends);
        let backend = split::pick_backend(&rule.backends, fastrand::u32(0..total.max(1)))
            .ok_or_else(|| ProxyError::NoRoute(service.name.clone()))?;
        let no_endpoints =
            || ProxyError::NoEndpoints { service: service.name.clone(), version: backend.version.clone() };
        let endpoints = config.endpoints.get(&service.name).ok_or_else(no_endpoints)?;
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let endpoint = split::pick_endpoint(endpoints, &backend.version, turn).ok_or_else(no_endpoints)?;
        Ok((service.name.clone(), backend.version.clone(), endpoint.addr.clone()))
    }

    async fn forward(&self, req: Request<Incoming>, addr: String) -> Result<Response<Body>, ProxyError> {
        forward(&self.client, req, &addr).await
    }
}

/// Sends `req` to `addr`, keeping its Host, and streams the response back.
pub async fn forward(
    client: &HttpClient,
    mut req: Request<Incoming>,
    addr: &str,
) -> Result<Response<Body>, ProxyError> {
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let uri: Uri = format!("http://{addr}{path}").parse().map_err(|_| ProxyError::NoAuthority)?;
    if !req.headers().contains_key(http::header::HOST)
        && let Some(a) = req.uri().authority().cloned()
        && let Ok(v) = http::HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(http::header::HOST, v);
    }
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    strip_hop_by_hop(req.headers_mut());
    let resp = client.request(req).await.map_err(|source| ProxyError::Upstream { addr: addr.to_string(), source })?;
    Ok(resp.map(|b| b.boxed_unsync()))
}

/// Headers that describe one connection and must not cross a proxy (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    for name in ["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "upgrade"]
    {
        headers.remove(name);
    }
}

/// The service a request names: `Host` (HTTP/1.1) or `:authority` (HTTP/2), without a port.
fn authority(req: &Request<Incoming>) -> Option<&str> {
    let raw = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let host =
        raw.rsplit_once(':').map_or(raw, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { raw });
    // `catalog.default.svc` style names resolve to their first label, like Kubernetes DNS.
    Some(host.split('.').next().unwrap_or(host))
}
