//! A request's head as the proxy sends it to an HTTP/2 upstream (RFC 9113 §8.3.1).
//!
//! `:authority` is the authority the client asked for (its Host), as Envoy and Linkerd forward
//! it, not the endpoint's address: the application sees the name it is called by. No Host
//! header goes with it, and none of HTTP/1.1's connection headers.

use super::hpack;
use http::header::{self, HeaderValue};

/// Appends the head of a request for the endpoint at `addr`, with a `content-length` when the
/// body's `length` is known and no header gave it.
pub fn encode(parts: &http::request::Parts, addr: &str, length: Option<usize>, out: &mut Vec<u8>) {
    let authority = match parts.headers.get(header::HOST) {
        Some(host) => host.as_bytes(),
        None => parts.uri.authority().map_or(addr, |a| a.as_str()).as_bytes(),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    hpack::pseudo(2, parts.method.as_str().as_bytes(), out);
    hpack::pseudo(6, b"http", out);
    hpack::pseudo(1, authority, out);
    hpack::pseudo(4, path.as_bytes(), out);
    let mut has_length = false;
    for (name, value) in &parts.headers {
        let hop = *name == header::HOST || *name == header::PROXY_AUTHORIZATION || *name == header::PROXY_AUTHENTICATE;
        if hop || super::connection_specific(name, value.as_bytes()) {
            continue;
        }
        has_length |= *name == header::CONTENT_LENGTH;
        hpack::header(name, value, out);
    }
    let bodied = matches!(parts.method, http::Method::POST | http::Method::PUT | http::Method::PATCH);
    if let Some(length) = length
        && !has_length
        && (length > 0 || bodied)
    {
        hpack::header(&header::CONTENT_LENGTH, &HeaderValue::from(length), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http2::hpack::Decoder;

    fn fields(block: &[u8]) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        Decoder::default()
            .decode(block, |name, value, _| {
                seen.push((name.as_str().to_string(), String::from_utf8(value.to_vec()).unwrap()))
            })
            .unwrap();
        seen
    }

    #[test]
    fn the_clients_authority_goes_upstream_without_hop_by_hop_headers() {
        let req = http::Request::post("/pkg.Svc/Call?x=1")
            .header("host", "catalog:8080")
            .header("te", "trailers")
            .header("connection", "keep-alive")
            .header("proxy-authorization", "Basic eA==")
            .header("transfer-encoding", "chunked")
            .header("x-kept", "1")
            .body(())
            .unwrap();
        let mut out = Vec::new();
        encode(&req.into_parts().0, "198.18.0.2:9000", Some(12), &mut out);
        let got = fields(&out);
        let expect = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "catalog:8080"),
            (":path", "/pkg.Svc/Call?x=1"),
            ("te", "trailers"),
            ("x-kept", "1"),
            ("content-length", "12"),
        ];
        assert_eq!(got, expect.map(|(n, v)| (n.to_string(), v.to_string())));
        assert_eq!(&out[..2], [0x83, 0x86], "POST and http by the static table's index");
    }

    #[test]
    fn without_a_host_the_authority_is_the_targets_or_the_endpoints() {
        let mut out = Vec::new();
        let req = http::Request::get("http://svc/a").body(()).unwrap();
        encode(&req.into_parts().0, "10.0.0.1:80", None, &mut out);
        assert_eq!(fields(&out)[2], (":authority".into(), "svc".into()));
        out.clear();
        let req = http::Request::delete("/").header("te", "gzip").body(()).unwrap();
        encode(&req.into_parts().0, "10.0.0.1:80", Some(0), &mut out);
        let got = fields(&out);
        assert_eq!(got[2], (":authority".into(), "10.0.0.1:80".into()));
        assert_eq!(got[3], (":path".into(), "/".into()));
        assert_eq!(got.len(), 4, "no te but trailers, no content-length of 0 for DELETE: {got:?}");
    }
}
