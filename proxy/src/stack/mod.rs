//! The request path as tower layers, one per feature, assembled in one function per listener.
//!
//! A request enters as `http::Request`; the route layer places it ([`Target`]: the config it
//! started on, its service, rule and version); the retry layer sends it as [`Attempt`]s, each
//! to an endpoint the balance layer picks. Errors are typed ([`ProxyError`]) and become
//! responses in one place, the observe layer, which also counts and times every request with
//! the labels the route layer found ([`Dest`]). Futures are boxed only where a layer must wait
//! on something of its own (a body, a retry loop, the upstream); the others pass their inner
//! future through.

mod access;
mod balance;
mod fault;
mod mirror;
mod observe;
mod ratelimit;
mod replay;
mod retry;
mod route;
mod shed;
mod timeout;
mod tunnel;
mod upstream;

use crate::ReqBody;
use crate::Shared;
use crate::applied::Applied;
use crate::client::Clients;
use crate::errors::ProxyError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use tower_layer::Layer;
use trellis_model::telemetry::Direction;
use trellis_model::{RuleConfig, ServiceConfig};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// `stack![outer, ..., inner; service]`: the layers in the order a request meets them, each
/// wrapping those after it.
macro_rules! stack {
    ($outer:expr $(, $inner:expr)* ; $service:expr) => {
        $outer.layer(stack!($($inner),* ; $service))
    };
    (; $service:expr) => {
        $service
    };
}

/// The outbound listener's stack: the local application calls a service by name.
pub fn outbound(shared: Arc<Shared>) -> impl Listener {
    let (s, clients) = (&shared, Clients::new(Some(shared.clone())));
    stack![
        // Counts and times every request, and turns every error into its response: outermost.
        observe::Observe::layer(s.clone(), Direction::Outbound),
        // Refuses before any work is done when the proxy is at its limit.
        shed::Shed::layer(s.clone(), "outbound"),
        // Everything below depends on the rule and version; `maxPendingRequests` is per service.
        route::Router::layer(s.clone()),
        // Injected before any endpoint is touched, like a real upstream failure.
        fault::Fault::layer(s.clone()),
        // A tunnel is neither buffered, mirrored nor retried: one endpoint for as long as it lasts.
        tunnel::Tunnel::layer(s.clone(), clients.clone()),
        // A small body is kept whole so that it can be mirrored and retried.
        replay::Buffer::layer(),
        // A copy goes off the request path before the first attempt, never waited for.
        mirror::Mirror::layer(s.clone(), clients.clone()),
        // The rule's request timeout bounds every attempt and the pauses between them.
        timeout::Timeout::request(),
        // Attempts again, within the service's budget, what the rule says to retry.
        retry::Retry::layer(s.clone()),
        // Each attempt picks an endpoint (P2C over peak EWMA, ejected ones skipped) and reports
        // its outcome back to it.
        balance::Balance::layer(s.clone()),
        // Inside balance, so that an attempt that timed out counts against its endpoint.
        timeout::Timeout::per_try();
        upstream::Upstream::new(clients)
    ]
}

/// The inbound listener's stack: other proxies call this proxy's service, which it forwards to
/// the local application. The caller's [`Peer`](crate::transport::Peer) rides in the extensions.
pub fn inbound(shared: Arc<Shared>) -> impl Listener {
    let (s, clients) = (&shared, Clients::new(None));
    stack![
        // Counts and times every request, and turns every error into its response: outermost.
        observe::Observe::layer(s.clone(), Direction::Inbound),
        // Refuses before any work is done when the proxy is at its limit.
        shed::Shed::layer(s.clone(), "inbound"),
        // Who may call, decided before the application sees a byte.
        access::Access::layer(s.clone()),
        // How often: the service's and its rule's token buckets, for admitted callers only.
        ratelimit::RateLimit::layer(s.clone()),
        // A tunnel goes to the application as it is.
        tunnel::Tunnel::layer(s.clone(), clients.clone());
        upstream::App::new(s.clone(), clients)
    ]
}

/// A service that answers every request with a response: what a listener serves.
pub trait Listener:
    tower_service::Service<
        http::Request<ReqBody>,
        Response = http::Response<crate::Body>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Listener for S where
    S: tower_service::Service<
            http::Request<ReqBody>,
            Response = http::Response<crate::Body>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

pin_project_lite::pin_project! {
    /// An inner future with something held (a permit, a slot) until it completes.
    pub struct Hold<F, H> {
        #[pin]
        fut: F,
        hold: H,
    }
}

impl<F, H> Hold<F, H> {
    pub fn new(fut: F, hold: H) -> Self {
        Hold { fut, hold }
    }
}

impl<F: Future, H> Future for Hold<F, H> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        self.project().fut.poll(cx)
    }
}

/// Every layer is always ready: limits are enforced per request, with a clear answer.
macro_rules! always_ready {
    () => {
        fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
    };
}
pub(crate) use always_ready;

/// Layer `S` with `layer`, a value of the feature's own type holding its settings (`inner: ()`).
macro_rules! layer_of {
    ($name:ident { $($field:ident),* }) => {
        impl<S> tower_layer::Layer<S> for $name<()> {
            type Service = $name<S>;
            fn layer(&self, inner: S) -> $name<S> {
                $name { inner, $($field: self.$field.clone()),* }
            }
        }
    };
}
pub(crate) use layer_of;

/// Where a request went, for the metrics' labels: as far as it got, shared with the request
/// rather than copied.
#[derive(Default, Clone)]
pub enum Dest {
    #[default]
    Nowhere,
    /// The service is known; its rules placed the request nowhere.
    Service(Arc<ServiceConfig>),
    Routed(Arc<Route>),
    /// This proxy's own service and version (inbound), and where its requests are counted.
    Local(crate::metrics::Handle),
}

impl Dest {
    pub fn service(&self) -> &str {
        match self {
            Dest::Nowhere => "",
            Dest::Service(service) => &service.name,
            Dest::Routed(route) => &route.service.name,
            Dest::Local(handle) => handle.service(),
        }
    }

    pub fn version(&self) -> &str {
        match self {
            Dest::Nowhere | Dest::Service(_) => "",
            Dest::Routed(route) => route.version(),
            Dest::Local(handle) => handle.version(),
        }
    }

    /// The rule's label.
    pub fn route(&self) -> &str {
        match self {
            Dest::Routed(route) => route.metrics.route(),
            _ => "",
        }
    }
}

/// An error with the labels known when it happened.
pub struct Failed {
    pub error: ProxyError,
    pub dest: Dest,
}

impl From<ProxyError> for Failed {
    fn from(error: ProxyError) -> Self {
        Failed { error, dest: Dest::default() }
    }
}

/// A response and where the request went.
pub type Routed = (http::Response<crate::Body>, Dest);

/// A request the route layer placed.
pub struct Target<B> {
    pub parts: http::request::Parts,
    pub body: B,
    pub route: Arc<Route>,
}

/// The config a request started on (it finishes on it), and its service, rule and version.
pub struct Route {
    pub applied: Arc<Applied>,
    pub service: Arc<ServiceConfig>,
    /// Indexes into the service's rules and that rule's backends (of this very service, so
    /// always in range).
    rule: usize,
    backend: usize,
    /// Where the request and its attempts are counted (the rule's label included).
    pub metrics: crate::metrics::Handle,
    /// Attempts made, and the endpoint of the last (its index + 1): what a span reports.
    tries: AtomicU32,
    picked: AtomicU32,
}

impl Route {
    pub fn new(
        applied: Arc<Applied>,
        service: Arc<ServiceConfig>,
        rule: usize,
        backend: usize,
        metrics: crate::metrics::Handle,
    ) -> Self {
        Route { applied, service, rule, backend, metrics, tries: AtomicU32::new(0), picked: AtomicU32::new(0) }
    }

    pub fn rule(&self) -> &RuleConfig {
        &self.service.rules[self.rule]
    }

    /// The retry budget the rule draws on.
    pub fn budget(&self, shared: &crate::Shared) -> Option<&crate::SharedBudget> {
        self.applied.budget(&self.service, self.rule, shared)
    }

    /// The version the rule's weights picked.
    pub fn version(&self) -> &str {
        &self.rule().backends[self.backend].version
    }

    /// The endpoints of the service, every version.
    pub fn endpoints(&self) -> &[trellis_model::Endpoint] {
        self.applied.endpoints.get(&self.service.name).map(Vec::as_slice).unwrap_or_default()
    }

    /// An attempt went to the endpoint at `index` of [`Route::endpoints`].
    pub fn pick(&self, index: usize) {
        self.tries.fetch_add(1, Relaxed);
        self.picked.store(index as u32 + 1, Relaxed);
    }

    /// Attempts sent to an endpoint.
    pub fn tries(&self) -> u32 {
        self.tries.load(Relaxed)
    }

    /// The endpoint the last attempt went to.
    pub fn picked(&self) -> Option<&trellis_model::Endpoint> {
        let index = self.picked.load(Relaxed).checked_sub(1)?;
        self.endpoints().get(index as usize)
    }
}

/// Who called, as a label: a verified service, `unknown` or `plaintext`.
pub fn caller_label<B>(req: &http::Request<B>) -> String {
    access::caller(req).label().to_string()
}

/// One try of a request: shared parts and route, a body that can be sent again if buffered.
pub struct Attempt {
    pub parts: Arc<http::request::Parts>,
    pub body: crate::client::Replay,
    pub route: Arc<Route>,
    /// The endpoint (its index in the route's endpoints), once the balance layer picked it.
    pub endpoint: Option<usize>,
}
