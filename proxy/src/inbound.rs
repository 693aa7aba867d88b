//! The inbound path: requests from other proxies, forwarded to the local application over the
//! protocol its Service declares.

use crate::client::{Clients, wire_version};
use crate::errors::ProxyError;
use crate::outbound::set_target;
use crate::{Body, Shared};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use trellis_model::telemetry::Direction;

#[derive(Clone)]
pub struct Inbound {
    shared: Arc<Shared>,
    clients: Clients,
    app: String,
}

impl Inbound {
    pub fn new(shared: Arc<Shared>) -> Self {
        let app = shared.settings.app_addr.to_string();
        Inbound { shared, clients: Clients::default(), app }
    }

    pub async fn handle(self, mut req: Request<Incoming>) -> Response<Body> {
        let arrival = crate::Arrival::new(&self.shared, Direction::Inbound, &mut req);
        let s = &self.shared.settings;
        let Ok(_permit) = self.shared.limit.clone().try_acquire_owned() else {
            self.shared.metrics.inc("trellis_proxy_shed_total", &[("direction", "inbound")]);
            return ProxyError::Overloaded.into_response();
        };
        let protocol = self.shared.config.load().services.get(&s.service).map(|svc| svc.protocol).unwrap_or_default();
        let result = async {
            if crate::upgrade::is_upgrade(&req) {
                return crate::upgrade::forward(self.clients.http1(), req, &self.app).await;
            }
            let mut req = req.map(|b| b.boxed_unsync());
            set_target(&mut req, &self.app)?;
            *req.version_mut() = wire_version(protocol);
            let resp = self
                .clients
                .for_protocol(protocol)
                .request(req)
                .await
                .map_err(|source| ProxyError::Upstream { addr: self.app.clone(), source })?;
            Ok::<_, ProxyError>(crate::outbound::downstream(resp))
        }
        .await;
        // The route is the caller's decision; the inbound side only sees its own service.
        self.shared.complete(arrival, &s.service, &s.version, "", result)
    }
}
