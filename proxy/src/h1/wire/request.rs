//! Request heads: read in by the proxy's HTTP/1.1 server, written out by its pool.

use super::*;
use bytes::BytesMut;
use http::{HeaderMap, Method, StatusCode};

/// A request head as the fast server takes it, or why it leaves the connection to hyper.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // taken apart at once; a box would cost an allocation per request
pub enum Request {
    /// A complete head, taken off the buffer, and its body's length.
    Simple { head: http::request::Parts, body: usize, close: bool, trailers: bool },
    /// Not all of the head has arrived.
    Partial,
    /// A well-formed head that hyper serves with all its rules (HTTP/2, HTTP/1.0, an upgrade,
    /// `Expect`, a chunked or large body): `buf` is untouched and holds all of it.
    Other,
    /// A head no server may act on: it is answered with this and the connection closed. What
    /// was read of it may have left `buf`; nothing after it is ever read as a request.
    Refused(Refused),
}

/// Why a request head was refused, and the status that says so.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refused {
    pub status: StatusCode,
    pub why: &'static str,
}

impl Refused {
    const fn new(status: StatusCode, why: &'static str) -> Self {
        Refused { status, why }
    }
}

/// What HTTP/2 with prior knowledge opens with (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The longest target `http::Uri` holds.
pub(super) const MAX_TARGET: usize = u16::MAX as usize - 1;

/// Reads a request head from the front of `buf`. Simple means HTTP/1.1, no upgrade, no
/// `Expect`, no `Transfer-Encoding`, and a `Content-Length` of at most `max_body`: then the
/// head is taken off `buf` (its values sliced, not copied). Other leaves `buf` untouched, and
/// is only ever a whole head (or the whole HTTP/2 preface), so that whoever serves it next
/// never waits for its first bytes. A head that cannot be served is refused, never handed on.
pub fn parse_request(buf: &mut BytesMut, max_body: usize) -> Request {
    let n = buf.len().min(PREFACE.len());
    if buf[..n] == PREFACE[..n] {
        return if n == PREFACE.len() { Request::Other } else { Request::Partial };
    }
    let mut slots = slots();
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Request::Partial,
        Ok(_) => return Request::Refused(too_large(buf)),
        Err(httparse::Error::TooManyHeaders) => {
            return Request::Refused(Refused::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers"));
        }
        Err(_) => return Request::Refused(Refused::new(StatusCode::BAD_REQUEST, "malformed request head")),
    };
    let bad = |why| Request::Refused(Refused::new(StatusCode::BAD_REQUEST, why));
    let (Some(version), Some(method), Some(path)) = (parsed.version, parsed.method, parsed.path) else {
        return bad("malformed request head");
    };
    if path.len() > MAX_TARGET {
        return Request::Refused(Refused::new(StatusCode::URI_TOO_LONG, "request target too long"));
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return bad("malformed method") };
    if version != 1 || method == Method::CONNECT {
        return Request::Other;
    }
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let path = offset(path.as_bytes());
    let (mut body, mut close, mut trailers, mut other) = (None, false, false, false);
    let mut spans = Spans::new();
    for h in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else { return bad("malformed header name") };
        let text = std::str::from_utf8(h.value).unwrap_or_default();
        match name {
            http::header::TRANSFER_ENCODING | http::header::UPGRADE | http::header::EXPECT => other = true,
            http::header::CONTENT_LENGTH => match (text.trim().parse::<usize>().ok(), body) {
                (Some(n), None) => body = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return bad("invalid Content-Length"),
            },
            http::header::CONNECTION => close |= has_token(text, "close"),
            http::header::TE => trailers |= has_token(text, "trailers"),
            _ => {}
        }
        let (at, n) = offset(h.value);
        spans.push((name, at, n));
    }
    if other || body.is_some_and(|n| n > max_body) {
        // Checked here too (a copy, off the common path), so that every head this server
        // would refuse is refused the same way whoever serves the rest.
        let target = &buf[path.0..path.0 + path.1];
        return if http::Uri::try_from(target).is_ok() { Request::Other } else { bad("malformed request target") };
    }
    // From here on the head is this server's: a target it cannot parse is refused, and the
    // head, taken off the buffer, is never read again.
    let head = buf.split_to(len).freeze();
    let Ok(uri) = http::Uri::from_maybe_shared(head.slice(path.0..path.0 + path.1)) else {
        return bad("malformed request target");
    };
    // Room for what the proxy adds (a `traceparent`) without growing the map.
    let mut headers = HeaderMap::with_capacity(spans.len() + 2);
    for (name, at, n) in spans.drain(..) {
        headers.append(name, value(&head, at, n));
    }
    let mut parts = http::Request::new(()).into_parts().0;
    (parts.method, parts.uri, parts.headers) = (method, uri, headers);
    Request::Simple { head: parts, body: body.unwrap_or(0), close, trailers }
}

/// A head over [`MAX_HEAD`]: its request line alone (414), or its headers (431).
fn too_large(buf: &[u8]) -> Refused {
    match buf.iter().position(|b| *b == b'\n') {
        Some(line) if line < MAX_HEAD => {
            Refused::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large")
        }
        _ => Refused::new(StatusCode::URI_TOO_LONG, "request line too long"),
    }
}


/// Writes `method path HTTP/1.1` and the headers, framing the body by its exact length:
/// whatever framing the caller's headers claimed, the body is in hand. `host` is written when
/// the headers carry none.
pub fn encode_head(method: &Method, path: &str, headers: &HeaderMap, host: &str, body_len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    // A scan of a few names costs less than hashing one for a lookup.
    if !headers.keys().any(|name| name == http::header::HOST) {
        header_line(b"host", host.as_bytes(), out);
    }
    for (name, value) in headers {
        // The framing is this client's, and `Expect` asks a question the body in hand has
        // already answered.
        if is_hop_by_hop(name) || name == http::header::CONTENT_LENGTH || name == http::header::EXPECT {
            continue;
        }
        header_line(name.as_str().as_bytes(), value.as_bytes(), out);
    }
    // A body, or a method that usually has one, says its length; a bodiless GET says nothing.
    if body_len > 0 || !matches!(*method, Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS) {
        header_line(b"content-length", body_len.to_string().as_bytes(), out);
    }
    out.extend_from_slice(b"\r\n");
}

