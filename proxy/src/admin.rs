//! The admin listener: `/metrics`, `/ready`, `/live`, `/config`.

use crate::errors::text;
use crate::{Body, Shared};
use http::{Request, Response, StatusCode, header};
use std::sync::Arc;

/// The admin listener's service.
#[derive(Clone)]
pub struct Admin(pub Arc<Shared>);

impl tower_service::Service<Request<crate::ReqBody>> for Admin {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = crate::stack::BoxFuture<Result<Response<Body>, std::convert::Infallible>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<crate::ReqBody>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move { Ok(handle(&shared, req.uri().path())) })
    }
}

/// What the proxy still waits for before it can serve (`/ready`, systemd's `READY=1`): a
/// config (before it, nothing can be routed), and a certificate when it is meant to have one
/// (strict peers refuse it without).
pub fn waiting_for(shared: &Shared) -> Option<&'static str> {
    if shared.config.load().version.is_empty() {
        return Some("configuration");
    }
    if shared.settings.has_identity() && shared.tls.load().is_none() {
        return Some("a certificate from the control plane");
    }
    None
}

fn handle(shared: &Shared, path: &str) -> Response<Body> {
    let config = shared.config.load();
    let (status, content_type, body) = match path {
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            shared.metrics.render(&shared.settings.proxy_id, &config.version),
        ),
        "/live" => (StatusCode::OK, "text/plain", "live\n".to_string()),
        "/ready" => match waiting_for(shared) {
            Some(what) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("waiting for {what}\n")),
            None => (StatusCode::OK, "text/plain", "ready\n".to_string()),
        },
        "/config" => {
            (StatusCode::OK, "application/json", serde_json::to_string_pretty(&config.config).unwrap_or_default())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /ready, /live, /config\n".into()),
    };
    let mut resp = Response::new(text(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    resp
}
