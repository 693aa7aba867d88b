//! A response head as HTTP/2 sends it (RFC 9113 §8.2.2, §8.3.2): `:status`, then the headers
//! without HTTP/1.1's connection headers, with a `date`, and with a `content-length` when the
//! body's length is known and no header gave it.

use super::hpack;
use http::header::{self, HeaderValue};
use http_body::Body as _;

pub fn encode(head: &http::response::Parts, body: &crate::Body, out: &mut Vec<u8>) {
    hpack::status(head.status.as_u16(), out);
    let mut date = false;
    let mut length = false;
    for (name, value) in &head.headers {
        if super::connection_specific(name, value.as_bytes()) {
            continue;
        }
        date |= *name == header::DATE;
        length |= *name == header::CONTENT_LENGTH;
        hpack::header(name, value, out);
    }
    if !date && let Ok(now) = HeaderValue::from_bytes(&crate::transport::h1::date()) {
        hpack::header(&header::DATE, &now, out);
    }
    if !length
        && !body.is_end_stream()
        && let Some(n) = body.size_hint().exact()
    {
        hpack::header(&header::CONTENT_LENGTH, &HeaderValue::from(n), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_are_dropped_and_date_and_length_added() {
        let mut resp = http::Response::new(crate::errors::text("hello"));
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        let (head, body) = resp.into_parts();
        let mut out = Vec::new();
        encode(&head, &body, &mut out);
        let mut seen = Vec::new();
        hpack::Decoder::default().decode(&out, |name, value, _| seen.push((format!("{name:?}"), value))).unwrap();
        let names: Vec<_> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Status", "Header(\"x-kept\")", "Header(\"date\")", "Header(\"content-length\")"]);
        assert_eq!(seen[3].1, "5");
    }
}
