//! `trellis-proxy`: the sidecar data plane.
//!
//! Each proxy has three listeners: **outbound** (the local application calls other services
//! through it, naming them in `Host`), **inbound** (other proxies call it; it forwards to the
//! local application) and **admin** (`/metrics`, `/ready`, `/live`, `/config`). Configuration
//! streams in from the control plane and is swapped atomically: a request finishes on the
//! config it started with. Without a control plane the proxy keeps serving its last config.
//!
//! # Layout
//! - [`env`]: settings from `TRELLIS_*` variables, every bad value reported at once.
//! - [`applied`]: an applied config and what is precomputed from it.
//! - [`decide`]: the pure decisions, plain functions over plain data: routing ([`decide::split`]),
//!   load balancing, outlier ejection, retry budgets, access policy and rate limits. [`stack`]
//!   holds the layers that act on them; [`endpoints`] keeps their state per endpoint.
//! - [`client`]: pooled HTTP/1.1 and HTTP/2 upstream clients (HTTP/2 on [`http2::client`]).
//! - [`stack`]: the request paths as tower layers, one per feature, assembled per listener.
//! - [`inbound`]: what the inbound listener makes of a connection (mTLS or plaintext).
//! - [`transport`]: connections that are TLS or plaintext, accepted (with what they proved
//!   about the peer) or made (the `Connector`); the proxy's certificate and the mTLS configs
//!   built from it ([`transport::tls`]); HTTP/1.1 of the proxy's own for the common request,
//!   in front of hyper ([`transport::h1`]: its wire format, pool and server).
//! - [`http2`]: the proxy's own HTTP/2, server and client: frames, HPACK, flow control, the
//!   streams of a connection handled in its task.
//! - [`grpc`]: gRPC's statuses: which are the service's failures, the proxy's errors as gRPC
//!   statuses, and a response body that tells the call's status when its trailers pass.
//! - [`errors`]: typed data-path errors (and why an upstream gave no answer), and the one
//!   place they become responses.
//! - [`gate`]: atomic limits (load shedding, pending requests, mirroring) that never lock.
//! - [`clock`], [`alarm`]: the time read once per poll of a connection's task, and the
//!   connection's one timer that request deadlines share.
//! - [`batch`]: socket writes of a single-threaded runtime submitted together (io_uring).
//! - [`hash`]: the fast hasher of the proxy's maps; [`sync`]: locks that outlive a panic.
//! - [`metrics`]: counters in Prometheus text format.
//! - [`control`]: the config stream from the control plane, ACK/NACK, reconnect with backoff;
//!   certificates from it and their renewal (`control::certify`).
//! - [`admin`]: the admin listener.
//! - [`telemetry`]: counts pushed to the control plane every two seconds.
//! - [`trace`]: W3C traceparent propagation.
//! - [`otlp`]: a span per request, exported to an OpenTelemetry collector (OTLP/HTTP).
//! - [`upgrade`]: WebSocket and other connection upgrades, spliced through.
//! - [`tcp`]: `protocol: tcp` services as byte streams: a local listener per service called,
//!   the inbound side's connections to the application.
//! - [`server`]: the shared accept loop with graceful drain; it hands each connection to the
//!   HTTP/1.1 server, then to the HTTP/2 server or hyper as the connection needs.
//!
//! Modules depend one way, with no circle: `grpc` below `errors`; `errors` and `batch` below
//! `transport`, below `client`, below `stack`, below `server` (`tests/module_cycles.rs` holds
//! the line).

// The layout above names the crate's own modules; read these docs with
// `cargo doc --document-private-items`.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod admin;
pub(crate) mod alarm;
pub mod applied;
pub mod batch;
pub(crate) mod client;
pub(crate) mod clock;
pub(crate) mod control;
pub(crate) mod decide;
pub(crate) mod endpoints;
pub mod env;
pub(crate) mod errors;
pub(crate) mod gate;
pub(crate) mod grpc;
pub(crate) mod hash;
pub(crate) mod http2;
pub(crate) mod inbound;
pub(crate) mod metrics;
pub mod otlp;
pub(crate) mod server;
pub(crate) mod stack;
pub(crate) mod sync;
pub(crate) mod tcp;
pub(crate) mod telemetry;
pub(crate) mod trace;
pub(crate) mod transport;
pub(crate) mod upgrade;

use crate::sync::Locked;
use arc_swap::ArcSwap;
use decide::budget;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

pub use env::Settings;

/// The body every listener answers with: a streamed upstream body or a small local one.
pub type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, errors::BoxError>;
/// Request bodies as the proxy sends them: streamed through, or replayed from a buffer.
pub type ReqBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, errors::BodyError>;
/// Bodies up to this size are buffered so the request can be retried or mirrored, and the
/// proxy's own HTTP/1.1 server reads them whole before the request goes on.
pub const MAX_REPLAY_BODY: usize = 64 * 1024;

/// A retry budget, shared by the requests that draw on it; each locks it alone.
pub type SharedBudget = Arc<std::sync::Mutex<budget::Budget>>;
/// A rate limit's buckets, shared by the requests it applies to.
pub type SharedLimiter = Arc<std::sync::Mutex<decide::ratelimit::Limiter>>;

/// The state the listeners share.
pub struct Shared {
    pub settings: Settings,
    /// The applied config; empty (version "") until the first one arrives.
    pub config: ArcSwap<applied::Applied>,
    pub metrics: metrics::Metrics,
    pub endpoints: endpoints::Endpoints,
    /// Requests in flight per listener beyond this are shed with 503.
    pub limit: Arc<gate::Gate>,
    /// Mirrored copies in flight beyond this are skipped, so mirroring never queues.
    pub mirror_limit: Arc<gate::Gate>,
    /// Retry budgets per destination service, one per distinct budget setting.
    budgets: std::sync::Mutex<hash::Map<String, Vec<SharedBudget>>>,
    /// Rate limits' buckets by what set them (`TrafficPolicy/<name>`, ...).
    limiters: std::sync::Mutex<hash::Map<String, SharedLimiter>>,
    /// Requests in flight per destination service, bounded by its `maxPendingRequests`.
    pending: PerService<gate::Gate>,
    /// Upstream connections per destination service, bounded by its `maxConnections`: a
    /// request may wait for one.
    pub connections: PerService<tokio::sync::Semaphore>,
    /// This proxy's certificate and key, once the control plane issued them.
    pub identity: arc_swap::ArcSwapOption<transport::tls::Certified>,
    /// mTLS configs made from that certificate.
    pub tls: arc_swap::ArcSwapOption<transport::tls::Tls>,
    /// Spans of requests, when they are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub tracer: Option<Box<otlp::Tracer>>,
}

impl Shared {
    pub fn new(settings: Settings) -> Self {
        let tracer = settings.otlp.clone().map(|s| Box::new(otlp::Tracer::new(s)));
        Shared {
            limit: Arc::new(gate::Gate::new(settings.max_concurrent_requests)),
            mirror_limit: Arc::new(gate::Gate::new(256)),
            settings,
            config: ArcSwap::from_pointee(applied::Applied::default()),
            metrics: metrics::Metrics::default(),
            endpoints: endpoints::Endpoints::default(),
            budgets: Default::default(),
            limiters: Default::default(),
            pending: Default::default(),
            connections: Default::default(),
            identity: Default::default(),
            tls: Default::default(),
            tracer,
        }
    }

    /// A slot among the service's pending requests, or `None` when all are taken.
    pub fn pending_slot(&self, service: &str, limit: u32) -> Option<gate::Pass> {
        self.pending.get(service, limit, gate::Gate::new).try_pass()
    }

    /// The buckets of a rate limit: the same ones for as long as its setting stays the same,
    /// so a new config neither refills nor empties them; a changed setting starts afresh.
    pub fn limiter(&self, config: &trellis_model::config::RateLimitConfig) -> SharedLimiter {
        let mut all = self.limiters.locked();
        if let Some(l) = all.get(&config.by).filter(|l| l.locked().config() == config) {
            return l.clone();
        }
        let l = Arc::new(std::sync::Mutex::new(decide::ratelimit::Limiter::new(config.clone())));
        all.insert(config.by.clone(), l.clone());
        l
    }

    /// Waits until the proxy holds its certificate, when it is meant to have one (a join
    /// token): the control plane then knows it by it. False when shutdown came first.
    pub async fn wait_for_identity(&self, shutdown: &mut sync::Shutdown) -> bool {
        while self.settings.has_identity() && self.tls.load().is_none() {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                () = shutdown.recv() => return false,
            }
        }
        true
    }

    /// The retry budget of `service` under `config`: the same one for every rule (and every
    /// config applied since) that sets the same budget, so its count carries on across
    /// swaps. Found once per config and rule ([`applied::Applied::budget`]), not per request.
    pub fn budget(&self, service: &str, config: &trellis_model::config::RetryBudget) -> SharedBudget {
        let mut budgets = self.budgets.locked();
        let kept = budgets.entry(service.to_string()).or_default();
        if let Some(b) = kept.iter().find(|b| b.locked().config() == config) {
            return b.clone();
        }
        // A service's budgets are few (one per distinct setting); the oldest goes first.
        if kept.len() >= 8 {
            kept.remove(0);
        }
        let b = Arc::new(std::sync::Mutex::new(budget::Budget::new(config.clone())));
        kept.push(b.clone());
        b
    }
}

/// A bound per service (a gate or a semaphore), sized by its policy. A new size starts a new
/// count; holders of the old one finish on it.
pub struct PerService<T>(std::sync::Mutex<hash::Map<String, (u32, Arc<T>)>>);

impl<T> Default for PerService<T> {
    fn default() -> Self {
        PerService(Default::default())
    }
}

impl<T> PerService<T> {
    pub fn get(&self, service: &str, limit: u32, make: impl FnOnce(usize) -> T) -> Arc<T> {
        let mut all = self.0.locked();
        match all.get(service) {
            Some((l, s)) if *l == limit => s.clone(),
            _ => {
                let s = Arc::new(make(limit as usize));
                all.insert(service.to_string(), (limit, s.clone()));
                s
            }
        }
    }
}

/// A started proxy: where it listens, and how to stop it.
pub struct Running {
    pub outbound: SocketAddr,
    pub inbound: SocketAddr,
    pub admin: SocketAddr,
    /// The local listener of each `TRELLIS_TCP_UPSTREAMS` service, as bound.
    pub tcp: Vec<(String, SocketAddr)>,
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Whether it serves: `None`, or what it still waits for (as `/ready` says).
    pub fn waiting_for(&self) -> Option<&'static str> {
        admin::waiting_for(&self.shared)
    }

    /// Stops accepting, lets requests in flight finish (up to the drain grace), then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds the listeners and starts serving and following the control plane.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    let outbound_l = bind(settings.outbound_addr, "outbound").await?;
    let inbound_l = bind(settings.inbound_addr, "inbound").await?;
    let admin_l = bind(settings.admin_addr, "admin").await?;
    let mut tcp_l = Vec::new();
    for (service, addr) in &settings.tcp_upstreams {
        tcp_l.push((service.clone(), bind(*addr, &format!("tcp upstream {service}")).await?));
    }
    let (outbound, inbound, admin) = (outbound_l.local_addr()?, inbound_l.local_addr()?, admin_l.local_addr()?);

    if settings.io_uring {
        match batch::start() {
            batch::Mode::Batched => tracing::info!("socket writes batched through io_uring"),
            batch::Mode::Direct(why) => tracing::info!(%why, "socket writes go straight to their sockets"),
        }
    }
    let shared = Arc::new(Shared::new(settings.clone()));
    let (shutdown, rx) = sync::Shutdown::new();
    let span = tracing::info_span!("proxy", proxy_id = %settings.proxy_id, service = %settings.service);
    let mut tasks = Vec::new();
    let out = stack::outbound(shared.clone());
    tasks.push(tokio::spawn(
        server::serve(outbound_l, server::plain, out, rx.clone(), settings.drain_grace, settings.header_read_timeout)
            .instrument(span.clone()),
    ));
    let inb = stack::inbound(shared.clone());
    let accepting = shared.clone();
    let accept = move |stream| inbound::accept(accepting.clone(), stream);
    tasks.push(tokio::spawn(
        server::serve(inbound_l, accept, inb, rx.clone(), settings.drain_grace, settings.header_read_timeout)
            .instrument(span.clone()),
    ));
    let mut tcp = Vec::new();
    for (service, listener) in tcp_l {
        tcp.push((service.clone(), listener.local_addr()?));
        let serve = tcp::serve_upstream(shared.clone(), listener, service, rx.clone());
        tasks.push(tokio::spawn(serve.instrument(span.clone())));
    }
    if let Some(tracer) = &shared.tracer {
        let exporter = otlp::Exporter::new(tracer).map_err(anyhow::Error::msg)?;
        tasks.push(tokio::spawn(otlp::run(exporter, shared.clone(), rx.clone()).instrument(span.clone())));
    }
    let adm = admin::Admin(shared.clone());
    tasks.push(tokio::spawn(
        server::serve(admin_l, server::plain, adm, rx.clone(), settings.drain_grace, settings.header_read_timeout)
            .instrument(span.clone()),
    ));
    let registration = trellis_model::fleet::Registration {
        proxy_id: settings.proxy_id.clone(),
        service: settings.service.clone(),
        version: settings.version.clone(),
        inbound_addr: settings.advertise(inbound).to_string(),
        admin_addr: settings.advertise(admin).to_string(),
        proxy_version: env!("CARGO_PKG_VERSION").to_string(),
        incremental: true,
        resume: None,
        max_ping_every_s: Some(control::MAX_PING_EVERY_S),
    };
    if let Some(dir) = &settings.identity_dir {
        let cert = transport::tls::load(dir).map_err(|e| anyhow::anyhow!("{}: {e}", env::ENV_IDENTITY_DIR))?;
        tracing::info!(identity = %cert.identity, "identity from files");
        transport::tls::install(&shared, cert).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    match &settings.config_file {
        Some(path) => {
            let applied = load_static(path)?;
            tracing::info!(path = %path.display(), version = %applied.version, "standalone: serving a static config");
            shared.config.store(Arc::new(applied));
        }
        None => {
            let cp = client::ControlPlane::new(shared.clone()).map_err(anyhow::Error::msg)?;
            if let Some(token) = &settings.join_token {
                let certify = control::certify::maintain(shared.clone(), cp.clone(), token.0.clone(), rx.clone());
                tasks.push(tokio::spawn(certify.instrument(span.clone())));
            }
            let push = telemetry::push(shared.clone(), cp.clone(), rx.clone());
            tasks.push(tokio::spawn(push.instrument(span.clone())));
            tasks.push(tokio::spawn(control::follow(shared.clone(), cp, registration, rx).instrument(span)));
        }
    }
    tracing::info!(%outbound, %inbound, %admin, proxy_id = %settings.proxy_id, "trellis-proxy listening");
    Ok(Running { outbound, inbound, admin, tcp, shared, shutdown, tasks })
}

/// Reads a standalone config file: the JSON `ProxyConfig` that `/config` prints.
fn load_static(path: &std::path::Path) -> anyhow::Result<applied::Applied> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let config: trellis_model::ProxyConfig =
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{} is not a proxy config: {e}", path.display()))?;
    control::check(&config)
        .and_then(|()| applied::Applied::new(config))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

async fn bind(addr: SocketAddr, name: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot bind the {name} listener to {addr}: {e}"))
}

/// What is known of a request when it arrives, to count, time and log it when it is done.
pub(crate) struct Arrival {
    direction: trellis_model::telemetry::Direction,
    started: std::time::Instant,
    trace_id: trace::TraceId,
    /// A gRPC call: its outcome is its `grpc-status`, and the proxy's errors are gRPC's.
    grpc: bool,
    /// Method and path, kept only when access logs are on.
    line: Option<(http::Method, String)>,
    /// Its span, when it is recorded.
    span: Option<Box<otlp::Started>>,
}

impl Arrival {
    /// Also makes sure the request carries a `traceparent`.
    pub(crate) fn new<B>(
        shared: &Shared,
        direction: trellis_model::telemetry::Direction,
        req: &mut http::Request<B>,
    ) -> Self {
        let started = clock::now();
        let (trace_id, span) = match &shared.tracer {
            None => (trace::ensure(req.headers_mut()), None),
            Some(tracer) => tracer.start(direction, req, started),
        };
        let line = shared.settings.access_log.then(|| (req.method().clone(), req.uri().path().to_string()));
        // gRPC runs on HTTP/2 only: an HTTP/1.1 request's headers are not even looked at.
        let grpc = req.version() == http::Version::HTTP_2 && grpc::is_grpc(req.headers());
        Arrival { direction, started, trace_id, grpc, line, span }
    }
}

impl Shared {
    /// Counts and times a finished request, logs it when access logs are on, and turns a
    /// proxy error into its response. A gRPC call whose status comes in the trailers is
    /// counted when they pass (timed to its response headers, as every request is).
    pub(crate) fn complete(
        self: &Arc<Self>,
        mut arrival: Arrival,
        dest: &stack::Dest,
        result: Result<http::Response<Body>, errors::ProxyError>,
    ) -> http::Response<Body> {
        let now = clock::now();
        let seconds = now.saturating_duration_since(arrival.started).as_secs_f64();
        let mut error = None;
        let (resp, status, code) = match result {
            Ok(resp) => {
                let status = metrics::status_class(resp.status());
                let code = if arrival.grpc { grpc::status(resp.headers()) } else { None };
                if arrival.grpc && code.is_none() && resp.status() == http::StatusCode::OK {
                    // Its status comes in the trailers: counted (and its span ended) when they pass.
                    let (shared, to, direction, span) =
                        (self.clone(), dest.clone(), arrival.direction, arrival.span.take());
                    let tell: grpc::OnStatus = Box::new(move |code| {
                        shared.count(direction, &to, (status, Some(code)), seconds);
                        if let Some(started) = span {
                            shared.end_span(started, clock::now(), to, 200, Some(code), None);
                        }
                    });
                    let resp = resp.map(|body| http_body_util::BodyExt::boxed_unsync(grpc::Watched::new(body, tell)));
                    if arrival.line.is_some() {
                        self.log(&arrival, dest, &resp, seconds);
                    }
                    return resp;
                }
                (resp, status, code)
            }
            Err(e) if arrival.grpc => {
                let (status, code) = (e.status_label(), e.grpc_code());
                error = Some(e.kind());
                (e.into_grpc_response(), status, Some(code))
            }
            Err(e) => {
                let status = e.status_label();
                error = Some(e.kind());
                (e.into_response(), status, None)
            }
        };
        self.count(arrival.direction, dest, (status, code), seconds);
        if let Some(started) = arrival.span.take() {
            self.end_span(started, now, dest.clone(), resp.status().as_u16(), code, error);
        }
        if arrival.line.is_some() {
            self.log(&arrival, dest, &resp, seconds);
        }
        resp
    }

    #[cold]
    fn end_span(
        &self,
        started: Box<otlp::Started>,
        end: std::time::Instant,
        dest: stack::Dest,
        status: u16,
        grpc: Option<u8>,
        error: Option<&'static str>,
    ) {
        if let Some(tracer) = &self.tracer {
            tracer.finish(otlp::Span { started, end, dest, status, grpc, error }, &self.metrics.spans);
        }
    }

    #[inline(always)]
    fn count(
        &self,
        direction: trellis_model::telemetry::Direction,
        dest: &stack::Dest,
        status: metrics::Status,
        seconds: f64,
    ) {
        match dest {
            stack::Dest::Routed(route) => route.metrics.request(status, seconds),
            stack::Dest::Local(handle) => handle.request(status, seconds),
            _ => self.metrics.request(direction, dest.service(), dest.version(), dest.route(), status, seconds),
        }
    }

    #[cold]
    fn log(&self, arrival: &Arrival, dest: &stack::Dest, resp: &http::Response<Body>, seconds: f64) {
        if let Some((method, path)) = &arrival.line {
            tracing::info!(
                target: "access",
                direction = ?arrival.direction,
                method = %method,
                path,
                dst_service = dest.service(),
                dst_version = dest.version(),
                status = resp.status().as_u16(),
                duration_ms = seconds * 1000.0,
                trace_id = %arrival.trace_id,
            );
        }
    }
}
