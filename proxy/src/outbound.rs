//! The outbound path: the local application names a service in `Host`; the proxy picks the
//! rule, applies faults, mirrors, picks the version by weight and an endpoint by load, and
//! sends with timeouts and budgeted retries to that endpoint's inbound listener.
//!
//! The order, and why:
//! 1. shed — refuse before doing any work when at the concurrency limit;
//! 2. route — everything after depends on the rule;
//! 3. fault — injected before any endpoint is touched, like a real upstream failure;
//! 4. buffer — a small body is kept so the request can be retried and mirrored;
//! 5. mirror — a copy is sent off the request path and never waited for;
//! 6. request timeout around 7;
//! 7. attempts — pick an endpoint (P2C/EWMA, ejection), per-try timeout, classify, retry
//!    within the budget.

use crate::client::{Clients, Replay};
use crate::errors::ProxyError;
use crate::metrics::status_class;
use crate::outlier::Outcome;
use crate::{Body, Shared, split};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use trellis_model::config::RetryOn;
use trellis_model::{RuleConfig, ServiceConfig};

pub struct Outbound {
    shared: Arc<Shared>,
    clients: Clients,
    turn: AtomicUsize,
}

/// Where a request went, for metrics.
#[derive(Default)]
struct Dest {
    service: String,
    version: String,
    route: Option<std::sync::Arc<str>>,
}

impl Outbound {
    pub fn new(shared: Arc<Shared>) -> Self {
        Outbound { clients: Clients::new(Some(shared.clone())), shared, turn: AtomicUsize::new(0) }
    }

    pub async fn handle(self: Arc<Self>, mut req: Request<crate::client::ReqBody>) -> Response<Body> {
        let arrival = crate::Arrival::new(&self.shared, trellis_model::telemetry::Direction::Outbound, &mut req);
        let Ok(_permit) = self.shared.limit.clone().try_acquire_owned() else {
            self.shared.metrics.inc("trellis_proxy_shed_total", &[("direction", "outbound")]);
            return ProxyError::Overloaded.into_response();
        };
        let mut dest = Dest::default();
        let result = self.serve(req, &mut dest).await;
        let route = dest.route.as_deref().unwrap_or_default();
        self.shared.complete(arrival, &dest.service, &dest.version, route, result)
    }

    async fn serve(&self, req: Request<crate::client::ReqBody>, dest: &mut Dest) -> Result<Response<Body>, ProxyError> {
        // Loaded once: the whole request runs on the config it started with.
        let applied = self.shared.config.load_full();
        if applied.version.is_empty() {
            return Err(ProxyError::NoConfig);
        }
        let host = authority(&req).ok_or(ProxyError::NoAuthority)?;
        let service = applied.services.get(host).ok_or_else(|| ProxyError::UnknownService(host.to_string()))?;
        dest.service = service.name.clone();
        let facts =
            split::RequestFacts { method: req.method().as_str(), path: req.uri().path(), headers: req.headers() };
        let (index, rule) =
            split::select_rule(&applied, service, &facts).ok_or_else(|| ProxyError::NoRoute(service.name.clone()))?;
        let total = split::total_weight(&rule.backends);
        let backend = split::pick_backend(&rule.backends, fastrand::u32(0..total.max(1)))
            .ok_or_else(|| ProxyError::NoRoute(service.name.clone()))?;
        dest.version = backend.version.clone();
        dest.route = applied.route_label(&service.name, index);
        let _pending = self
            .shared
            .pending_slot(&service.name, service.traffic.limits.max_pending_requests)
            .ok_or_else(|| ProxyError::ServiceOverloaded(service.name.clone()))?;

        if rule.fault.is_some() {
            Box::pin(self.inject_fault(service, rule)).await?;
        }
        let endpoints = applied.endpoints.get(&service.name).map(Vec::as_slice).unwrap_or_default();
        if crate::upgrade::is_upgrade(&req) {
            // A tunnel is neither retried nor mirrored: one endpoint, for as long as it lasts.
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            let lb = service.traffic.load_balancer;
            let (endpoint, _in_flight) =
                self.shared.endpoints.pick(lb, endpoints, &backend.version, turn).ok_or_else(|| {
                    ProxyError::NoEndpoints { service: service.name.clone(), version: backend.version.clone() }
                })?;
            return Box::pin(crate::upgrade::forward(self.clients.http1(), req, &endpoint.addr)).await;
        }
        let (parts, body) = req.into_parts();
        let body = Replay::read(body, &parts.headers).await?;
        self.mirror(&applied, service, rule, &parts, &body);

        let send = self.attempts(service, rule, &backend.version, endpoints, parts, body);
        match tokio::time::timeout(Duration::from_millis(rule.timeouts.request_ms), send).await {
            Ok(result) => result,
            Err(_) => Err(ProxyError::Timeout(rule.timeouts.request_ms)),
        }
    }

    async fn inject_fault(&self, service: &ServiceConfig, rule: &RuleConfig) -> Result<(), ProxyError> {
        let Some(fault) = &rule.fault else { return Ok(()) };
        let metric = |kind| {
            self.shared.metrics.inc("trellis_proxy_faults_total", &[("dst_service", &service.name), ("kind", kind)])
        };
        if let Some(delay) = &fault.delay
            && fastrand::f64() * 100.0 < delay.percent
        {
            metric("delay");
            tokio::time::sleep(Duration::from_millis(delay.duration_ms)).await;
        }
        if let Some(abort) = &fault.abort
            && fastrand::f64() * 100.0 < abort.percent
        {
            metric("abort");
            return Err(ProxyError::FaultAbort(abort.status));
        }
        Ok(())
    }

    /// Sends a copy to the mirror version in the background. Only buffered requests can be
    /// copied; a bounded number of copies may be in flight, beyond which copies are skipped.
    fn mirror(
        &self,
        applied: &crate::applied::Applied,
        service: &ServiceConfig,
        rule: &RuleConfig,
        parts: &http::request::Parts,
        body: &Replay,
    ) {
        let Some(m) = &rule.mirror else { return };
        let (Replay::Buffered(bytes), true) = (body, fastrand::f64() * 100.0 < m.percent) else { return };
        let Ok(permit) = self.shared.mirror_limit.clone().try_acquire_owned() else { return };
        let endpoints = applied.endpoints.get(&service.name).map(Vec::as_slice).unwrap_or_default();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let lb = service.traffic.load_balancer;
        let Some((endpoint, in_flight)) = self.shared.endpoints.pick(lb, endpoints, &m.version, turn) else { return };
        let (clients, parts, addr) = (self.clients.clone(), parts.clone(), endpoint.addr.clone());
        let (protocol, body) = (service.protocol, Replay::Buffered(bytes.clone()));
        self.shared
            .metrics
            .inc("trellis_proxy_mirrored_total", &[("dst_service", &service.name), ("dst_version", &m.version)]);
        tokio::spawn(async move {
            let _hold = (permit, in_flight);
            // The response is read and dropped: nobody waits for a mirror.
            if let Ok(resp) = clients.send(protocol, &parts, body, &addr, 0).await {
                let _ = resp.into_body().collect().await;
            }
        });
    }

    async fn attempts(
        &self,
        service: &ServiceConfig,
        rule: &RuleConfig,
        version: &str,
        endpoints: &[trellis_model::Endpoint],
        parts: http::request::Parts,
        body: Replay,
    ) -> Result<Response<Body>, ProxyError> {
        let metrics = &self.shared.metrics;
        let now = self.shared.endpoints.now_ms();
        self.shared.with_budget(&service.name, &rule.retry.budget, |b| b.deposit(now));
        let lb = service.traffic.load_balancer;
        let mut body = Some(body);
        let mut attempt = 0;
        loop {
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            let (endpoint, in_flight) = self.shared.endpoints.pick(lb, endpoints, version, turn).ok_or_else(|| {
                ProxyError::NoEndpoints { service: service.name.clone(), version: version.to_string() }
            })?;
            // A buffered body can be sent again; a streamed one only once.
            let Some(this_body) = body.take() else { unreachable!("a streamed body is never retried") };
            body = this_body.again();
            let limit = service.traffic.limits.max_requests_per_connection;
            let once = self.clients.send(service.protocol, &parts, this_body, &endpoint.addr, limit);
            let sent = Instant::now();
            let result = match rule.timeouts.per_try_ms.map(Duration::from_millis) {
                Some(limit) => match tokio::time::timeout(limit, once).await {
                    Ok(r) => r.map_err(Failure::Upstream),
                    Err(_) => Err(Failure::TimedOut(limit.as_millis() as u64)),
                },
                None => once.await.map_err(Failure::Upstream),
            };
            let outcome = match &result {
                Ok(resp) => Outcome::of_status(resp.status().as_u16()),
                Err(_) => Outcome::GatewayError,
            };
            let status = match &result {
                Ok(resp) => status_class(resp.status()),
                Err(f) => f.kind(),
            };
            metrics.inc(
                "trellis_proxy_attempts_total",
                &[("dst_service", &service.name), ("dst_version", version), ("status", status)],
            );
            let rtt = sent.elapsed().as_secs_f64() * 1000.0;
            let ejected = self.shared.endpoints.record(
                &in_flight,
                &endpoint.addr,
                rtt,
                outcome,
                endpoints,
                &service.traffic.outlier,
            );
            drop(in_flight);
            if ejected {
                metrics.inc(
                    "trellis_proxy_ejections_total",
                    &[("dst_service", &service.name), ("endpoint", &endpoint.addr)],
                );
            }
            attempt += 1;
            let retryable = body.is_some() && attempt <= rule.retry.attempts && should_retry(&result, &rule.retry.on);
            if !retryable {
                return finish(result, &endpoint.addr);
            }
            let now = self.shared.endpoints.now_ms();
            if !self.shared.with_budget(&service.name, &rule.retry.budget, |b| b.try_withdraw(now)) {
                metrics.inc(
                    "trellis_proxy_retries_total",
                    &[("dst_service", &service.name), ("result", "budget_exhausted")],
                );
                return finish(result, &endpoint.addr);
            }
            metrics.inc("trellis_proxy_retries_total", &[("dst_service", &service.name), ("result", "sent")]);
        }
    }
}

/// Why an attempt produced no response.
enum Failure {
    Upstream(crate::client::UpstreamError),
    TimedOut(u64),
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Failure::Upstream(e) if e.is_connect() => "connect-failure",
            Failure::Upstream(_) => "reset",
            Failure::TimedOut(_) => "timeout",
        }
    }
}

fn finish(result: Result<Response<Body>, Failure>, addr: &str) -> Result<Response<Body>, ProxyError> {
    match result {
        Ok(resp) => Ok(resp),
        Err(Failure::Upstream(source)) => Err(ProxyError::Upstream { addr: addr.to_string(), source }),
        Err(Failure::TimedOut(ms)) => Err(ProxyError::Timeout(ms)),
    }
}

/// An upstream response, ready for our listener: the upstream's HTTP version (1.0, or 2 between
/// proxies) says nothing about the connection our client opened, so the server picks its own.
pub fn downstream(mut resp: Response<Incoming>) -> Response<Body> {
    *resp.version_mut() = http::Version::default();
    resp.map(|b| b.map_err(Into::into).boxed_unsync())
}

/// The retry conditions, as Envoy names them: `5xx` includes gateway errors, connect failures
/// and resets; `gateway-error` includes connect failures and per-try timeouts.
fn should_retry(result: &Result<Response<Body>, Failure>, on: &[RetryOn]) -> bool {
    let has = |c| on.contains(&c);
    match result {
        Ok(resp) => {
            let s = resp.status().as_u16();
            (has(RetryOn::ServerError) && (500..600).contains(&s))
                || (has(RetryOn::GatewayError) && (502..=504).contains(&s))
        }
        Err(Failure::TimedOut(_)) => has(RetryOn::GatewayError) || has(RetryOn::ServerError),
        Err(Failure::Upstream(e)) if e.is_connect() => {
            has(RetryOn::ConnectFailure) || has(RetryOn::GatewayError) || has(RetryOn::ServerError)
        }
        Err(Failure::Upstream(_)) => has(RetryOn::Reset) || has(RetryOn::ServerError),
    }
}

/// Points a request at an endpoint, keeping its Host, without connection-level headers.
pub fn set_target<B>(req: &mut Request<B>, addr: &str) -> Result<(), ProxyError> {
    // Built from parts: the path is already parsed, only the endpoint's address is new.
    let path = req.uri().path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme(http::uri::Scheme::HTTP)
        .authority(addr)
        .path_and_query(path)
        .build()
        .map_err(|_| ProxyError::NoAuthority)?;
    if !req.headers().contains_key(http::header::HOST)
        && let Some(a) = req.uri().authority().cloned()
        && let Ok(v) = http::HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(http::header::HOST, v);
    }
    *req.uri_mut() = uri;
    strip_hop_by_hop(req.headers_mut());
    Ok(())
}

/// Headers that describe one connection and must not cross a proxy (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    for name in ["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "upgrade"]
    {
        headers.remove(name);
    }
}

/// The service a request names: `Host` (HTTP/1.1) or `:authority` (HTTP/2), without a port.
fn authority(req: &Request<crate::client::ReqBody>) -> Option<&str> {
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
