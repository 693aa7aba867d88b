//! Typed data-path errors, turned into responses in one place by matching the type.

use crate::Body;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// Tells the caller (and whoever reads its logs) that the proxy, not the application,
/// produced the response, and why.
pub const ERROR_HEADER: &str = "x-trellis-error";

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no configuration received from the control plane yet")]
    NoConfig,
    #[error("request has no Host or authority naming a service")]
    NoAuthority,
    #[error("unknown service `{0}`")]
    UnknownService(String),
    #[error("no route of `{0}` matches this request")]
    NoRoute(String),
    #[error("no endpoints for {service}/{version}")]
    NoEndpoints { service: String, version: String },
    #[error("upstream {addr} failed: {source}")]
    Upstream {
        addr: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
}

impl ProxyError {
    fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoConfig | ProxyError::NoEndpoints { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoAuthority => StatusCode::BAD_REQUEST,
            ProxyError::UnknownService(_) | ProxyError::NoRoute(_) => StatusCode::NOT_FOUND,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// A short stable token for the error header and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoConfig => "no-config",
            ProxyError::NoAuthority => "no-authority",
            ProxyError::UnknownService(_) => "unknown-service",
            ProxyError::NoRoute(_) => "no-route",
            ProxyError::NoEndpoints { .. } => "no-endpoints",
            ProxyError::Upstream { .. } => "upstream-failed",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        tracing::debug!(error = %self, "request failed in the proxy");
        let mut resp = Response::new(text(format!("{self}\n")));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(ERROR_HEADER, http::HeaderValue::from_static(self.kind()));
        resp
    }
}

/// A small local body.
pub fn text(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed_unsync()
}
