//! A request's span, from its start on the request path to its bytes in an export.

use super::proto::{KIND_CLIENT, KIND_SERVER, STATUS_ERROR, Writer};
use crate::stack::Dest;
use crate::trace::TraceId;
use std::time::Instant;
use trellis_model::telemetry::Direction;

/// What is known when a recorded request arrives.
pub(crate) struct Started {
    pub trace: TraceId,
    pub span: u64,
    /// The caller's span, when it sent a context.
    pub parent: Option<u64>,
    pub direction: Direction,
    pub start: Instant,
    pub method: http::Method,
    pub path: String,
    /// Inbound: who called, as the connection proved it.
    pub peer: Option<String>,
}

/// A finished span: where the request went is read from its route when it is exported, not
/// copied on the request path.
pub(crate) struct Span {
    pub started: Box<Started>,
    pub end: Instant,
    pub dest: Dest,
    /// The response's status; none when the proxy answered with an error of its own (`error`).
    pub status: u16,
    pub grpc: Option<u8>,
    /// The proxy's error, by kind (`no-route`, `timeout`...).
    pub error: Option<&'static str>,
}

impl Span {
    /// Writes this span as a `Span` message (trace.proto) into `w` as field `field`.
    pub fn encode(&self, w: &mut Writer, field: u32, unix: impl Fn(Instant) -> u64) {
        let s = &self.started;
        let (service, version, rule) = (self.dest.service(), self.dest.version(), self.dest.route());
        w.message(field, |w| {
            w.bytes(1, &s.trace.bytes());
            w.bytes(2, &s.span.to_be_bytes());
            if let Some(parent) = s.parent {
                w.bytes(4, &parent.to_be_bytes());
            }
            let name = match (self.grpc.is_some(), service) {
                (true, _) => s.path.trim_start_matches('/').to_string(),
                (false, "") => s.method.to_string(),
                (false, service) => format!("{} {service}", s.method),
            };
            w.string(5, &name);
            let outbound = s.direction == Direction::Outbound;
            w.uint(6, if outbound { KIND_CLIENT } else { KIND_SERVER });
            w.fixed64(7, unix(s.start));
            w.fixed64(8, unix(self.end));
            w.attribute(9, "http.request.method", s.method.as_str());
            w.attribute(9, "url.path", &s.path);
            w.int_attribute(9, "http.response.status_code", i64::from(self.status));
            if let Some(code) = self.grpc {
                w.attribute(9, "rpc.system", "grpc");
                w.int_attribute(9, "rpc.grpc.status_code", i64::from(code));
            }
            w.attribute(9, "trellis.direction", if outbound { "outbound" } else { "inbound" });
            for (key, value) in [("trellis.service", service), ("trellis.version", version), ("trellis.route", rule)] {
                if !value.is_empty() {
                    w.attribute(9, key, value);
                }
            }
            if let Dest::Routed(route) = &self.dest {
                w.int_attribute(9, "trellis.retries", i64::from(route.tries().saturating_sub(1)));
                if let Some(endpoint) = route.picked() {
                    let (host, port) = endpoint.addr.rsplit_once(':').unwrap_or((&endpoint.addr, ""));
                    w.attribute(9, "server.address", host.trim_start_matches('[').trim_end_matches(']'));
                    if let Ok(port) = port.parse::<i64>() {
                        w.int_attribute(9, "server.port", port);
                    }
                    if let Some(identity) = &endpoint.identity {
                        w.attribute(9, "trellis.peer.identity", identity);
                    }
                }
            }
            if let Some(peer) = &s.peer {
                w.attribute(9, "trellis.peer.identity", peer);
            }
            if let Some(kind) = self.error {
                w.attribute(9, "error.type", kind);
            }
            if self.failed() {
                w.message(15, |status| status.uint(3, STATUS_ERROR));
            }
            // The W3C flags: sampled, as every exported span is.
            w.fixed32(16, 1);
        });
    }

    /// A span is an error, as OpenTelemetry's conventions have it, when the proxy failed the
    /// request, the answer is a 5xx, or (gRPC) its status is a failure; a client also counts
    /// a 4xx or any gRPC status but OK.
    fn failed(&self) -> bool {
        let client = self.started.direction == Direction::Outbound;
        let by_grpc = self.grpc.is_some_and(|c| if client { c != 0 } else { crate::grpc::is_failure(c) });
        self.error.is_some() || self.status >= 500 || (client && self.status >= 400) || by_grpc
    }
}

/// An `ExportTraceServiceRequest` of `spans` from one resource.
pub(crate) fn request(spans: &[Span], resource: &[(String, String)], unix: impl Fn(Instant) -> u64) -> Vec<u8> {
    let mut w = Writer { buf: Vec::with_capacity(256 + spans.len() * 400) };
    w.message(1, |rs| {
        rs.message(1, |r| {
            for (key, value) in resource {
                r.attribute(1, key, value);
            }
            r.attribute(1, "telemetry.sdk.name", "trellis-proxy");
            r.attribute(1, "telemetry.sdk.language", "rust");
            r.attribute(1, "telemetry.sdk.version", env!("CARGO_PKG_VERSION"));
        });
        rs.message(2, |ss| {
            ss.message(1, |scope| {
                scope.string(1, "trellis-proxy");
                scope.string(2, env!("CARGO_PKG_VERSION"));
            });
            for span in spans {
                span.encode(ss, 2, &unix);
            }
        });
    });
    w.buf
}
