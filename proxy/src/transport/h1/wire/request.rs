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

    const fn bad(why: &'static str) -> Self {
        Refused::new(StatusCode::BAD_REQUEST, why)
    }

    pub const MALFORMED: Refused = Refused::bad("malformed request head");
    pub const BAD_TARGET: Refused = Refused::bad("malformed request target");
    pub const BAD_HOST: Refused = Refused::bad("a request needs exactly one Host header, naming host[:port]");
    pub const BAD_LENGTH: Refused = Refused::bad("invalid Content-Length: digits only, and one value");
    /// RFC 9112 §6.3 lets a server take Transfer-Encoding over Content-Length; nginx refuses
    /// both together, and so does this proxy: it is the shape of every CL.TE and TE.CL attack.
    pub const BAD_FRAMING: Refused =
        Refused::bad("ambiguous body framing: Transfer-Encoding must end in chunked, alone, in HTTP/1.1");
    /// As nginx: a coding the proxy would have to undo to frame the body is not guessed at.
    pub const CODING: Refused =
        Refused::new(StatusCode::NOT_IMPLEMENTED, "only the chunked transfer coding is supported");
    pub const CONNECT: Refused = Refused::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "CONNECT is not supported: the proxy routes requests, it opens no tunnels",
    );
    pub const TARGET_TOO_LONG: Refused = Refused::new(StatusCode::URI_TOO_LONG, "request target too long");
    pub const LINE_TOO_LONG: Refused = Refused::new(StatusCode::URI_TOO_LONG, "request line too long");
    pub const TOO_MANY_HEADERS: Refused = Refused::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "too many headers");
    pub const HEADERS_TOO_LARGE: Refused =
        Refused::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request headers too large");
}

/// What HTTP/2 with prior knowledge opens with (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The longest target `http::Uri` holds.
pub(super) const MAX_TARGET: usize = u16::MAX as usize - 1;

/// Reads a request head from the front of `buf`. Simple means HTTP/1.1, no upgrade, no
/// `Expect`, no `Transfer-Encoding`, and a `Content-Length` of at most `max_body`: then the
/// head is taken off `buf` (its values sliced, not copied). Other leaves `buf` untouched, and
/// is only ever a whole head (or the whole HTTP/2 preface), so that whoever serves it next
/// never waits for its first bytes. A head that cannot be served is refused, never handed on:
/// its framing is checked as strictly as hyper checks it, and more where a difference between
/// two parsers is how requests are smuggled (see [`Refused`]'s constants).
pub fn parse_request(buf: &mut BytesMut, max_body: usize) -> Request {
    let n = buf.len().min(PREFACE.len());
    if buf.first() == Some(&b'P') && buf[..n] == PREFACE[..n] {
        return if n == PREFACE.len() { Request::Other } else { Request::Partial };
    }
    let mut slots = slots();
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Request::Partial,
        Ok(_) => return Request::Refused(too_large(buf)),
        Err(httparse::Error::TooManyHeaders) => return Request::Refused(Refused::TOO_MANY_HEADERS),
        Err(_) => return Request::Refused(Refused::MALFORMED),
    };
    let (Some(version), Some(method), Some(path)) = (parsed.version, parsed.method, parsed.path) else {
        return Request::Refused(Refused::MALFORMED);
    };
    if path.len() > MAX_TARGET {
        return Request::Refused(Refused::TARGET_TOO_LONG);
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Request::Refused(Refused::MALFORMED) };
    if method == Method::CONNECT {
        return Request::Refused(Refused::CONNECT);
    }
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
    let path = offset(path.as_bytes());
    let mut seen = Seen::default();
    let mut spans = Spans::new();
    for h in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else { return Request::Refused(Refused::MALFORMED) };
        if let Err(refused) = seen.header(&name, h.value) {
            return Request::Refused(refused);
        }
        let (at, n) = offset(h.value);
        spans.push((name, at, n));
    }
    if let Err(refused) = seen.framing(version) {
        return Request::Refused(refused);
    }
    let other = version == 0 || seen.chunked || seen.upgrade || seen.expect;
    if other || seen.body.is_some_and(|n| n > max_body) {
        // Checked here too (a copy, off the common path), so that every head this server
        // would refuse is refused the same way whoever serves the rest.
        let target = http::Uri::try_from(&buf[path.0..path.0 + path.1]);
        return match target.map_err(|_| Refused::BAD_TARGET).and_then(|uri| check_target(&uri, &method)) {
            Ok(()) => Request::Other,
            Err(refused) => Request::Refused(refused),
        };
    }
    // From here on the head is this server's: a target it cannot parse is refused, and the
    // head, taken off the buffer, is never read again.
    let head = buf.split_to(len).freeze();
    let Ok(uri) = http::Uri::from_maybe_shared(head.slice(path.0..path.0 + path.1)) else {
        return Request::Refused(Refused::BAD_TARGET);
    };
    if let Err(refused) = check_target(&uri, &method) {
        return Request::Refused(refused);
    }
    // Room for what the proxy adds (a `traceparent`) without growing the map.
    let mut headers = HeaderMap::with_capacity(spans.len() + 2);
    for (name, at, n) in spans.drain(..) {
        headers.append(name, value(&head, at, n));
    }
    if seen.nominates {
        strip_nominated(&mut headers);
    }
    if let Some(authority) = uri.authority() {
        set_host(&mut headers, authority);
    }
    let mut parts = http::Request::new(()).into_parts().0;
    (parts.method, parts.uri, parts.headers) = (method, uri, headers);
    Request::Simple { head: parts, body: seen.body.unwrap_or(0), close: seen.close, trailers: seen.trailers }
}

/// What a request's headers said about its framing and its connection, gathered as they are
/// read.
#[derive(Default)]
struct Seen {
    hosts: u8,
    body: Option<usize>,
    /// A Content-Length that is not one valid length.
    bad_length: bool,
    /// How many codings the `Transfer-Encoding` lines list, and whether the last is `chunked`.
    codings: usize,
    chunked: bool,
    upgrade: bool,
    expect: bool,
    close: bool,
    trailers: bool,
    /// `Connection` names a header other than the connection's own.
    nominates: bool,
}

impl Seen {
    fn header(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), Refused> {
        let text = || std::str::from_utf8(value).unwrap_or_default();
        match *name {
            http::header::HOST => {
                self.hosts = self.hosts.saturating_add(1);
                if !is_host(value) {
                    return Err(Refused::BAD_HOST);
                }
            }
            http::header::CONTENT_LENGTH => match (digits(value), self.body) {
                (Some(n), None) => self.body = Some(usize::try_from(n).unwrap_or(usize::MAX)),
                (Some(n), Some(m)) if n as usize == m => {}
                _ => self.bad_length = true,
            },
            http::header::TRANSFER_ENCODING => {
                self.codings += text().split(',').count();
                let last = text().rsplit(',').next().unwrap_or_default();
                self.chunked = last.trim_matches([' ', '\t']).eq_ignore_ascii_case("chunked");
            }
            http::header::CONNECTION => {
                for token in tokens(text()) {
                    self.close |= token.eq_ignore_ascii_case("close");
                    self.nominates |= nominates(token);
                }
            }
            http::header::TE => self.trailers |= has_token(text(), "trailers"),
            http::header::UPGRADE => self.upgrade = true,
            http::header::EXPECT => self.expect = true,
            _ => {}
        }
        Ok(())
    }

    /// The framing the headers add up to (RFC 9112 §3.2, §6), refused where it is ambiguous.
    fn framing(&self, version: u8) -> Result<(), Refused> {
        if self.hosts > 1 || (self.hosts == 0 && version == 1) {
            return Err(Refused::BAD_HOST);
        }
        let lengths = self.body.is_some() || self.bad_length;
        if self.codings == 0 {
            return if self.bad_length { Err(Refused::BAD_LENGTH) } else { Ok(()) };
        }
        if version == 0 || !self.chunked || lengths {
            return Err(Refused::BAD_FRAMING);
        }
        if self.codings > 1 {
            return Err(Refused::CODING);
        }
        Ok(())
    }
}

/// The same checks for a request hyper read (after a hand-off, or over HTTP/2), on its map,
/// and the same rewrites: the target's authority becomes Host, nominated headers go.
pub fn check_parsed(parts: &mut http::request::Parts) -> Result<(), Refused> {
    if parts.method == Method::CONNECT {
        return Err(Refused::CONNECT);
    }
    check_target(&parts.uri, &parts.method)?;
    if parts.version <= http::Version::HTTP_11 {
        let mut hosts = parts.headers.get_all(http::header::HOST).iter();
        let (first, second) = (hosts.next(), hosts.next());
        let missing = first.is_none() && parts.version == http::Version::HTTP_11;
        if second.is_some() || missing || first.is_some_and(|h| !is_host(h.as_bytes())) {
            return Err(Refused::BAD_HOST);
        }
        strip_nominated(&mut parts.headers);
    }
    if let Some(authority) = parts.uri.authority().cloned() {
        set_host(&mut parts.headers, &authority);
    }
    Ok(())
}

/// A request target's form, for its method (RFC 9112 §3.2): origin-form (`/p`), absolute-form
/// (`http://svc/p`, no user info), or `*` for OPTIONS. CONNECT's authority-form is refused
/// before this.
pub fn check_target(uri: &http::Uri, method: &Method) -> Result<(), Refused> {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => {
            let web = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
            if !web || authority.as_str().contains('@') {
                return Err(Refused::BAD_TARGET);
            }
        }
        (None, None) if uri.path() == "*" && *method != Method::OPTIONS => return Err(Refused::BAD_TARGET),
        (None, None) => {}
        _ => return Err(Refused::BAD_TARGET),
    }
    Ok(())
}

/// Whether a Host value is `host[:port]` (RFC 9110 §7.2): the bytes an authority may hold,
/// without user info or anything of a path. Empty is allowed (a target with no authority).
fn is_host(value: &[u8]) -> bool {
    value.iter().all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(b))
}

/// The authority of an absolute-form target (or `:authority`) names the service, whatever
/// `Host` says (RFC 9112 §3.2.2): a proxy forwards a Host made from it.
pub fn set_host(headers: &mut HeaderMap, authority: &http::uri::Authority) {
    if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
        headers.insert(http::header::HOST, value);
    }
}

/// Removes the headers a `Connection` header names for this hop (see [`nominates`]).
pub fn strip_nominated(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(tokens)
        .filter(|t| nominates(t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// A head over [`MAX_HEAD`]: its request line alone (414), or its headers (431).
fn too_large(buf: &[u8]) -> Refused {
    match buf.iter().position(|b| *b == b'\n') {
        Some(line) if line < MAX_HEAD => Refused::HEADERS_TOO_LARGE,
        _ => Refused::LINE_TOO_LONG,
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
