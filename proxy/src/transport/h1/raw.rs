//! An upstream's HTTP/1.1 response headers kept as the lines it wrote, for the proxy's own
//! HTTP/1.1 server to copy out as they are.
//!
//! Building an `http::HeaderMap` for a response (a name lookup, a hash and an insert per
//! header) and writing it back out a header at a time was 8 % of the proxy's user-space work
//! per request (callgrind), for headers no layer reads. So a response from the proxy's HTTP/1.1 pool carries
//! its end-to-end header lines in its extensions as [`RawHeaders`], and its `HeaderMap` holds
//! only what the proxy itself adds. Every other writer of responses (hyper, for HTTP/2 and the
//! connections handed to it) first moves them into the map with [`into_header_map`].

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// Header lines as the upstream wrote them, `Name: value\r\n` each: the connection's own
/// (`Connection`, `Transfer-Encoding`, the other hop-by-hop headers) left out, and a
/// `Content-Length` only when it frames the body.
#[derive(Clone, Debug, PartialEq)]
pub struct RawHeaders {
    lines: Bytes,
    /// The length the lines declare, which frames the body.
    pub content_length: Option<u64>,
    /// The lines include a `Date`.
    pub has_date: bool,
    /// Interim (1xx) responses that came first, whole heads to forward ahead of this one;
    /// empty mostly. Only an HTTP/1.1 client can be sent them (hyper's server cannot).
    interim: Bytes,
}

impl RawHeaders {
    /// `lines` must be whole header lines, each ending in CRLF, that httparse accepted.
    pub(super) fn new(lines: Bytes, content_length: Option<u64>, has_date: bool) -> Self {
        debug_assert!(lines.is_empty() || lines.ends_with(b"\r\n"));
        RawHeaders { lines, content_length, has_date, interim: Bytes::new() }
    }

    /// With 1xx heads to go first.
    pub(super) fn with_interim(self, interim: Bytes) -> Self {
        RawHeaders { interim, ..self }
    }

    pub fn interim(&self) -> &[u8] {
        &self.interim
    }

    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Each header as a name and value, in the order written.
    fn pairs(&self) -> impl Iterator<Item = (HeaderName, HeaderValue)> + '_ {
        let mut at = 0;
        std::iter::from_fn(move || {
            while at < self.lines.len() {
                // Each line ends in CRLF: its LF is found a byte at a time, once (a search for
                // the two-byte pair cost a quarter of an HTTP/2 response's header work).
                let rest = &self.lines[at..];
                let lf = rest.iter().position(|&b| b == b'\n')?;
                let (line, start) = (&rest[..lf], at);
                at += lf + 1;
                // httparse accepted every line; one that `http` does not is left out, not
                // passed on unchecked.
                let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
                let Ok(name) = HeaderName::from_bytes(&line[..colon]) else { continue };
                let after = &line[colon + 1..];
                let lead = after.len() - after.trim_ascii_start().len();
                let from = start + colon + 1 + lead;
                let value = self.lines.slice(from..from + after.trim_ascii().len());
                let Ok(value) = HeaderValue::from_maybe_shared(value) else { continue };
                return Some((name, value));
            }
            None
        })
    }
}

/// Moves a response's raw header lines, if it has any, into its `HeaderMap`, ahead of what the
/// proxy added there. For any writer of responses but the proxy's own HTTP/1.1 server.
pub fn into_header_map<B>(resp: &mut http::Response<B>) {
    let Some(raw) = resp.extensions_mut().remove::<RawHeaders>() else { return };
    let added = std::mem::take(resp.headers_mut());
    // Sized to fit, not generously: a map of a few entries comes from the allocator's
    // thread cache, and one of a dozen from its slower paths (callgrind: 500 instructions).
    let lines = raw.lines.iter().filter(|&&b| b == b'\n').count();
    let mut headers = HeaderMap::with_capacity(lines + added.len());
    for (name, value) in raw.pairs() {
        headers.append(name, value);
    }
    let mut name = None;
    for (n, value) in added {
        // `into_iter` names only the first of each name's values.
        name = n.or(name);
        if let Some(name) = &name {
            headers.append(name.clone(), value);
        }
    }
    *resp.headers_mut() = headers;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lines_move_into_the_map_in_order_before_what_the_proxy_added() {
        let lines =
            Bytes::from_static(b"Content-Type: text/plain\r\nSet-Cookie: a=1\r\nset-cookie:b=2  \r\nX-Empty:\r\n");
        let mut resp = http::Response::new(());
        resp.headers_mut().append("x-added", HeaderValue::from_static("1"));
        resp.headers_mut().append("x-added", HeaderValue::from_static("2"));
        resp.extensions_mut().insert(RawHeaders::new(lines, None, false));
        into_header_map(&mut resp);
        let h = resp.headers();
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h.get_all("set-cookie").iter().collect::<Vec<_>>(), ["a=1", "b=2"]);
        assert_eq!(h["x-empty"], "");
        assert_eq!(h.get_all("x-added").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h.len(), 6);
        assert!(resp.extensions().get::<RawHeaders>().is_none(), "moved, not copied");

        let mut plain = http::Response::new(());
        plain.headers_mut().insert("x-a", HeaderValue::from_static("1"));
        into_header_map(&mut plain);
        assert_eq!(plain.headers().len(), 1, "a response without raw lines is left as it is");
    }
}
