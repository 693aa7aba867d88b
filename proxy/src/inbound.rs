//! The inbound path: requests from other proxies, forwarded to the local application.

use crate::metrics::{Key, status_class};
use crate::outbound::{HttpClient, client, forward};
use crate::{Body, Shared};
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;

#[derive(Clone)]
pub struct Inbound {
    shared: Arc<Shared>,
    client: HttpClient,
    app: String,
}

impl Inbound {
    pub fn new(shared: Arc<Shared>) -> Self {
        let app = shared.settings.app_addr.to_string();
        Inbound { shared, client: client(), app }
    }

    pub async fn handle(self, req: Request<Incoming>) -> Response<Body> {
        let result = forward(&self.client, req, &self.app).await;
        let status = match &result {
            Ok(resp) => status_class(resp.status()),
            Err(e) => e.kind().to_string(),
        };
        let s = &self.shared.settings;
        self.shared.metrics.record(Key {
            direction: "inbound",
            service: s.service.clone(),
            version: s.version.clone(),
            status,
        });
        result.unwrap_or_else(|e| e.into_response())
    }
}
