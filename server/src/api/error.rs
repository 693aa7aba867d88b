//! Errors as clients of the API and of the fleet protocol see them: RFC 9457 problem details
//! ([`Problem`]) with a stable code and a clean message, with `From` conversions so handlers
//! use `?`. What caused an internal error is
//! never sent; [`log_errors`] logs it, once, for every request, inside the request's span.

use super::openapi::Problem;
use axum::extract::{FromRequest, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

#[derive(Debug)]
pub enum ApiError {
    NotFound(String),
    Unauthorized(String),
    Forbidden(String),
    TooMany(String),
    /// The request is understood but the resource's state refuses it.
    Conflict(String),
    Invalid {
        message: String,
        detail: String,
    },
    /// Not now, but soon (no leader during a takeover): the client retries.
    Unavailable(String),
    /// The leader's own answer to a request this replica passed on to it, as it was.
    Relayed(http::StatusCode, Bytes),
    /// Nothing the client can fix; `cause` is logged, never sent.
    Internal {
        message: String,
        cause: String,
    },
}

impl ApiError {
    pub fn invalid(message: &str, detail: impl Into<String>) -> Self {
        ApiError::Invalid { message: message.to_string(), detail: detail.into() }
    }

    /// The HTTP status and the message a client sees.
    pub fn status_and_message(self) -> (http::StatusCode, String) {
        let (status, _, message, _) = self.parts();
        (status, message)
    }

    fn parts(self) -> (http::StatusCode, &'static str, String, Option<String>) {
        match self {
            ApiError::NotFound(m) => (http::StatusCode::NOT_FOUND, "not_found", m, None),
            ApiError::Unauthorized(m) => (http::StatusCode::UNAUTHORIZED, "unauthorized", m, None),
            ApiError::Forbidden(m) => (http::StatusCode::FORBIDDEN, "forbidden", m, None),
            ApiError::TooMany(m) => (http::StatusCode::TOO_MANY_REQUESTS, "rate_limited", m, None),
            ApiError::Conflict(m) => (http::StatusCode::CONFLICT, "conflict", m, None),
            ApiError::Invalid { message, detail } => {
                (http::StatusCode::BAD_REQUEST, "invalid_request", message, Some(detail))
            }
            ApiError::Unavailable(m) => (http::StatusCode::SERVICE_UNAVAILABLE, "unavailable", m, None),
            ApiError::Relayed(status, body) => {
                // The leader's own message, when it sent one in the API's error shape.
                let message = serde_json::from_slice::<Problem>(&body)
                    .map(|p| p.detail)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
                (status, "relayed", message, None)
            }
            ApiError::Internal { message, .. } => (http::StatusCode::SERVICE_UNAVAILABLE, "unavailable", message, None),
        }
    }
}

/// What a user reads: the message, never the cause.
impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::NotFound(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::TooMany(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m) => f.write_str(m),
            ApiError::Relayed(status, body) => write!(f, "{status}: {}", String::from_utf8_lossy(body)),
            ApiError::Invalid { message, detail } => write!(f, "{message}: {detail}"),
            ApiError::Internal { message, .. } => f.write_str(message),
        }
    }
}

/// RFC 9457's media type for problem details.
pub const PROBLEM: &str = "application/problem+json";

/// The cause of an internal error, riding in the response's extensions to [`log_errors`].
#[derive(Clone)]
struct Cause(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Relayed(status, body) = self {
            return (status, [(http::header::CONTENT_TYPE, PROBLEM)], body).into_response();
        }
        let cause = match &self {
            ApiError::Internal { cause, .. } => Some(Cause(cause.clone())),
            _ => None,
        };
        let (status, code, message, detail) = self.parts();
        let detail = match detail {
            Some(detail) => format!("{message}: {detail}"),
            None => message,
        };
        let body = serde_json::to_vec(&Problem::new(status, code, detail)).unwrap_or_default();
        let mut resp = (status, [(http::header::CONTENT_TYPE, PROBLEM)], body).into_response();
        if let Some(cause) = cause {
            resp.extensions_mut().insert(cause);
        }
        resp
    }
}

/// Logs what made a request fail inside the server, with the request it failed.
pub async fn log_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let resp = next.run(req).await;
    if let Some(Cause(cause)) = resp.extensions().get::<Cause>() {
        tracing::error!(%method, %path, status = resp.status().as_u16(), %cause, "request failed in the server");
    }
    resp
}

/// Headers on every answer of the API and the dashboard: no site may frame it (its buttons
/// act on rollouts), no content type is sniffed, and no address leaks to other sites in a
/// referrer. The page's Content-Security-Policy carries a per-page nonce and is set where the
/// page is rendered (`trellis_web::app::shell`).
pub async fn security_headers(req: Request, next: Next) -> Response {
    use axum::http::{HeaderValue, header};
    let mut resp = next.run(req).await;
    let headers = resp.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    resp
}

/// Served over HTTPS: browsers that have seen it once never ask for the dashboard in
/// plaintext again (a year, as the HSTS preload list expects).
pub async fn strict_transport(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    resp.headers_mut()
        .insert(http::header::STRICT_TRANSPORT_SECURITY, http::HeaderValue::from_static("max-age=31536000"));
    resp
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        let message = "the database is unavailable; try again shortly".into();
        ApiError::Internal { message, cause: e.to_string() }
    }
}

impl From<crate::rollouts::ActError> for ApiError {
    fn from(e: crate::rollouts::ActError) -> Self {
        use crate::rollouts::ActError;
        match e {
            ActError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ActError::Refused(r) => ApiError::Conflict(r.to_string()),
            ActError::Store(e) => e.into(),
            ActError::NoLeader => ApiError::Unavailable(e.to_string()),
        }
    }
}

impl From<crate::auth::Denied> for ApiError {
    fn from(denied: crate::auth::Denied) -> Self {
        use crate::auth::Denied;
        match denied {
            Denied::Forbidden(_) => ApiError::Forbidden(denied.to_string()),
            Denied::RateLimited(_) => ApiError::TooMany(denied.to_string()),
            Denied::Unavailable => ApiError::Unavailable(denied.to_string()),
            _ => ApiError::Unauthorized(denied.to_string()),
        }
    }
}

impl From<crate::fleet::FleetError> for ApiError {
    fn from(e: crate::fleet::FleetError) -> Self {
        use crate::fleet::FleetError;
        match e {
            FleetError::UnknownProxy(_) => ApiError::NotFound(e.to_string()),
            FleetError::InvalidAck(_) => ApiError::invalid("invalid ack", e.to_string()),
        }
    }
}

/// A JSON body whose rejection is an [`ApiError`] like any other (400, saying what was
/// expected and why it is not that). The content type is not insisted on: proxies and scripts
/// send JSON without always saying so.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let what = std::any::type_name::<T>().rsplit("::").next().unwrap_or("body");
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::invalid(&format!("unreadable {what}"), e.body_text()))?;
        serde_json::from_slice(&bytes)
            .map(ApiJson)
            .map_err(|e| ApiError::invalid(&format!("invalid {what}"), e.to_string()))
    }
}

impl From<crate::gitops::revert::RevertError> for ApiError {
    fn from(e: crate::gitops::revert::RevertError) -> Self {
        use crate::gitops::revert::RevertError;
        match e {
            RevertError::Refused(m) => ApiError::Conflict(m),
            RevertError::Failed(cause) => {
                let message = "the revert could not be committed to the policy repository".into();
                ApiError::Internal { message, cause }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(e: ApiError) -> (u16, serde_json::Value, bool) {
        let resp = e.into_response();
        let (status, logged) = (resp.status().as_u16(), resp.extensions().get::<Cause>().is_some());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap(), logged)
    }

    #[tokio::test]
    async fn a_cause_is_logged_and_never_sent() {
        let secret = "connection to 10.0.0.9:5432 refused (password for trellis_admin)";
        let (status, body, logged) = answer(crate::store::StoreError::Unsupported(secret.into()).into()).await;
        assert_eq!((status, logged), (503, true));
        assert_eq!((body["code"].as_str(), body["status"].as_u64()), (Some("unavailable"), Some(503)));
        assert_eq!(body["type"], "urn:trellis:problem:unavailable");
        assert!(!body.to_string().contains("10.0.0.9"), "{body}");
    }

    #[tokio::test]
    async fn each_refusal_has_one_status_wherever_it_happens() {
        use crate::auth::Denied;
        for (denied, status) in [
            (Denied::RateLimited(30), 429),
            (Denied::Forbidden("vic".into()), 403),
            (Denied::BadToken, 401),
            (Denied::Csrf, 401),
        ] {
            assert_eq!(answer(denied.into()).await.0, status);
        }
        let unknown = crate::rollouts::ActError::NotFound("canary".into());
        assert_eq!(answer(unknown.into()).await.0, 404);
    }

    #[tokio::test]
    async fn a_body_that_is_not_the_json_expected_says_what_was_expected() {
        let req = Request::builder().body(axum::body::Body::from("not json")).unwrap();
        let Err(e) = ApiJson::<trellis_model::fleet::Ack>::from_request(req, &()).await else { panic!("parsed") };
        let (status, body, logged) = answer(e).await;
        assert_eq!((status, logged), (400, false));
        assert!(body["detail"].as_str().unwrap().starts_with("invalid Ack: "), "{body}");
        assert_eq!((body["code"].as_str(), body["title"].as_str()), (Some("invalid_request"), Some("Bad Request")));
    }
}
