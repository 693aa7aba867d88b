//! A request's or a response's head from its decoded fields, checked as RFC 9113 §8.2-8.3
//! asks: pseudo-headers first, each once, the ones the head needs and no others; lowercase
//! names (the decoder checks); none of HTTP/1.1's connection headers; `te` only as `trailers`.
//! A head that breaks a rule is malformed: its stream is reset with PROTOCOL_ERROR.

use super::hpack::Name;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// A head as the fields gave it, before it is a request or a response.
#[derive(Default)]
pub struct Head {
    status: Option<Bytes>,
    method: Option<Bytes>,
    scheme: Option<Bytes>,
    authority: Option<Bytes>,
    path: Option<Bytes>,
    pub headers: HeaderMap,
    /// The fields' size as SETTINGS_MAX_HEADER_LIST_SIZE counts it.
    pub size: usize,
    malformed: Option<&'static str>,
    regular_seen: bool,
}

impl Head {
    /// Takes one field of a head's block (`trailers`: of its trailers).
    pub fn field(&mut self, name: Name, value: Bytes, sensitive: bool, trailers: bool) {
        self.size += name.len() + value.len() + 32;
        if self.malformed.is_some() {
            return;
        }
        let slot = match name {
            Name::Header(name) => {
                self.regular_seen = true;
                return self.header(name, value, sensitive);
            }
            _ if trailers => return self.fail("a pseudo-header in trailers"),
            _ if self.regular_seen => return self.fail("a pseudo-header after a header"),
            Name::Method => &mut self.method,
            Name::Scheme => &mut self.scheme,
            Name::Authority => &mut self.authority,
            Name::Path => &mut self.path,
            Name::Status => &mut self.status,
            Name::OtherPseudo(_) => return self.fail("a pseudo-header HTTP/2 has no use for"),
        };
        if slot.replace(value).is_some() {
            self.fail("a pseudo-header twice");
        }
    }

    fn header(&mut self, name: HeaderName, value: Bytes, sensitive: bool) {
        if super::connection_specific(&name, &value) {
            return self.fail("a connection-specific header, or te other than trailers");
        }
        match HeaderValue::from_maybe_shared(value) {
            Ok(mut v) => {
                v.set_sensitive(sensitive);
                self.headers.append(name, v);
            }
            Err(_) => self.fail("a header value with bytes HTTP forbids"),
        }
    }

    fn fail(&mut self, why: &'static str) {
        self.malformed.get_or_insert(why);
    }

    /// The trailers, if they were well formed.
    pub fn trailers(self) -> Result<HeaderMap, &'static str> {
        match self.malformed {
            Some(why) => Err(why),
            None => Ok(self.headers),
        }
    }

    /// The request's parts, and its `content-length` if it has one.
    pub fn request(self) -> Result<(http::request::Parts, Option<u64>), &'static str> {
        if let Some(why) = self.malformed {
            return Err(why);
        }
        if self.status.is_some() {
            return Err(":status in a request");
        }
        let method = self.method.ok_or("no :method")?;
        let method = http::Method::from_bytes(&method).map_err(|_| "an invalid :method")?;
        let mut uri = http::uri::Parts::default();
        if method == http::Method::CONNECT {
            // The proxy refuses CONNECT with an answer (`check_parsed`): it needs the head.
            if self.scheme.is_some() || self.path.is_some() {
                return Err(":scheme or :path in a CONNECT");
            }
        } else {
            let path = self.path.filter(|p| !p.is_empty()).ok_or("no :path")?;
            let scheme = self.scheme.ok_or("no :scheme")?;
            uri.scheme = Some(http::uri::Scheme::try_from(&scheme[..]).map_err(|_| "an invalid :scheme")?);
            uri.path_and_query =
                Some(http::uri::PathAndQuery::from_maybe_shared(path).map_err(|_| "an invalid :path")?);
        }
        match self.authority {
            Some(a) => {
                uri.authority = Some(http::uri::Authority::from_maybe_shared(a).map_err(|_| "an invalid :authority")?)
            }
            // Without an authority the URI is the path alone (the Host header may name one).
            None => uri.scheme = None,
        }
        let uri = http::Uri::from_parts(uri).map_err(|_| "an invalid request target")?;
        let mut headers = self.headers;
        join_cookies(&mut headers);
        let length = content_length(&headers)?;
        let mut req = http::Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_2;
        *req.headers_mut() = headers;
        Ok((req.into_parts().0, length))
    }

    /// The response's parts, and its `content-length` if it has one. An informational (1xx)
    /// head is a response too; the caller waits for the final one after it.
    pub fn response(self) -> Result<(http::response::Parts, Option<u64>), &'static str> {
        if let Some(why) = self.malformed {
            return Err(why);
        }
        if self.method.is_some() || self.scheme.is_some() || self.authority.is_some() || self.path.is_some() {
            return Err("a request's pseudo-header in a response");
        }
        let status = self.status.ok_or("no :status")?;
        // Three digits, 100 to 999.
        let status = http::StatusCode::from_bytes(&status).map_err(|_| "an invalid :status")?;
        // HTTP/2 has no upgrades (RFC 9113 §8.6).
        if status == http::StatusCode::SWITCHING_PROTOCOLS {
            return Err("101 Switching Protocols over HTTP/2");
        }
        let length = content_length(&self.headers)?;
        let mut resp = http::Response::new(());
        *resp.status_mut() = status;
        *resp.headers_mut() = self.headers;
        Ok((resp.into_parts().0, length))
    }
}

/// The head's `content-length`: digits only, and every field that gives one agreeing.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, &'static str> {
    let mut length = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        let n = std::str::from_utf8(v.as_bytes())
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("an invalid content-length")?;
        if length.replace(n).is_some_and(|m| m != n) {
            return Err("content-lengths that disagree");
        }
    }
    Ok(length)
}

/// HTTP/2 lets a client split `cookie` into several fields; HTTP/1.1 allows one, so they are
/// joined with "; " before the request goes on (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (cookies.next(), cookies.next()) else { return };
    let mut joined = first.as_bytes().to_vec();
    for more in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(more.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(Name, &'static str)]) -> Head {
        let mut h = Head::default();
        for (name, value) in fields {
            h.field(name.clone(), Bytes::from_static(value.as_bytes()), false, false);
        }
        h
    }

    fn hdr(name: &'static str) -> Name {
        Name::Header(HeaderName::from_static(name))
    }

    #[test]
    fn a_well_formed_head_makes_a_request() {
        let (parts, length) = head(&[
            (Name::Method, "POST"),
            (Name::Scheme, "http"),
            (Name::Authority, "svc:8080"),
            (Name::Path, "/a?b=c"),
            (hdr("content-length"), "5"),
            (hdr("te"), "trailers"),
        ])
        .request()
        .unwrap();
        assert_eq!(parts.uri, "http://svc:8080/a?b=c");
        assert_eq!((parts.method, parts.version, length), (http::Method::POST, http::Version::HTTP_2, Some(5)));
        let (parts, _) = head(&[(Name::Method, "GET"), (Name::Scheme, "http"), (Name::Path, "/")]).request().unwrap();
        assert_eq!(parts.uri, "/", "no authority: the path alone");
        let (parts, _) = head(&[
            (Name::Method, "GET"),
            (Name::Scheme, "http"),
            (Name::Path, "/"),
            (hdr("cookie"), "a=1"),
            (hdr("x"), "y"),
            (hdr("cookie"), "b=2"),
        ])
        .request()
        .unwrap();
        let cookies: Vec<_> = parts.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2"], "split cookies are joined");
    }

    #[test]
    fn a_malformed_head_is_refused() {
        let ok = [(Name::Method, "GET"), (Name::Scheme, "http"), (Name::Path, "/")];
        let cases: Vec<Vec<(Name, &'static str)>> = vec![
            vec![(Name::Method, "GET"), (Name::Scheme, "http")],
            vec![(Name::Method, "GET"), (Name::Path, "/")],
            vec![(Name::Scheme, "http"), (Name::Path, "/")],
            vec![(Name::Method, "GET"), (Name::Method, "GET"), (Name::Scheme, "http"), (Name::Path, "/")],
            vec![(Name::Method, "GET"), (hdr("x"), "1"), (Name::Scheme, "http"), (Name::Path, "/")],
            vec![(Name::Status, "200"), (Name::Method, "GET"), (Name::Scheme, "http"), (Name::Path, "/")],
            vec![(Name::Method, "GET"), (Name::Scheme, "http"), (Name::Path, "/"), (Name::Status, "200")],
            [&ok[..], &[(hdr("connection"), "close")]].concat(),
            [&ok[..], &[(hdr("transfer-encoding"), "chunked")]].concat(),
            [&ok[..], &[(hdr("te"), "gzip")]].concat(),
            [&ok[..], &[(hdr("content-length"), "1"), (hdr("content-length"), "2")]].concat(),
            [&ok[..], &[(hdr("content-length"), "+1")]].concat(),
            [&ok[..], &[(hdr("x"), "a\nb")]].concat(),
            vec![(Name::Method, "GET"), (Name::Scheme, "http"), (Name::Path, "")],
        ];
        for fields in cases {
            assert!(head(&fields).request().is_err());
        }
        let mut trailers = Head::default();
        trailers.field(Name::Path, Bytes::from_static(b"/"), false, true);
        assert!(trailers.trailers().is_err(), "no pseudo-headers in trailers");
    }

    #[test]
    fn a_response_needs_its_status_and_no_request_pseudo_headers() {
        let (parts, length) = head(&[(Name::Status, "503"), (hdr("content-length"), "7"), (hdr("grpc-status"), "14")])
            .response()
            .unwrap();
        assert_eq!((parts.status.as_u16(), length), (503, Some(7)));
        assert_eq!(parts.headers["grpc-status"], "14");
        let (parts, _) = head(&[(Name::Status, "100")]).response().unwrap();
        assert!(parts.status.is_informational());
        let cases: Vec<Vec<(Name, &'static str)>> = vec![
            vec![],
            vec![(Name::Status, "20")],
            vec![(Name::Status, "2000")],
            vec![(Name::Status, "abc")],
            vec![(Name::Status, "101")],
            vec![(Name::Status, "200"), (Name::Status, "200")],
            vec![(Name::Status, "200"), (Name::Path, "/")],
            vec![(hdr("x"), "1"), (Name::Status, "200")],
            vec![(Name::Status, "200"), (hdr("connection"), "close")],
            vec![(Name::Status, "200"), (hdr("content-length"), "x")],
        ];
        for fields in cases {
            assert!(head(&fields).response().is_err());
        }
    }
}
