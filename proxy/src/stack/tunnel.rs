//! Tunnel: a connection upgrade (WebSocket and friends) goes to one endpoint as it is, and
//! is spliced through once both sides agree; it is neither buffered, mirrored nor retried.
//! On the inbound side the endpoint is the local application.

use super::{BoxFuture, Target, always_ready, layer_of};
use crate::ReqBody;
use crate::Shared;
use crate::client::Clients;
use crate::errors::ProxyError;
use futures::future::Either;
use std::sync::Arc;

#[derive(Clone)]
pub struct Tunnel<S> {
    inner: S,
    shared: Arc<Shared>,
    clients: Clients,
}

impl Tunnel<()> {
    pub fn layer(shared: Arc<Shared>, clients: Clients) -> Self {
        Tunnel { inner: (), shared, clients }
    }
}
layer_of!(Tunnel { shared, clients });

type Answer = Result<http::Response<crate::Body>, ProxyError>;

/// Outbound: to an endpoint of the routed version.
impl<S> tower_service::Service<Target<ReqBody>> for Tunnel<S>
where
    S: tower_service::Service<Target<ReqBody>, Response = http::Response<crate::Body>, Error = ProxyError>,
{
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = Either<S::Future, BoxFuture<Answer>>;
    always_ready!();

    fn call(&mut self, target: Target<ReqBody>) -> Self::Future {
        if !crate::upgrade::is_upgrade(&target.parts.headers) {
            return Either::Left(self.inner.call(target));
        }
        let route = &target.route;
        let lb = route.service.traffic.load_balancer;
        let Some((at, in_flight)) = self.shared.endpoints.pick(lb, route.endpoints(), route.version()) else {
            let (service, version) = (route.service.name.clone(), route.version().to_string());
            return Either::Right(Box::pin(async move { Err(ProxyError::NoEndpoints { service, version }) }));
        };
        let (addr, client) = (route.endpoints()[at].addr.clone(), self.clients.http1().clone());
        let req = http::Request::from_parts(target.parts, target.body);
        Either::Right(Box::pin(async move {
            let _in_flight = in_flight;
            crate::upgrade::forward(&client, req, &addr).await
        }))
    }
}

/// Inbound: to the local application.
impl<S> tower_service::Service<http::Request<ReqBody>> for Tunnel<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<crate::Body>, Error = ProxyError>,
{
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = Either<S::Future, BoxFuture<Answer>>;
    always_ready!();

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        if !crate::upgrade::is_upgrade(req.headers()) {
            return Either::Left(self.inner.call(req));
        }
        let (app, client) = (self.shared.settings.app_addr.to_string(), self.clients.http1().clone());
        Either::Right(Box::pin(async move { crate::upgrade::forward(&client, req, &app).await }))
    }
}
