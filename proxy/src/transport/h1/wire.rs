//! HTTP/1.1 on the wire, as pure functions over buffers: request heads read in and written
//! out ([`request`]), response heads read in and written out ([`response`]), chunked bodies
//! decoded and encoded ([`chunked`]). The I/O around them is in `client` and `server`.

mod chunked;
mod request;
mod response;

pub use chunked::{Chunked, Piece, decode_chunked, last_chunk};
pub use request::{PREFACE, Refused, Request, check_parsed, encode_head, parse_request, strip_nominated};
pub use response::{Framing, Head, Out, encode_response_head, parse_head};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// A request or response head may be at most this large; beyond it, it is refused (431 / 502).
pub const MAX_HEAD: usize = 64 * 1024;
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
#[allow(unsafe_code)]
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
    #[error("101 Switching Protocols to a request that asked for no upgrade")]
    Upgrade,
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

/// The items of a comma-separated header value, without the spaces and tabs around them.
fn tokens(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(|t| t.trim_matches([' ', '\t'])).filter(|t| !t.is_empty())
}

fn has_token(list: &str, token: &str) -> bool {
    tokens(list).any(|t| t.eq_ignore_ascii_case(token))
}

/// Whether a `Connection` token names a header meant for this hop alone, to be dropped
/// (RFC 9110 §7.6.1). Not `close`, not the connection's own headers (dropped anyway), and
/// never a header the proxy's own decisions rest on: `Host` routes, `Content-Length` frames,
/// `Date` is written once. A peer must not be able to make the proxy lose those.
fn nominates(token: &str) -> bool {
    let is = |name: &str| token.eq_ignore_ascii_case(name);
    !(is("close") || is("host") || is("content-length") || is("date") || HOP_BY_HOP.iter().any(|h| is(h)))
}

fn header_line(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    // One check for room, not four.
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A length as RFC 9110 §8.6 writes it: digits only (no sign, no space, nothing else), and no
/// larger than a u64 (`str::parse` takes a `+`, and `trim` takes Unicode spaces).
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
