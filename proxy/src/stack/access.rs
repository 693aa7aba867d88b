//! Access: the mesh's mTLS mode and the service's access policy, applied to the caller's
//! verified identity (its [`Peer`], in the request's extensions) before the application sees a
//! byte. A denial is answered 403 naming what denied it, and counted by caller. Inbound
//! requests are labelled with this proxy's own service: the route was the caller's decision.

use super::route::Labelled;
use super::{Dest, Failed, Routed, always_ready, layer_of};
use crate::ReqBody;
use crate::Shared;
use crate::decide::access::{Caller, Decision};
use crate::errors::ProxyError;
use crate::transport::Peer;
use futures::future::{Either, Ready, ready};
use std::sync::Arc;
use trellis_model::telemetry::Direction;

#[derive(Clone)]
pub struct Access<S> {
    inner: S,
    shared: Arc<Shared>,
    /// Where every request goes: this proxy's service and version.
    local: Dest,
}

impl Access<()> {
    pub fn layer(shared: Arc<Shared>) -> Self {
        let s = &shared.settings;
        let local = Dest::Local(shared.metrics.handle(Direction::Inbound, &s.service, &s.version, ""));
        Access { inner: (), shared, local }
    }
}
layer_of!(Access { shared, local });

impl<S> Access<S> {
    fn admit(&self, req: &http::Request<ReqBody>) -> Result<(), ProxyError> {
        let config = self.shared.config.load();
        let Some(service) = config.services.get(&self.shared.settings.service) else { return Ok(()) };
        let caller = caller(req);
        let enforcing = self.shared.settings.has_identity();
        let (method, path) = (req.method().as_str(), req.uri().path());
        match crate::decide::access::decide(&config.mesh, &service.access, enforcing, &caller, method, path) {
            Decision::Allow => Ok(()),
            Decision::Deny { by, why } => {
                self.shared.metrics.denied(caller.label(), &by);
                Err(ProxyError::AccessDenied { by, why })
            }
        }
    }
}

/// Who is calling, as the connection proved it (its [`Peer`] rides in the extensions).
pub(super) fn caller<B>(req: &http::Request<B>) -> Caller<'_> {
    req.extensions().get::<Peer>().map_or(Caller::Plaintext, crate::inbound::caller)
}

impl<S> tower_service::Service<http::Request<ReqBody>> for Access<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<crate::Body>, Error = ProxyError>,
{
    type Response = Routed;
    type Error = Failed;
    type Future = Either<Ready<Result<Routed, Failed>>, Labelled<S::Future, ()>>;
    always_ready!();

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let dest = self.local.clone();
        match self.admit(&req) {
            Ok(()) => Either::Right(Labelled::new(self.inner.call(req), dest, ())),
            Err(error) => Either::Left(ready(Err(Failed { error, dest }))),
        }
    }
}
