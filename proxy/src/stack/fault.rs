//! Fault: the rule's injected delay and abort, each for a percentage of requests, before any
//! endpoint is touched, as a real upstream failure would look.

use super::{BoxFuture, Target, always_ready, layer_of};
use crate::Shared;
use crate::errors::ProxyError;
use futures::future::Either;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct Fault<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Fault<()> {
    pub fn layer(shared: Arc<Shared>) -> Self {
        Fault { inner: (), shared }
    }
}
layer_of!(Fault { shared });

impl<S, B> tower_service::Service<Target<B>> for Fault<S>
where
    S: tower_service::Service<Target<B>, Response = http::Response<crate::Body>, Error = ProxyError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = Either<S::Future, BoxFuture<Result<Self::Response, ProxyError>>>;
    always_ready!();

    fn call(&mut self, target: Target<B>) -> Self::Future {
        let Some(fault) = &target.route.rule().fault else { return Either::Left(self.inner.call(target)) };
        let delay = fault.delay.as_ref().filter(|d| fastrand::f64() * 100.0 < d.percent).map(|d| d.duration_ms);
        let abort = fault.abort.as_ref().filter(|a| fastrand::f64() * 100.0 < a.percent).map(|a| a.status);
        let (shared, mut inner) = (self.shared.clone(), self.inner.clone());
        Either::Right(Box::pin(async move {
            let metric = |kind| {
                let service = &target.route.service.name;
                shared.metrics.inc("trellis_proxy_faults_total", &[("dst_service", service), ("kind", kind)]);
            };
            if let Some(ms) = delay {
                metric("delay");
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if let Some(status) = abort {
                metric("abort");
                return Err(ProxyError::FaultAbort(status));
            }
            inner.call(target).await
        }))
    }
}
