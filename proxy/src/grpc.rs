//! gRPC as the proxy sees it. A request is gRPC by its content type, and its outcome is the
//! `grpc-status` of the response's trailers (or of its headers, in a trailers-only response),
//! not the HTTP status, which is 200 either way. Here: which codes are the service's failures,
//! the code a gRPC client gets for an error the proxy made, and a response body that tells
//! its status when the trailers pass.

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

#[cfg(test)]
pub const OK: u8 = 0;
pub const CANCELLED: u8 = 1;
pub const UNKNOWN: u8 = 2;
pub const DEADLINE_EXCEEDED: u8 = 4;
pub const PERMISSION_DENIED: u8 = 7;
pub const RESOURCE_EXHAUSTED: u8 = 8;
pub const UNIMPLEMENTED: u8 = 12;
pub const INTERNAL: u8 = 13;
pub const UNAVAILABLE: u8 = 14;
pub const DATA_LOSS: u8 = 15;
pub const UNAUTHENTICATED: u8 = 16;

/// Header names made once: a lookup by `&str` parses the name every time (5 lookups per call
/// cost 1.7k instructions before).
pub const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// The codes as label values, so that counting one allocates nothing.
pub const LABELS: [&str; 17] =
    ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"];

/// `application/grpc`, with or without a codec (`+proto`) or parameters; not gRPC-Web, whose
/// status travels in the body.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    ct.strip_prefix("application/grpc").is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
}

/// The status in a trailers block, or in a trailers-only response's headers. A value that is
/// not a known code is UNKNOWN, as the gRPC spec has clients read it.
pub fn status(headers: &HeaderMap) -> Option<u8> {
    let value = headers.get(&GRPC_STATUS)?;
    Some(value.to_str().ok().and_then(|v| v.parse::<u8>().ok()).filter(|c| *c <= 16).unwrap_or(UNKNOWN))
}

/// The service failed, not the caller: as a 5xx against a 4xx in HTTP. A request the caller
/// cancelled, or that it got wrong (INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED...), or that
/// a limit refused (RESOURCE_EXHAUSTED, like a 429), is not the service's failure.
pub fn is_failure(code: u8) -> bool {
    matches!(code, UNKNOWN | DEADLINE_EXCEEDED | UNIMPLEMENTED | INTERNAL | UNAVAILABLE | DATA_LOSS)
}

/// The code for an HTTP status, as gRPC's "HTTP to gRPC status code mapping" gives it.
pub fn from_http(status: u16) -> u8 {
    match status {
        400 => INTERNAL,
        401 => UNAUTHENTICATED,
        403 => PERMISSION_DENIED,
        404 => UNIMPLEMENTED,
        429 | 502 | 503 | 504 => UNAVAILABLE,
        _ => UNKNOWN,
    }
}

/// `grpc-message` is percent-encoded: printable ASCII but `%` as it is, the rest as `%XX`.
pub fn encode_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The status of a trailers-only response (in its headers) from a service that speaks gRPC:
/// the only kind a proxy can act on before the body streams (retries). Other services'
/// responses are not looked at.
pub fn early_status<B>(service: &trellis_model::ServiceConfig, resp: &http::Response<B>) -> Option<u8> {
    (service.protocol == trellis_model::config::Protocol::Grpc).then(|| status(resp.headers())).flatten()
}

/// Whether a response of a gRPC service will carry the call's status in its trailers: a 200
/// without one in its headers.
pub fn in_trailers<B>(service: &trellis_model::ServiceConfig, resp: &http::Response<B>) -> bool {
    service.protocol == trellis_model::config::Protocol::Grpc
        && resp.status() == http::StatusCode::OK
        && !resp.headers().contains_key(&GRPC_STATUS)
}

/// `grpc-timeout` (RFC-like "1-8 digits, then H, M, S, m, u or n") in milliseconds, rounded
/// up: the caller's deadline for the call. `None` when absent or malformed.
pub fn timeout_ms(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(&GRPC_TIMEOUT)?.as_bytes();
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let ns_per = match unit {
        b"H" => 3_600_000_000_000,
        b"M" => 60_000_000_000,
        b"S" => 1_000_000_000,
        b"m" => 1_000_000,
        b"u" => 1_000,
        b"n" => 1,
        _ => return None,
    };
    Some((n * ns_per).div_ceil(1_000_000))
}

/// What a watched body tells when the call's status is known.
pub type OnStatus = Box<dyn FnOnce(u8) + Send>;

pin_project_lite::pin_project! {
    /// A gRPC response body that tells `done` the call's status when the trailers pass: the
    /// code in them; UNKNOWN when the body ends without one; UNAVAILABLE when it breaks off;
    /// CANCELLED when it is dropped before its end (the client went away).
    pub struct Watched<B> {
        #[pin]
        inner: B,
        done: Option<OnStatus>,
    }

    impl<B> PinnedDrop for Watched<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(done) = this.project().done.take() {
                done(CANCELLED);
            }
        }
    }
}

impl<B> Watched<B> {
    pub fn new(inner: B, done: OnStatus) -> Self {
        Watched { inner, done: Some(done) }
    }
}

impl<B: Body<Data = Bytes>> Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(frame)) => frame.trailers_ref().map(|t| status(t).unwrap_or(UNKNOWN)),
            Some(Err(_)) => Some(UNAVAILABLE),
            None => Some(UNKNOWN),
        };
        if let Some(code) = code
            && let Some(done) = this.done.take()
        {
            done(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), http::HeaderValue::from_static(v))).collect()
    }

    #[test]
    fn grpc_is_known_by_its_content_type() {
        assert!(is_grpc(&headers(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&headers(&[("content-type", "application/grpc+proto")])));
        assert!(is_grpc(&headers(&[("content-type", "application/grpc;charset=utf-8")])));
        assert!(!is_grpc(&headers(&[("content-type", "application/grpc-web")])));
        assert!(!is_grpc(&headers(&[("content-type", "application/json")])));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn a_status_is_read_and_a_strange_one_is_unknown() {
        assert_eq!(status(&headers(&[("grpc-status", "14")])), Some(UNAVAILABLE));
        assert_eq!(status(&headers(&[("grpc-status", "0")])), Some(OK));
        assert_eq!(status(&headers(&[("grpc-status", "99")])), Some(UNKNOWN));
        assert_eq!(status(&headers(&[("grpc-status", "x")])), Some(UNKNOWN));
        assert_eq!(status(&HeaderMap::new()), None);
    }

    #[test]
    fn failures_are_the_services_own() {
        let failures: Vec<u8> = (0..=16).filter(|c| is_failure(*c)).collect();
        assert_eq!(failures, [UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS]);
        assert_eq!((from_http(503), from_http(404), from_http(403), from_http(418)), (14, 12, 7, 2));
    }

    #[test]
    fn grpc_timeout_is_read_in_every_unit_and_rounded_up() {
        let t = |v: &'static str| timeout_ms(&headers(&[("grpc-timeout", v)]));
        assert_eq!((t("1S"), t("250m"), t("2M"), t("1H")), (Some(1_000), Some(250), Some(120_000), Some(3_600_000)));
        assert_eq!((t("1500u"), t("1n"), t("0m")), (Some(2), Some(1), Some(0)));
        assert_eq!((t("123456789S"), t("10"), t("S"), t("1s"), t("-1S")), (None, None, None, None, None));
    }

    #[test]
    fn messages_are_percent_encoded() {
        assert_eq!(encode_message("no endpoints for inv/v1"), "no endpoints for inv/v1");
        assert_eq!(encode_message("50% → down\n"), "50%25 %E2%86%92 down%0A");
    }

    async fn watched(frames: Vec<Result<Frame<Bytes>, &'static str>>) -> (Vec<u8>, Result<(), &'static str>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let body = StreamBody::new(futures::stream::iter(frames));
        let mut body = Watched::new(body, Box::new(move |code| record.lock().unwrap().push(code)));
        let mut outcome = Ok(());
        while let Some(frame) = body.frame().await {
            if let Err(e) = frame {
                outcome = Err(e);
                break;
            }
        }
        drop(body);
        let seen = seen.lock().unwrap().clone();
        (seen, outcome)
    }

    #[tokio::test]
    async fn the_body_tells_the_status_once_when_it_is_known() {
        let trailers = Frame::trailers(headers(&[("grpc-status", "14")]));
        let data = || Ok(Frame::data(Bytes::from_static(b"x")));
        assert_eq!(watched(vec![data(), Ok(trailers)]).await, (vec![UNAVAILABLE], Ok(())));
        assert_eq!(watched(vec![data()]).await, (vec![UNKNOWN], Ok(())), "ended without trailers");
        assert_eq!(watched(vec![data(), Err("reset")]).await, (vec![UNAVAILABLE], Err("reset")));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        drop(Watched::new(http_body_util::Empty::<Bytes>::new(), Box::new(move |c| record.lock().unwrap().push(c))));
        assert_eq!(*seen.lock().unwrap(), [CANCELLED], "dropped unread: the client went away");
    }
}
