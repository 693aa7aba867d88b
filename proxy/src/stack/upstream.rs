//! Upstream: the end of each stack, where a request leaves the proxy: to the endpoint an
//! attempt was given (mesh), or to the local application (inbound).

use super::{Attempt, BoxFuture, always_ready};
use crate::ReqBody;
use crate::Shared;
use crate::client::{Clients, Replay};
use crate::errors::ProxyError;
use std::sync::Arc;

/// To the endpoint the attempt was given.
#[derive(Clone)]
pub struct Upstream {
    clients: Clients,
}

impl Upstream {
    pub fn new(clients: Clients) -> Self {
        Upstream { clients }
    }
}

/// To the local application, over the protocol its Service declares.
#[derive(Clone)]
pub struct App {
    clients: Clients,
    shared: Arc<Shared>,
    /// The application's address, written out once.
    addr: Arc<str>,
}

impl App {
    pub fn new(shared: Arc<Shared>, clients: Clients) -> Self {
        let addr = shared.settings.app_addr.to_string().into();
        App { clients, shared, addr }
    }
}

type Answer = Result<http::Response<crate::Body>, ProxyError>;

impl tower_service::Service<Attempt> for Upstream {
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = BoxFuture<Answer>;
    always_ready!();

    fn call(&mut self, Attempt { parts, body, route, endpoint }: Attempt) -> Self::Future {
        let clients = self.clients.clone();
        Box::pin(async move {
            let service = &route.service;
            // Picked by the balance layer from this very list: none only in a stack assembled
            // without it.
            let Some(addr) = endpoint.and_then(|i| route.endpoints().get(i)).map(|e| &e.addr) else {
                let version = route.version().to_string();
                return Err(ProxyError::NoEndpoints { service: service.name.clone(), version });
            };
            let limit = service.traffic.limits.max_requests_per_connection;
            let sent = clients.send(service.protocol, &parts, body, addr, limit).await;
            sent.map_err(|source| ProxyError::upstream(addr, source))
        })
    }
}

impl tower_service::Service<http::Request<ReqBody>> for App {
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = BoxFuture<Answer>;
    always_ready!();

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let (clients, shared, app) = (self.clients.clone(), self.shared.clone(), self.addr.clone());
        Box::pin(async move {
            let s = &shared.settings;
            let protocol = shared.config.load().services.get(&s.service).map(|svc| svc.protocol).unwrap_or_default();
            let (parts, body) = req.into_parts();
            // Nothing is retried on the way to the application: its body streams.
            let body = Replay::read(body, &parts.headers, false).await?;
            let sent = clients.send(protocol, &parts, body, &app, 0).await;
            sent.map_err(|source| ProxyError::upstream(&app, source))
        })
    }
}
