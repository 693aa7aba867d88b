//! Router: the service a request names (`Host` or `:authority`), its first matching rule, and
//! a version picked by the rule's weights; `maxPendingRequests` of that service. The config is
//! loaded once here: the request runs on it to the end, whatever swaps meanwhile.

use super::{Dest, Failed, Routed, Target, always_ready, layer_of};
use crate::ReqBody;
use crate::Shared;
use crate::decide::split;
use crate::errors::ProxyError;
use futures::future::{Either, Ready, ready};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready as ready_poll};

#[derive(Clone)]
pub struct Router<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Router<()> {
    pub fn layer(shared: Arc<Shared>) -> Self {
        Router { inner: (), shared }
    }
}
layer_of!(Router { shared });

impl<S> Router<S> {
    /// Places the request, filling in `dest` as far as it gets.
    fn place(
        &self,
        req: &http::Request<ReqBody>,
        dest: &mut Dest,
    ) -> Result<(Arc<super::Route>, crate::gate::Pass), ProxyError> {
        let applied = self.shared.config.load_full();
        if applied.version.is_empty() {
            return Err(ProxyError::NoConfig);
        }
        let host = authority(req).ok_or(ProxyError::NoAuthority)?;
        let service = applied.service(host).ok_or_else(|| ProxyError::UnknownService(host.to_string()))?.clone();
        *dest = Dest::Service(service.clone());
        if service.protocol == trellis_model::config::Protocol::Tcp {
            return Err(ProxyError::TcpService(service.name.clone()));
        }
        let facts =
            split::RequestFacts { method: req.method().as_str(), path: req.uri().path(), headers: req.headers() };
        let (rule, picked) =
            split::select_rule(&applied, &service, &facts).ok_or_else(|| ProxyError::NoRoute(service.name.clone()))?;
        let total = split::total_weight(&picked.backends);
        let (backend, _) = split::pick_backend(&picked.backends, fastrand::u32(0..total.max(1)))
            .ok_or_else(|| ProxyError::NoRoute(service.name.clone()))?;
        let metrics = applied
            .handle(&service, rule, backend, &self.shared.metrics)
            .ok_or_else(|| ProxyError::NoRoute(service.name.clone()))?;
        let route = Arc::new(super::Route::new(applied, service, rule, backend, metrics));
        *dest = Dest::Routed(route.clone());
        let slot = self
            .shared
            .pending_slot(&route.service.name, route.service.traffic.limits.max_pending_requests)
            .ok_or_else(|| ProxyError::ServiceOverloaded(route.service.name.clone()))?;
        Ok((route, slot))
    }
}

impl<S> tower_service::Service<http::Request<ReqBody>> for Router<S>
where
    S: tower_service::Service<Target<ReqBody>, Response = http::Response<crate::Body>, Error = ProxyError>,
{
    type Response = Routed;
    type Error = Failed;
    type Future = Either<Ready<Result<Routed, Failed>>, Labelled<S::Future, crate::gate::Pass>>;
    always_ready!();

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let mut dest = Dest::Nowhere;
        match self.place(&req, &mut dest) {
            Ok((route, slot)) => {
                let (parts, body) = req.into_parts();
                let fut = self.inner.call(Target { parts, body, route });
                Either::Right(Labelled::new(fut, dest, slot))
            }
            Err(error) => Either::Left(ready(Err(Failed { error, dest }))),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer, labelled with where the request went; `hold` (the service's pending slot)
    /// is held until then.
    pub struct Labelled<F, H> {
        #[pin]
        fut: F,
        dest: Option<Dest>,
        hold: H,
    }
}

impl<F, H> Labelled<F, H> {
    pub fn new(fut: F, dest: Dest, hold: H) -> Self {
        Labelled { fut, dest: Some(dest), hold }
    }
}

impl<F: Future<Output = Result<http::Response<crate::Body>, ProxyError>>, H> Future for Labelled<F, H> {
    type Output = Result<Routed, Failed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready_poll!(this.fut.poll(cx));
        let dest = this.dest.take().unwrap_or_default();
        Poll::Ready(match result {
            Ok(resp) => Ok((resp, dest)),
            Err(error) => Err(Failed { error, dest }),
        })
    }
}

/// The service a request names: `Host` (HTTP/1.1) or `:authority` (HTTP/2), without a port.
fn authority<B>(req: &http::Request<B>) -> Option<&str> {
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

#[cfg(test)]
mod tests {
    use super::authority;

    fn named(host: Option<&str>, uri: &str) -> Option<String> {
        let mut req = http::Request::get(uri);
        if let Some(h) = host {
            req = req.header(http::header::HOST, h);
        }
        authority(&req.body(()).unwrap()).map(str::to_string)
    }

    #[test]
    fn the_service_is_the_hosts_first_label_without_a_port() {
        assert_eq!(named(Some("catalog"), "/"), Some("catalog".into()));
        assert_eq!(named(Some("catalog:8080"), "/"), Some("catalog".into()));
        assert_eq!(named(Some("catalog.default.svc.cluster.local"), "/"), Some("catalog".into()));
        assert_eq!(named(None, "http://inventory:80/x"), Some("inventory".into()), "HTTP/2 :authority");
        assert_eq!(named(Some("catalog"), "http://inventory/x"), Some("catalog".into()), "Host first");
        assert_eq!(named(None, "/"), None);
    }
}
