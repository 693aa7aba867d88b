//! Response heads: read in by the pool, written out by the proxy's HTTP/1.1 server.

use super::*;
use crate::transport::h1::raw::RawHeaders;
use bytes::BytesMut;
use http::{Method, StatusCode};

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

#[inline]
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
/// Interim (1xx) heads before it are taken off too and appended to `interim`, as HTTP/1.1
/// heads to forward ahead of it (RFC 9110 §15.2: a proxy forwards the 1xx it did not ask
/// for). A `101` is an error: the pool never asks for an upgrade. Connection-level headers,
/// and those a `Connection` header names, stay behind: they describe the upstream's
/// connection.
pub fn parse_head(buf: &mut BytesMut, request: &Method, interim: &mut Vec<u8>) -> Result<Option<Head>, WireError> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        let mut slots = slots();
        let mut parsed = httparse::Response::new(&mut []);
        let config = httparse::ParserConfig::default();
        let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut slots) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
            Ok(httparse::Status::Complete(_)) => return Err(WireError::HeadTooLarge),
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(WireError::HeadTooLarge),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(WireError::Head(e)),
        };
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| WireError::Head(httparse::Error::Status))?;
        if code == 101 {
            return Err(WireError::Upgrade);
        }
        let http10 = parsed.version == Some(0);
        // Each line runs from its name to the next one's; the last, to the blank line.
        let base = buf.as_ptr() as usize;
        let starts = || parsed.headers.iter().map(|h| h.name.as_ptr() as usize - base);
        let blank_line = if buf[..len].ends_with(b"\r\n\r\n") || buf[..len].ends_with(b"\n\r\n") { 2 } else { 1 };
        let ends = starts().skip(1).chain([len - blank_line]);
        let mut lines: Lines = Lines::new();
        let (mut framing, mut keep_alive, mut has_date, mut nominates) = (None, !http10, false, false);
        for ((h, start), end) in parsed.headers.iter().zip(starts()).zip(ends) {
            // Only the framing headers' values are read.
            let text = || std::str::from_utf8(h.value).unwrap_or_default();
            let kind = role(h.name);
            match kind {
                Role::Connection => {
                    for token in tokens(text()) {
                        if token.eq_ignore_ascii_case("close") {
                            keep_alive = false;
                        } else if token.eq_ignore_ascii_case("keep-alive") {
                            keep_alive |= http10;
                        } else {
                            nominates |= super::nominates(token);
                        }
                    }
                }
                Role::TransferEncoding => {
                    // Chunked must be the last coding, in HTTP/1.1; anything else is read to
                    // the end (RFC 9112 §6.3), and with a Content-Length too, the connection is
                    // not trusted again.
                    let last = text().rsplit(',').next().unwrap_or_default();
                    let chunked = last.trim_matches([' ', '\t']).eq_ignore_ascii_case("chunked");
                    keep_alive &= !matches!(framing, Some(Framing::Length(_)));
                    framing = Some(if chunked && !http10 { Framing::Chunked } else { Framing::Eof });
                }
                Role::ContentLength => {
                    let n = digits(h.value).ok_or(WireError::ContentLength)?;
                    match framing {
                        Some(Framing::Length(m)) if m != n => return Err(WireError::ContentLength),
                        // The same length again says nothing more.
                        Some(Framing::Length(_)) => continue,
                        Some(Framing::Chunked | Framing::Eof) => keep_alive = false,
                        None => framing = Some(Framing::Length(n)),
                    }
                }
                Role::Date => has_date = true,
                _ => {}
            }
            if matches!(kind, Role::Other | Role::Date | Role::ContentLength) {
                lines.push((start, end, kind == Role::ContentLength));
            }
        }
        if nominates {
            let named = nominated(parsed.headers);
            lines.retain(|(start, _, _)| !named.iter().any(|n| names(&buf[*start..], n)));
        }
        let head = buf.split_to(len).freeze();
        if status.is_informational() {
            status_line(status, interim);
            lines.retain(|(_, _, length)| !*length);
            interim.extend_from_slice(&kept_lines(&head, &lines));
            interim.extend_from_slice(b"\r\n");
            continue;
        }
        // Transfer-Encoding wins over Content-Length, which must then not travel on.
        let declared = match framing {
            Some(Framing::Length(n)) => Some(n),
            _ => {
                lines.retain(|(_, _, length)| !*length);
                None
            }
        };
        let headers = RawHeaders::new(kept_lines(&head, &lines), declared, has_date);
        let bodiless = *request == Method::HEAD || code == 204 || code == 304;
        let framing = if bodiless { Framing::Length(0) } else { framing.unwrap_or(Framing::Eof) };
        if framing == Framing::Eof {
            keep_alive = false;
        }
        return Ok(Some(Head { status, headers, framing, keep_alive }));
    }
}

fn status_line(status: StatusCode, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The header names `Connection` headers drop at this hop (see [`super::nominates`]).
fn nominated<'h>(headers: &[httparse::Header<'h>]) -> Vec<&'h str> {
    let lists = headers.iter().filter(|h| role(h.name) == Role::Connection);
    lists
        .flat_map(|h| tokens(std::str::from_utf8(h.value).unwrap_or_default()))
        .filter(|t| super::nominates(t))
        .collect()
}

/// Whether the header line at the start of `line` is named `name`.
fn names(line: &[u8], name: &str) -> bool {
    line.get(..name.len()).is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        && line.get(name.len()) == Some(&b':')
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
    let raw = parts.extensions.get::<RawHeaders>();
    if let Some(raw) = raw {
        out.extend_from_slice(raw.interim());
    }
    status_line(status, out);
    let (mut has_date, mut declared) = (false, None);
    if let Some(raw) = raw {
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
