//! Shed: a bound on the requests in flight through a listener; beyond it a request is
//! answered 503 (`overloaded`, `Retry-After`) at once, before any work is done for it.

use super::{Failed, Hold, Routed, always_ready, layer_of};
use crate::ReqBody;
use crate::Shared;
use crate::errors::ProxyError;
use futures::future::{Either, Ready, ready};
use std::sync::Arc;

#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    shared: Arc<Shared>,
    direction: &'static str,
}

impl Shed<()> {
    pub fn layer(shared: Arc<Shared>, direction: &'static str) -> Self {
        Shed { inner: (), shared, direction }
    }
}
layer_of!(Shed { shared, direction });

impl<S> tower_service::Service<http::Request<ReqBody>> for Shed<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = Routed, Error = Failed>,
{
    type Response = Routed;
    type Error = Failed;
    type Future = Either<Ready<Result<Routed, Failed>>, Hold<S::Future, crate::gate::Pass>>;
    always_ready!();

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        match self.shared.limit.try_pass() {
            // Held until the response head: a request counts while the proxy works on it.
            Some(pass) => Either::Right(Hold::new(self.inner.call(req), pass)),
            None => {
                self.shared.metrics.inc("trellis_proxy_shed_total", &[("direction", self.direction)]);
                Either::Left(ready(Err(ProxyError::Overloaded.into())))
            }
        }
    }
}
