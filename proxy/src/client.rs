//! Pooled upstream clients: HTTP/1.1, and HTTP/2 with prior knowledge for services declared
//! `http2` or `grpc` (trailers and streams in both directions need it end to end).

use bytes::Bytes;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use std::time::Duration;
use trellis_model::config::Protocol;

/// Request bodies as the proxy sends them: streamed through, or replayed from a buffer.
pub type ReqBody = http_body_util::combinators::UnsyncBoxBody<Bytes, hyper::Error>;
pub type HttpClient = Client<HttpConnector, ReqBody>;

#[derive(Clone)]
pub struct Clients {
    http1: HttpClient,
    http2: HttpClient,
}

impl Default for Clients {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        // Every hop on the data path wants Nagle off; a dead endpoint must fail fast.
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            // A burst must not leave a thousand idle upstream connections behind: keep as many
            // as nginx's `keepalive 128` would.
            b.pool_idle_timeout(Duration::from_secs(30)).pool_max_idle_per_host(128);
            b
        };
        Clients { http1: builder().build(connector.clone()), http2: builder().http2_only(true).build(connector) }
    }
}

/// The HTTP version a request is sent with to an upstream of `protocol`.
pub fn wire_version(protocol: Protocol) -> http::Version {
    match protocol {
        Protocol::Http => http::Version::HTTP_11,
        Protocol::Http2 | Protocol::Grpc => http::Version::HTTP_2,
    }
}

impl Clients {
    pub fn http1(&self) -> &HttpClient {
        &self.http1
    }

    pub fn for_protocol(&self, protocol: Protocol) -> &HttpClient {
        match protocol {
            Protocol::Http => &self.http1,
            Protocol::Http2 | Protocol::Grpc => &self.http2,
        }
    }
}
