//! Mirror: a percentage of buffered requests is copied to the rule's mirror version, off the
//! request path; the copy's response is read and dropped. A bounded number of copies may be in
//! flight, beyond which copies are skipped, so mirroring never queues or slows the original.

use super::{Target, always_ready, layer_of};
use crate::Shared;
use crate::client::{Clients, Replay};
use crate::errors::ProxyError;
use http_body_util::BodyExt;
use std::sync::Arc;

#[derive(Clone)]
pub struct Mirror<S> {
    inner: S,
    shared: Arc<Shared>,
    clients: Clients,
}

impl Mirror<()> {
    pub fn layer(shared: Arc<Shared>, clients: Clients) -> Self {
        Mirror { inner: (), shared, clients }
    }
}
layer_of!(Mirror { shared, clients });

impl<S> Mirror<S> {
    fn copy(&self, target: &Target<Replay>) {
        let Some(m) = &target.route.rule().mirror else { return };
        let (Replay::Buffered(bytes), true) = (&target.body, fastrand::f64() * 100.0 < m.percent) else { return };
        let Some(permit) = self.shared.mirror_limit.try_pass() else { return };
        let service = &target.route.service;
        let lb = service.traffic.load_balancer;
        let endpoints = target.route.endpoints();
        let Some((at, in_flight)) = self.shared.endpoints.pick(lb, endpoints, &m.version) else { return };
        let (clients, parts, addr) = (self.clients.clone(), target.parts.clone(), endpoints[at].addr.clone());
        let (protocol, body) = (service.protocol, Replay::Buffered(bytes.clone()));
        self.shared
            .metrics
            .inc("trellis_proxy_mirrored_total", &[("dst_service", &service.name), ("dst_version", &m.version)]);
        tokio::spawn(async move {
            let _hold = (permit, in_flight);
            if let Ok(resp) = clients.send(protocol, &parts, body, &addr, 0).await {
                let _ = resp.into_body().collect().await;
            }
        });
    }
}

impl<S> tower_service::Service<Target<Replay>> for Mirror<S>
where
    S: tower_service::Service<Target<Replay>, Response = http::Response<crate::Body>, Error = ProxyError>,
{
    type Response = http::Response<crate::Body>;
    type Error = ProxyError;
    type Future = S::Future;
    always_ready!();

    fn call(&mut self, target: Target<Replay>) -> Self::Future {
        self.copy(&target);
        self.inner.call(target)
    }
}
