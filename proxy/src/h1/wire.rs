//! HTTP/1.1 on the wire, as pure functions over buffers: request heads read in and written
//! out, response heads read in and written out, chunked bodies decoded and encoded. The I/O
//! around them is in `client` and `server`.

use super::raw::RawHeaders;
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// A response head may be at most this large; beyond it the response is refused.
pub const MAX_HEAD: usize = crate::server::MAX_HEADER_BYTES;
const MAX_HEADERS: usize = 100;

/// Room for a head's headers, left uninitialised: filling a hundred slots per message costs
/// more than parsing it.
fn slots<'b>() -> [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

/// A head's header names and where each value lies in it, on the stack for a usual head: one
/// allocation fewer per message.
type Spans = smallvec::SmallVec<[(HeaderName, usize, usize); 16]>;

/// The value at `at..at + n` of a head httparse has checked, sliced out of it, not copied.
fn value(head: &Bytes, at: usize, n: usize) -> HeaderValue {
    // SAFETY: httparse accepts in a value exactly the bytes `HeaderValue` does (tab,
    // 0x20-0x7e, 0x80-0xff; `values_httparse_accepts_are_header_values` holds it to that), so
    // the check the checked constructor would run, byte by byte, again, cannot fail.
    unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(at..at + n)) }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("malformed chunked body")]
    Chunk,
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

/// Headers that describe one connection, not the message, and so never cross this proxy
/// (RFC 9110 §7.6.1): in either direction, on either side.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "proxy-authorization",
    "proxy-authenticate",
    "keep-alive",
    "proxy-connection",
];

/// How a response's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Framing {
    Length(u64),
    Chunked,
    /// Until the upstream closes: the connection cannot be reused.
    Eof,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub headers: RawHeaders,
    pub framing: Framing,
    /// The upstream keeps the connection open after this response.
    pub keep_alive: bool,
}

/// A response header line's part in the framing of the message.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Connection,
    TransferEncoding,
    ContentLength,
    /// Another of the connection's own headers.
    HopByHop,
    Date,
    Other,
}

fn role(name: &str) -> Role {
    let is = |known: &str| name.eq_ignore_ascii_case(known);
    match name.len() {
        4 if is("date") => Role::Date,
        10 if is("connection") => Role::Connection,
        14 if is("content-length") => Role::ContentLength,
        17 if is("transfer-encoding") => Role::TransferEncoding,
        _ if HOP_BY_HOP.iter().any(|h| h.len() == name.len() && is(h)) => Role::HopByHop,
        _ => Role::Other,
    }
}

/// Takes one response head off the front of `buf`. `Ok(None)`: not all of it has arrived.
/// Interim (1xx) responses other than 101 are skipped, as a client that did not ask for them
/// must. Connection-level headers stay behind: they describe the upstream's connection.
pub fn parse_head(buf: &mut BytesMut, request: &Method) -> Result<Option<Head>, WireError> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        let mut slots = slots();
        let mut parsed = httparse::Response::new(&mut []);
        let len =
            match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(WireError::HeadTooLarge),
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(e) => return Err(WireError::Head(e)),
            };
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| WireError::Head(httparse::Error::Status))?;
        if status.is_informational() && code != 101 {
            buf.advance(len);
            continue;
        }
        let http10 = parsed.version == Some(0);
        // Each line runs from its name to the next one's; the last, to the blank line.
        let base = buf.as_ptr() as usize;
        let starts = || parsed.headers.iter().map(|h| h.name.as_ptr() as usize - base);
        let blank_line = if buf[..len].ends_with(b"\r\n\r\n") || buf[..len].ends_with(b"\n\r\n") { 2 } else { 1 };
        let ends = starts().skip(1).chain([len - blank_line]);
        let mut lines: Lines = Lines::new();
        let (mut framing, mut keep_alive, mut has_date) = (None, !http10, false);
        for ((h, start), end) in parsed.headers.iter().zip(starts()).zip(ends) {
            // Only the framing headers' values are read.
            let text = || std::str::from_utf8(h.value).unwrap_or_default();
            let role = role(h.name);
            match role {
                Role::Connection if has_token(text(), "close") => keep_alive = false,
                Role::Connection if http10 && has_token(text(), "keep-alive") => keep_alive = true,
                Role::TransferEncoding => {
                    // Chunked must be the last coding; anything else is read to the end.
                    let last = text().rsplit(',').next().unwrap_or_default();
                    framing =
                        Some(if last.trim().eq_ignore_ascii_case("chunked") { Framing::Chunked } else { Framing::Eof });
                }
                Role::ContentLength if !matches!(framing, Some(Framing::Chunked | Framing::Eof)) => {
                    let n = text().trim().parse::<u64>().map_err(|_| WireError::ContentLength)?;
                    match framing {
                        Some(Framing::Length(m)) if m != n => return Err(WireError::ContentLength),
                        // The same length again says nothing more.
                        Some(Framing::Length(_)) => continue,
                        _ => framing = Some(Framing::Length(n)),
                    }
                }
                Role::Date => has_date = true,
                _ => {}
            }
            if matches!(role, Role::Other | Role::Date | Role::ContentLength) {
                lines.push((start, end, role == Role::ContentLength));
            }
        }
        let head = buf.split_to(len).freeze();
        // Transfer-Encoding wins over Content-Length, which must then not travel on.
        let declared = match framing {
            Some(Framing::Length(n)) => Some(n),
            _ => {
                lines.retain(|(_, _, length)| !*length);
                None
            }
        };
        let headers = RawHeaders::new(kept_lines(&head, &lines), declared, has_date);
        let bodiless = *request == Method::HEAD || code == 204 || code == 304 || code == 101;
        let framing = if bodiless { Framing::Length(0) } else { framing.unwrap_or(Framing::Eof) };
        if framing == Framing::Eof || code == 101 {
            keep_alive = false;
        }
        return Ok(Some(Head { status, headers, framing, keep_alive }));
    }
}

/// The lines of a head that travel on: where each starts and ends, and whether it is a
/// `Content-Length`. On the stack for a usual head.
type Lines = smallvec::SmallVec<[(usize, usize, bool); 16]>;

/// The kept lines of `head`: a slice of it when they follow one another and end in CRLF, as
/// they do unless a connection header sat between them or a line ended in a bare LF;
/// otherwise a copy with those lines left out and bare LFs made CRLF.
fn kept_lines(head: &Bytes, lines: &Lines) -> Bytes {
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else { return Bytes::new() };
    let adjacent = lines.windows(2).all(|w| w[0].1 == w[1].0);
    if adjacent && lines.iter().all(|(_, end, _)| head[..*end].ends_with(b"\r\n")) {
        return head.slice(first.0..last.1);
    }
    let mut out = Vec::with_capacity(lines.iter().map(|(start, end, _)| end - start + 1).sum());
    for (start, end, _) in lines {
        let line = &head[*start..*end];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.extend_from_slice(b"\r\n");
    }
    Bytes::from(out)
}

fn has_token(list: &str, token: &str) -> bool {
    list.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes still to come, then CRLF.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

/// What the decoder took off the buffer.
#[derive(Debug, PartialEq)]
pub enum Piece {
    Data(Bytes),
    Trailers(HeaderMap),
    End,
}

/// Decodes what it can from `buf`. `Ok(None)`: more bytes are needed.
pub fn decode_chunked(buf: &mut BytesMut, state: &mut Chunked) -> Result<Option<Piece>, WireError> {
    loop {
        match *state {
            Chunked::Size => {
                let Some(line) = take_line(buf)? else { return Ok(None) };
                let hex = line[..].split(|b| *b == b';').next().unwrap_or_default();
                let hex = std::str::from_utf8(hex).map_err(|_| WireError::Chunk)?.trim();
                let size = u64::from_str_radix(hex, 16).map_err(|_| WireError::Chunk)?;
                *state = if size == 0 { Chunked::Trailers } else { Chunked::Data(size) };
            }
            Chunked::Data(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = (buf.len() as u64).min(left) as usize;
                let data = buf.split_to(n).freeze();
                *state = if n as u64 == left { Chunked::DataEnd } else { Chunked::Data(left - n as u64) };
                return Ok(Some(Piece::Data(data)));
            }
            Chunked::DataEnd => {
                let Some(line) = take_line(buf)? else { return Ok(None) };
                if !line.is_empty() {
                    return Err(WireError::Chunk);
                }
                *state = Chunked::Size;
            }
            Chunked::Trailers => {
                // The whole trailer section at once: it is small, and a frame carries it whole.
                let end = if buf.starts_with(b"\r\n") { Some(2) } else { find(buf, b"\r\n\r\n").map(|i| i + 4) };
                let Some(end) = end else {
                    if buf.len() > MAX_HEAD {
                        return Err(WireError::HeadTooLarge);
                    }
                    return Ok(None);
                };
                let section = buf.split_to(end);
                *state = Chunked::Done;
                let mut trailers = HeaderMap::new();
                for line in section[..].split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)) {
                    let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
                    let name = HeaderName::from_bytes(&line[..colon]).map_err(|_| WireError::Chunk)?;
                    let value =
                        HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).map_err(|_| WireError::Chunk)?;
                    trailers.append(name, value);
                }
                return Ok(Some(if trailers.is_empty() { Piece::End } else { Piece::Trailers(trailers) }));
            }
            Chunked::Done => return Ok(Some(Piece::End)),
        }
    }
}

/// A CRLF-terminated line off the front of `buf`, without its CRLF.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
    match find(buf, b"\r\n") {
        Some(i) => {
            let line = buf.split_to(i);
            buf.advance(2);
            Ok(Some(line))
        }
        // A chunk-size line is short; a long run without CRLF is not HTTP.
        None if buf.len() > 1024 => Err(WireError::Chunk),
        None => Ok(None),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

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
const MAX_TARGET: usize = u16::MAX as usize - 1;

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

/// How a response's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Out {
    /// Exactly this many bytes.
    Length(u64),
    Chunked,
    /// No body follows (a HEAD request, 1xx, 204, 304).
    Nothing,
}

/// Writes a response's status line and headers, and frames its body: by the Content-Length
/// it declares, else by `length` (the body's exact size, when known), else chunked; with no
/// body at all after a HEAD request (`head_request`) or for 1xx, 204 and 304. The upstream's
/// [`RawHeaders`] go first, as they are, then the map's. `date` is added when the response has
/// none. One pass over the headers: a lookup first would hash again.
pub fn encode_response_head(
    parts: &http::response::Parts,
    head_request: bool,
    length: Option<u64>,
    close: bool,
    date: &[u8],
    out: &mut Vec<u8>,
) -> Out {
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let (mut has_date, mut declared) = (false, None);
    if let Some(raw) = parts.extensions.get::<RawHeaders>() {
        out.extend_from_slice(raw.lines());
        (has_date, declared) = (raw.has_date, raw.content_length);
    }
    for (name, value) in &parts.headers {
        has_date |= name == http::header::DATE;
        if name == http::header::CONTENT_LENGTH {
            let n = value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
            // The first valid one frames the body; a broken or second one does not travel.
            if n.is_none() || declared.is_some() {
                continue;
            }
            declared = n;
        }
        if is_hop_by_hop(name) {
            continue;
        }
        header_line(name.as_str().as_bytes(), value.as_bytes(), out);
    }
    if !has_date {
        header_line(b"date", date, out);
    }
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = match declared.or(length) {
        _ if bodiless => Out::Nothing,
        Some(n) => Out::Length(n),
        None => Out::Chunked,
    };
    match framing {
        Out::Length(n) if declared.is_none() => header_line(b"content-length", n.to_string().as_bytes(), out),
        Out::Chunked => header_line(b"transfer-encoding", b"chunked", out),
        Out::Length(_) | Out::Nothing => {}
    }
    if close {
        header_line(b"connection", b"close", out);
    }
    out.extend_from_slice(b"\r\n");
    framing
}

fn header_line(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    // One check for room, not four.
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk, with the trailers when the client takes them (`TE: trailers`).
pub fn last_chunk(trailers: Option<&HeaderMap>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        header_line(name.as_str().as_bytes(), value.as_bytes(), out);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, method: Method) -> Result<Option<Head>, WireError> {
        parse_head(&mut BytesMut::from(text), &method)
    }

    /// What `value` relies on to skip the check: every value byte httparse lets through, in a
    /// request or a response, is one `HeaderValue` accepts.
    #[test]
    fn values_httparse_accepts_are_header_values() {
        let mut accepted = 0;
        for b in 0..=255u8 {
            let text = [&b"x-a: a"[..], &[b], b"b\r\n\r\n"].concat();
            let mut slots = [httparse::EMPTY_HEADER; 4];
            let request = [&b"GET / HTTP/1.1\r\n"[..], &text].concat();
            let response = [&b"HTTP/1.1 200 OK\r\n"[..], &text].concat();
            let mut req = httparse::Request::new(&mut slots);
            if let Ok(httparse::Status::Complete(_)) = req.parse(&request) {
                assert!(HeaderValue::from_bytes(req.headers[0].value).is_ok(), "request byte {b:#x}");
                accepted += 1;
            }
            let mut slots = [httparse::EMPTY_HEADER; 4];
            let mut resp = httparse::Response::new(&mut slots);
            if let Ok(httparse::Status::Complete(_)) = resp.parse(&response) {
                assert!(HeaderValue::from_bytes(resp.headers[0].value).is_ok(), "response byte {b:#x}");
                accepted += 1;
            }
        }
        // Tab, 0x20-0x7e and 0x80-0xff, in both: the test is not vacuous.
        assert_eq!(accepted, 2 * (1 + 95 + 128));
    }

    #[test]
    fn a_request_head_frames_its_body_by_length_and_keeps_host() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("catalog"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        headers.insert("x-a", HeaderValue::from_static("1"));
        for hop in ["connection", "keep-alive", "expect", "te", "upgrade", "proxy-authorization"] {
            headers.insert(hop, HeaderValue::from_static("x"));
        }
        let mut out = Vec::new();
        encode_head(&Method::POST, "/p?q=1", &headers, "10.0.0.1:80", 12, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: catalog\r\nx-a: 1\r\ncontent-length: 12\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_head(&Method::GET, "/", &HeaderMap::new(), "10.0.0.1:80", 0, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "GET / HTTP/1.1\r\nhost: 10.0.0.1:80\r\n\r\n");
    }

    #[test]
    fn response_heads_say_how_their_body_ends_and_whether_the_connection_stays() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx: y\r\n\r\nabc", Method::GET).unwrap().unwrap();
        assert_eq!((h.status.as_u16(), h.framing, h.keep_alive), (200, Framing::Length(3), true));
        assert_eq!(h.headers.lines(), b"content-length: 3\r\nx: y\r\n");
        assert_eq!((h.headers.content_length, h.headers.has_date), (Some(3), false));

        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ntransfer-encoding: gzip, chunked\r\nDate: d\r\n\r\n";
        let h = head(text, Method::GET).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        assert_eq!(h.headers.lines(), b"Date: d\r\n", "no framing header travels with a chunked body");
        assert_eq!((h.headers.content_length, h.headers.has_date), (None, true));

        let h =
            head("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", Method::GET).unwrap().unwrap();
        assert!(!h.keep_alive);
        assert_eq!(h.headers.lines(), b"content-length: 0\r\n");
        let h = head("HTTP/1.0 200 OK\r\n\r\nbody", Method::GET).unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Eof, false));
        let h = head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 4\r\n\r\n", Method::GET)
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", Method::HEAD).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Length(0));
        let h = head("HTTP/1.1 304 Not Modified\r\n\r\n", Method::GET).unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(0), true));
    }

    #[test]
    fn the_lines_that_travel_are_the_upstreams_own_whatever_their_case_or_line_ends() {
        let lines = |text: &str| head(text, Method::GET).unwrap().unwrap().headers.lines().to_vec();
        let text = "HTTP/1.1 200 OK\r\nServer: s\r\nX-A:  1 \r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(lines(text), b"Server: s\r\nX-A:  1 \r\nContent-Length: 2\r\n", "one length, written once");
        let text = "HTTP/1.1 200 OK\r\nA: 1\r\nKeep-Alive: 5\r\nUpgrade: x\r\nB: 2\nTE: t\r\nC: 3\n\n";
        assert_eq!(lines(text), b"A: 1\r\nB: 2\r\nC: 3\r\n", "connection headers out, bare LFs made CRLF");
        assert_eq!(lines("HTTP/1.1 204 No Content\r\n\r\n"), b"");
        assert_eq!(lines("HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"), b"");
    }

    #[test]
    fn interim_responses_are_skipped_and_partial_or_bad_heads_are_told_apart() {
        let mut buf = BytesMut::from("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(parse_head(&mut buf, &Method::POST).unwrap().unwrap().status.as_u16(), 201);
        assert!(buf.is_empty());
        assert!(head("HTTP/1.1 200 OK\r\ncontent-le", Method::GET).unwrap().is_none());
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", Method::GET).is_err());
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", Method::GET).unwrap_err(),
            WireError::ContentLength
        );
        assert!(head("NOT HTTP\r\n\r\n", Method::GET).is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD + 1));
        assert_eq!(head(&huge, Method::GET).unwrap_err(), WireError::HeadTooLarge);
    }

    #[test]
    fn a_chunked_body_decodes_across_any_split_with_its_trailers() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ngrpc-status: 0\r\n\r\nNEXT";
        for split in 0..wire.len() {
            let (mut buf, mut state, mut data, mut trailers) = (BytesMut::new(), Chunked::Size, Vec::new(), None);
            let mut end = false;
            for part in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(part);
                while state != Chunked::Done {
                    let Some(piece) = decode_chunked(&mut buf, &mut state).unwrap() else { break };
                    match piece {
                        Piece::Data(d) => data.extend_from_slice(&d),
                        Piece::Trailers(t) => trailers = Some(t),
                        Piece::End => end = true,
                    }
                }
            }
            assert_eq!(data, b"hello world", "split at {split}");
            assert_eq!(trailers.as_ref().map(|t| t["grpc-status"].clone()), Some(HeaderValue::from_static("0")));
            assert!(state == Chunked::Done && !end, "the trailers frame is the last");
            assert_eq!(&buf[..], b"NEXT", "what follows the body stays for the next response");
        }
        let (mut buf, mut state) = (BytesMut::from("0\r\n\r\n"), Chunked::Size);
        assert_eq!(decode_chunked(&mut buf, &mut state).unwrap(), Some(Piece::End));
        let (mut buf, mut state) = (BytesMut::from("zz\r\n"), Chunked::Size);
        assert_eq!(decode_chunked(&mut buf, &mut state), Err(WireError::Chunk));
        let (mut buf, mut state) = (BytesMut::from("1\r\nab\r\n"), Chunked::Size);
        assert!(matches!(decode_chunked(&mut buf, &mut state), Ok(Some(Piece::Data(_)))));
        assert_eq!(decode_chunked(&mut buf, &mut state), Err(WireError::Chunk));
    }

    fn request(text: &str) -> (Request, BytesMut) {
        let mut buf = BytesMut::from(text);
        (parse_request(&mut buf, 16), buf)
    }

    #[test]
    fn simple_requests_are_taken_and_anything_else_is_left_whole_for_hyper() {
        let (r, rest) = request("POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTE: trailers\r\n\r\nbodyGET");
        let Request::Simple { head, body, close, trailers } = r else { panic!("simple") };
        assert_eq!(
            (head.method.as_str(), head.uri.to_string().as_str(), body, close, trailers),
            ("POST", "/p?q=1", 4, false, true)
        );
        assert_eq!(head.headers["host"], "a");
        assert_eq!(&rest[..], b"bodyGET", "the body and what follows stay");
        let (r, _) = request("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n");
        assert!(matches!(r, Request::Simple { close: true, body: 0, .. }));
        assert!(matches!(request("GET / HTTP/1.1\r\nHost: a\r\n").0, Request::Partial));
        for other in [
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\n\r\n",
        ] {
            let (r, rest) = request(other);
            assert!(matches!(r, Request::Other), "{other}");
            assert_eq!(&rest[..], other.as_bytes(), "untouched: {other}");
        }
        // The preface in pieces, and nothing at all, wait for more: hyper is never handed a
        // connection whose first request it would have to wait for.
        for partial in ["P", "PRI ", "PRI * HTTP/2.0\r\n"] {
            assert!(matches!(request(partial).0, Request::Partial), "{partial}");
        }
    }

    #[test]
    fn a_head_that_cannot_be_served_is_refused_never_handed_on() {
        let refused = |text: &str| match request(text).0 {
            Request::Refused(r) => r.status.as_u16(),
            other => panic!("{text:?}: {other:?}"),
        };
        for target in ["/c51<x>", "/`", "/>", "http:/c", "http://", "http://[::1/c", "http://svc:80:80/c"] {
            let text = format!("GET {target} HTTP/1.1\r\nHost: svc\r\nContent-Length: 41\r\n\r\nGET /smuggled HTTP/1.1\r\n");
            assert_eq!(refused(&text), 400, "{target}");
        }
        assert_eq!(refused("G@T / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(refused("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
        assert_eq!(refused(&format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(MAX_TARGET))), 414);
        assert_eq!(refused(&format!("GET /{}", "a".repeat(MAX_HEAD))), 414, "a request line that never ends");
        let big = format!("GET / HTTP/1.1\r\nHost: a\r\nx: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(refused(&big), 431);
        assert_eq!(refused(&format!("GET / HTTP/1.1\r\nHost: a\r\nx: {}", "a".repeat(MAX_HEAD))), 431);
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "x: y\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(refused(&many), 431);
    }

    #[test]
    fn response_heads_frame_their_body_and_drop_connection_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let ok = StatusCode::OK;
        let parts = |status, headers: &HeaderMap| {
            let mut parts = http::Response::new(()).into_parts().0;
            (parts.status, parts.headers) = (status, headers.clone());
            parts
        };
        let encode = |status, headers: &HeaderMap, head_request, length| {
            let mut out = Vec::new();
            let framing = encode_response_head(&parts(status, headers), head_request, length, false, b"now", &mut out);
            (framing, String::from_utf8(out).unwrap())
        };
        assert_eq!(encode(ok, &headers, false, Some(3)).0, Out::Length(3));
        assert_eq!(encode(ok, &headers, false, None).0, Out::Chunked);
        assert_eq!(encode(ok, &headers, true, Some(3)).0, Out::Nothing);
        assert_eq!(encode(StatusCode::NOT_MODIFIED, &headers, false, None).0, Out::Nothing);
        let mut out = Vec::new();
        encode_response_head(&parts(ok, &headers), false, Some(3), true, b"Thu, 26 Nov 2026 23:00:00 GMT", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: Thu, 26 Nov 2026 23:00:00 GMT\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"
        );
        let (framing, text) = encode(StatusCode::NOT_FOUND, &headers, false, None);
        assert_eq!(framing, Out::Chunked);
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\n") && text.contains("transfer-encoding: chunked"),
            "{text}"
        );
        headers.insert("content-length", HeaderValue::from_static("9"));
        headers.insert("date", HeaderValue::from_static("then"));
        let (framing, text) = encode(ok, &headers, false, None);
        assert_eq!(framing, Out::Length(9), "a declared length wins");
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert_eq!(text.matches("date").count(), 1, "{text}");
        assert!(text.contains("date: then\r\n") && !text.contains("chunked"), "{text}");
        let (framing, text) = encode(ok, &headers, true, Some(0));
        assert_eq!(framing, Out::Nothing);
        assert!(text.contains("content-length: 9\r\n"), "a HEAD response says the length a GET's would have: {text}");
        headers.insert("content-length", HeaderValue::from_static("nine"));
        let (framing, text) = encode(ok, &headers, false, Some(4));
        assert_eq!(framing, Out::Length(4), "a broken length is not believed");
        assert!(text.contains("content-length: 4\r\n") && !text.contains("nine"), "{text}");

        // An upstream's lines go out as they came, ahead of what the proxy added; their length
        // and date are theirs.
        let mut with_raw = parts(ok, &HeaderMap::new());
        with_raw.headers.insert("x-added", HeaderValue::from_static("1"));
        with_raw.headers.insert("content-length", HeaderValue::from_static("7"));
        let raw = Bytes::from_static(b"Date: then\r\nContent-Length: 2\r\nX-Up: u\r\n");
        with_raw.extensions.insert(RawHeaders::new(raw, Some(2), true));
        let mut out = Vec::new();
        assert_eq!(encode_response_head(&with_raw, false, None, false, b"now", &mut out), Out::Length(2));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nDate: then\r\nContent-Length: 2\r\nX-Up: u\r\nx-added: 1\r\n\r\n"
        );
        let mut out = Vec::new();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        last_chunk(Some(&trailers), &mut out);
        assert_eq!(out, b"0\r\ngrpc-status: 0\r\n\r\n");
    }

    /// Bytes a peer might send: HTTP fragments, so that generated input gets deep into the
    /// parsers, mixed with anything at all.
    fn wire_bytes() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        const FRAGMENTS: &[&str] = &[
            "GET ",
            "POST ",
            "HEAD ",
            "PRI ",
            "/",
            "/p?q",
            " HTTP/1.1",
            " HTTP/1.0",
            "HTTP/1.1 ",
            "200 OK",
            "100 Continue",
            "204",
            "\r\n",
            "\r\n\r\n",
            "Host: a",
            "Content-Length: ",
            "Transfer-Encoding: chunked",
            "Connection: close",
            "TE: trailers",
            "Expect: 100-continue",
            "0",
            "5",
            "ff",
            "18446744073709551616",
            ";x=1",
            ":",
            " ",
            "hello",
        ];
        let piece = prop_oneof![
            proptest::sample::select(FRAGMENTS).prop_map(|f| f.as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #[test]
        fn the_parsers_never_panic_and_leave_what_they_do_not_take(input in wire_bytes()) {
            let mut buf = BytesMut::from(&input[..]);
            match parse_request(&mut buf, 16) {
                Request::Simple { .. } => proptest::prop_assert!(buf.len() < input.len()),
                // Whatever it took, the connection closes after the answer.
                Request::Refused(r) => proptest::prop_assert!(r.status.is_client_error()),
                Request::Partial | Request::Other => proptest::prop_assert_eq!(&buf[..], &input[..]),
            }
            for method in [Method::GET, Method::HEAD] {
                let mut buf = BytesMut::from(&input[..]);
                // Not all there yet: at most interim (1xx) heads were taken, off the front.
                if let Ok(None) = parse_head(&mut buf, &method) {
                    proptest::prop_assert!(input.ends_with(&buf));
                }
            }
            let (mut buf, mut state) = (BytesMut::from(&input[..]), Chunked::Size);
            // Every step takes bytes, ends, fails or asks for more: it never spins.
            for _ in 0..=input.len() + 2 {
                let before = (buf.len(), state);
                match decode_chunked(&mut buf, &mut state) {
                    Ok(Some(Piece::End)) | Ok(None) | Err(_) => break,
                    Ok(Some(_)) => proptest::prop_assert!((buf.len(), state) != before),
                }
            }
        }
    }
}
