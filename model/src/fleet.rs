//! The fleet protocol between proxies and the control plane, in one place for both: the paths
//! a proxy calls and the JSON each carries. A proxy opens its config stream (`STREAM`, body a
//! [`Registration`], answer newline-delimited [`StreamMessage`]s), ACKs or NACKs the newest
//! config it applied ([`ACK`], an [`Ack`]), reports its counts ([`TELEMETRY`], a
//! `telemetry::Report`) and asks for its certificate ([`CERTIFY`], a [`CertifyRequest`],
//! answered with [`Issued`]).
//!
//! A proxy that registers `incremental` gets one full config, then only what changed for it
//! (a [`Delta`]), each naming the version it applies to; see [`delta`].

pub mod delta;

pub use delta::{Delta, EndpointChanges, Gap};

use crate::config::ProxyConfig;
use serde::{Deserialize, Serialize};

pub const STREAM: &str = "/fleet/v1/stream";
pub const ACK: &str = "/fleet/v1/ack";
pub const TELEMETRY: &str = "/fleet/v1/telemetry";
/// The one path open on the plaintext port once identities are on: a join token proves the
/// caller.
pub const CERTIFY: &str = "/fleet/v1/certify";
/// Names the proxy on every request, so that a control plane can tell who asks without
/// reading the body.
pub const PROXY_ID_HEADER: &str = "x-trellis-proxy-id";

/// On an accepted telemetry report: the seconds the control plane asks the proxy to wait
/// before its next one (as Envoy's load reporting service sets its reporting interval), so a
/// large fleet's reports arrive at a rate the control plane keeps up with.
pub const REPORT_EVERY_HEADER: &str = "x-trellis-report-every";

/// On the config stream's answer: the seconds between its pings, at most the
/// [`Registration::max_ping_every_s`] the proxy named, so a large fleet's idle streams cost
/// the control plane fewer wake-ups. Without it, [`DEFAULT_PING_EVERY_S`].
pub const PING_EVERY_HEADER: &str = "x-trellis-ping-every";

/// The seconds between pings a proxy may expect when it names no longer interval, or a
/// control plane says none.
pub const DEFAULT_PING_EVERY_S: u64 = 2;

/// The `Upgrade` token of the duplex stream. A proxy that sends it (HTTP/1.1, with
/// `Connection: upgrade`) on its `POST` to [`STREAM`] is answered `101 Switching Protocols`, and
/// the connection then carries newline-delimited JSON both ways: [`StreamMessage`]s to the
/// proxy, [`ProxyMessage`]s (its ACKs and reports) from it. One connection, and none of an
/// HTTP/2 connection's buffers and tables held for it while it idles.
pub const UPGRADE: &str = "trellis-fleet/1";

/// A message as one line of a stream, either way: its JSON and a newline.
pub fn line(message: &impl Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Silence this long on a stream pinged every `ping_every_s` (three pings missed) means the
/// stream is dead, as when the replica's host is cut off: 6.5 s at two seconds.
pub fn idle_timeout(ping_every_s: u64) -> std::time::Duration {
    std::time::Duration::from_millis(3_000 * ping_every_s.max(1) + 500)
}

/// A proxy announcing itself on its config stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub proxy_id: String,
    pub service: String,
    pub version: String,
    /// Where other proxies reach this one's inbound listener.
    pub inbound_addr: String,
    pub admin_addr: String,
    pub proxy_version: String,
    /// It applies [`StreamMessage::Delta`]s; without it, every change comes as a full config.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incremental: bool,
    /// The version it runs (after a reconnect): a control plane whose config for it has that
    /// version sends nothing until something changes, one that can tell what changed since
    /// sends a delta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// The longest gap between pings it waits out, in seconds: it reads
    /// [`PING_EVERY_HEADER`] on the answer. Without it, [`DEFAULT_PING_EVERY_S`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ping_every_s: Option<u64>,
}

/// One line of the config stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamMessage {
    Config(ProxyConfig),
    /// What changed since the config of version `base` (only to `incremental` proxies).
    Delta(Delta),
    /// Keeps idle streams alive through intermediaries and lets both sides notice a dead peer.
    Ping,
    /// On the duplex stream, a report taken (or a repeat of one taken): the seconds to wait
    /// before the next, as `x-trellis-report-every` says over HTTP.
    Reported {
        report_every: u64,
    },
    /// On the duplex stream, a report not read because intake has fallen behind: its counts go
    /// with the next one, in `retry_after` seconds (a 429 over HTTP).
    Deferred {
        retry_after: u64,
    },
    /// On the duplex stream, a line refused: which kind (`ack`, `report`, or `line` when it
    /// could not be read), and the status and message its HTTP request would have been
    /// answered with. The stream goes on.
    Refused {
        of: String,
        status: u16,
        error: String,
    },
}

/// One line a proxy sends on the duplex stream (see [`UPGRADE`]): what it would otherwise
/// `POST` to [`ACK`] or [`TELEMETRY`]. Each report is answered, in order, with
/// [`StreamMessage::Reported`], [`StreamMessage::Deferred`] or [`StreamMessage::Refused`]; an
/// ACK only when refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProxyMessage {
    Ack(Ack),
    Report(crate::telemetry::Report),
}

/// A proxy's answer to a pushed config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub proxy_id: String,
    pub version: String,
    /// `None` when applied; the reason when refused (a NACK), in which case the proxy keeps
    /// its previous config.
    pub error: Option<String>,
}

/// A proxy asks for its certificate: its service's join token and a CSR (its key stays home).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifyRequest {
    pub proxy_id: String,
    pub service: String,
    pub token: String,
    /// PEM; whatever names it asks for, the certificate names the token's service.
    pub csr: String,
}

/// A certificate the control plane issued, with the chain and anchor to verify peers by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// `spiffe://<trust-domain>/svc/<service>`.
    pub identity: String,
    /// PEM: the leaf, then the issuer.
    pub chain_pem: String,
    pub anchor_pem: String,
    pub not_after_ms: i64,
    /// Where the control plane takes certified proxies (mTLS), on its own host.
    #[serde(default)]
    pub fleet_port: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplex_lines_keep_the_shape_the_readme_documents() {
        let ack = r#"{"type":"ack","proxy_id":"p","version":"r.1","error":null}"#;
        let expected = Ack { proxy_id: "p".into(), version: "r.1".into(), error: None };
        assert_eq!(serde_json::from_str::<ProxyMessage>(ack).unwrap(), ProxyMessage::Ack(expected));
        let report = r#"{"type":"report","proxy_id":"p","seq":42,"series":[]}"#;
        let Ok(ProxyMessage::Report(report)) = serde_json::from_str(report) else { panic!("a report") };
        assert_eq!((report.proxy_id.as_str(), report.seq), ("p", 42));
        let line = |m: StreamMessage| serde_json::to_string(&m).unwrap();
        assert_eq!(line(StreamMessage::Reported { report_every: 2 }), r#"{"type":"reported","report_every":2}"#);
        assert_eq!(line(StreamMessage::Deferred { retry_after: 4 }), r#"{"type":"deferred","retry_after":4}"#);
        let refused = StreamMessage::Refused { of: "report".into(), status: 403, error: "no".into() };
        assert_eq!(line(refused), r#"{"type":"refused","of":"report","status":403,"error":"no"}"#);
    }
}
