//! Typed data-path errors, turned into responses in one place by matching the type.

use crate::Body;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// Tells the caller (and whoever reads its logs) that the proxy, not the application,
/// produced the response, and why.
pub const ERROR_HEADER: &str = "x-trellis-error";
/// On a 403 from access policy or a 429 from a rate limit: what denied it (`AccessPolicy/<name>`,
/// `Mesh/mtls=strict`, `TrafficPolicy/<name>`, ...).
pub const DENIED_BY_HEADER: &str = "x-trellis-denied-by";

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
        source: UpstreamError,
    },
    #[error("no response within {0} ms")]
    Timeout(u64),
    #[error("the proxy is at its limit of concurrent requests")]
    Overloaded,
    #[error("`{0}` is at its limit of pending requests (TrafficPolicy connectionLimits)")]
    ServiceOverloaded(String),
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The client's body broke off or was malformed (a bad chunk): its error, not an
    /// upstream's, so it never counts against an endpoint.
    #[error("malformed request body: {0}")]
    BadRequestBody(String),
    #[error("fault injected by policy")]
    FaultAbort(u16),
    #[error("access denied by {by}: {why}")]
    AccessDenied { by: String, why: String },
    #[error("`{0}` is a tcp service: reach it through its local listener (TRELLIS_TCP_UPSTREAMS), not over HTTP")]
    TcpService(String),
    #[error("rate limited by {by}: {why}; retry after {retry_after_s} s")]
    RateLimited { by: String, why: &'static str, retry_after_s: u64 },
}

impl ProxyError {
    fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoConfig
            | ProxyError::NoEndpoints { .. }
            | ProxyError::Overloaded
            | ProxyError::ServiceOverloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::NoAuthority | ProxyError::BadRequestBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::UnknownService(_) | ProxyError::NoRoute(_) => StatusCode::NOT_FOUND,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::FaultAbort(status) => StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            ProxyError::AccessDenied { .. } => StatusCode::FORBIDDEN,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::TcpService(_) => StatusCode::MISDIRECTED_REQUEST,
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
            ProxyError::Timeout(_) => "timeout",
            ProxyError::Overloaded => "overloaded",
            ProxyError::ServiceOverloaded(_) => "service-overloaded",
            ProxyError::BodyTooLarge(_) => "body-too-large",
            ProxyError::BadRequestBody(_) => "bad-request-body",
            ProxyError::FaultAbort(_) => "fault-injected",
            ProxyError::AccessDenied { .. } => "access-denied",
            ProxyError::RateLimited { .. } => "rate-limited",
            ProxyError::TcpService(_) => "tcp-service",
        }
    }

    /// What a request that failed so counts as in metrics: the kind of error, or `4xx` when
    /// the client caused it (the service did not fail it).
    pub fn status_label(&self) -> &'static str {
        match self {
            // The caller's doing, by policy: a 4xx, never the service's failure.
            ProxyError::BadRequestBody(_) | ProxyError::RateLimited { .. } => "4xx",
            other => other.kind(),
        }
    }

    /// The error for an upstream's failure to answer, or for the client's body failing
    /// while it was sent.
    pub fn upstream(addr: &str, source: UpstreamError) -> Self {
        if source.is_client_body() {
            return ProxyError::BadRequestBody(source.to_string());
        }
        ProxyError::Upstream { addr: addr.to_string(), source }
    }

    /// The code a gRPC client gets for this error.
    pub fn grpc_code(&self) -> u8 {
        use crate::grpc;
        match self {
            ProxyError::NoConfig
            | ProxyError::NoEndpoints { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::Overloaded
            | ProxyError::ServiceOverloaded(_) => grpc::UNAVAILABLE,
            ProxyError::Timeout(_) => grpc::DEADLINE_EXCEEDED,
            ProxyError::UnknownService(_) | ProxyError::NoRoute(_) | ProxyError::TcpService(_) => grpc::UNIMPLEMENTED,
            ProxyError::NoAuthority | ProxyError::BadRequestBody(_) => grpc::INTERNAL,
            ProxyError::BodyTooLarge(_) | ProxyError::RateLimited { .. } => grpc::RESOURCE_EXHAUSTED,
            ProxyError::FaultAbort(status) => grpc::from_http(*status),
            ProxyError::AccessDenied { .. } => grpc::PERMISSION_DENIED,
        }
    }

    /// What a gRPC client gets: a trailers-only response (HTTP 200, the code and the message
    /// in its headers), so that its library reports the proxy's error as a gRPC status
    /// rather than a protocol error.
    pub fn into_grpc_response(self) -> Response<Body> {
        tracing::debug!(error = %self, "gRPC request failed in the proxy");
        let mut resp = Response::new(text(Bytes::new()));
        let headers = resp.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
        headers.insert(
            crate::grpc::GRPC_STATUS,
            http::HeaderValue::from_static(crate::grpc::LABELS[self.grpc_code() as usize]),
        );
        if let Ok(message) = http::HeaderValue::from_str(&crate::grpc::encode_message(&self.to_string())) {
            headers.insert("grpc-message", message);
        }
        self.tag(resp)
    }

    pub fn into_response(self) -> Response<Body> {
        tracing::debug!(error = %self, "request failed in the proxy");
        let mut resp = Response::new(text(format!("{self}\n")));
        *resp.status_mut() = self.status();
        self.tag(resp)
    }

    /// The headers that say the proxy answered, and why, on either kind of response.
    fn tag(self, mut resp: Response<Body>) -> Response<Body> {
        resp.headers_mut().insert(ERROR_HEADER, http::HeaderValue::from_static(self.kind()));
        if let ProxyError::AccessDenied { by, .. } | ProxyError::RateLimited { by, .. } = &self
            && let Ok(v) = http::HeaderValue::from_str(by)
        {
            resp.headers_mut().insert(DENIED_BY_HEADER, v);
        }
        let retry_after = match &self {
            ProxyError::Overloaded | ProxyError::ServiceOverloaded(_) => Some(1),
            ProxyError::RateLimited { retry_after_s, .. } => Some(*retry_after_s),
            _ => None,
        };
        if let Some(s) = retry_after {
            resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(s));
        }
        resp
    }
}

/// A small local body.
pub fn text(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed_unsync()
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A client's request body that broke, from whichever server read it (HTTP/1.1 or HTTP/2).
/// A type of its own, not a [`BoxError`]: rustc loses a boxed error's `'static` inside the
/// futures that carry a body and then cannot prove them `Send`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct BodyError(BoxError);

impl From<hyper::Error> for BodyError {
    fn from(e: hyper::Error) -> Self {
        BodyError(e.into())
    }
}

impl From<BoxError> for BodyError {
    fn from(e: BoxError) -> Self {
        BodyError(e)
    }
}

/// Why an upstream gave no response.
#[derive(Debug)]
pub struct UpstreamError {
    cause: Cause,
    source: BoxError,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cause {
    /// The connection could not be made.
    Connect,
    /// The exchange with the upstream failed.
    Exchange,
    /// The client's request body failed while it was being sent.
    ClientBody,
}

impl UpstreamError {
    pub fn client_body(source: BoxError) -> Self {
        UpstreamError { cause: Cause::ClientBody, source }
    }

    pub fn connect(source: BoxError) -> Self {
        UpstreamError { cause: Cause::Connect, source }
    }

    pub fn other(source: BoxError) -> Self {
        UpstreamError { cause: Cause::Exchange, source }
    }

    pub fn io(e: std::io::Error) -> Self {
        Self::other(Box::new(e))
    }

    pub fn closed() -> Self {
        Self::other("the upstream closed the connection before the response was complete".into())
    }

    /// The connection could not be made: nothing reached the upstream.
    pub fn is_connect(&self) -> bool {
        self.cause == Cause::Connect
    }

    /// The client's body failed, not the upstream.
    pub fn is_client_body(&self) -> bool {
        self.cause == Cause::ClientBody
    }
}

impl From<hyper_util::client::legacy::Error> for UpstreamError {
    fn from(e: hyper_util::client::legacy::Error) -> Self {
        // The legacy client's error hides its cause in `source`; keep it in the message.
        let message = match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        };
        let cause = if e.is_connect() { Cause::Connect } else { Cause::Exchange };
        UpstreamError { cause, source: message.into() }
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}
