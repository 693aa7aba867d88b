//! Opaque TCP connections, per direction, service and version: opened, closed, failed to
//! connect, bytes each way and time open. For `/metrics`, and for telemetry (the topology's
//! TCP edges). A connection is counted when it opens and when it closes, under a lock: there
//! are far fewer connections than requests.

use super::render_labels;
use crate::sync::Locked;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use trellis_model::telemetry::{Direction, TcpCounts, TcpSeries};

type Key = (Direction, String, String);
/// A metric: its name, its help, and its value in a series.
type Column = (&'static str, &'static str, fn(&TcpCounts) -> String);

#[derive(Default)]
pub struct Tcp(Mutex<BTreeMap<Key, TcpSeries>>);

impl Tcp {
    fn update(&self, direction: Direction, service: &str, version: &str, f: impl FnOnce(&mut TcpCounts)) {
        let mut all = self.0.locked();
        let key = (direction, service.to_string(), version.to_string());
        f(&mut all.entry(key).or_insert_with(|| TcpSeries::new(direction, service, version)).counts);
    }

    pub fn opened(&self, direction: Direction, service: &str, version: &str) {
        self.update(direction, service, version, |s| s.opened += 1);
    }

    /// A connection that could not be made: no endpoint, or none answered.
    pub fn failed(&self, direction: Direction, service: &str, version: &str) {
        self.update(direction, service, version, |s| s.failed += 1);
    }

    /// `sent` toward the service, `received` from it.
    pub fn closed(
        &self,
        direction: Direction,
        service: &str,
        version: &str,
        (sent, received): (u64, u64),
        seconds: f64,
    ) {
        self.update(direction, service, version, |s| {
            s.closed += 1;
            s.sent_bytes += sent;
            s.received_bytes += received;
            s.seconds += seconds;
        });
    }

    /// Totals since the proxy started.
    pub fn series(&self) -> Vec<TcpSeries> {
        self.0.locked().values().cloned().collect()
    }

    pub fn render(&self, out: &mut String) {
        let all = self.series();
        let metrics: [Column; 6] = [
            ("trellis_proxy_tcp_open_total", "TCP connections opened to a `protocol: tcp` service.", |s| {
                s.opened.to_string()
            }),
            ("trellis_proxy_tcp_close_total", "TCP connections closed.", |s| s.closed.to_string()),
            (
                "trellis_proxy_tcp_connect_failures_total",
                "TCP connections that could not be made: no endpoint, or none answered.",
                |s| s.failed.to_string(),
            ),
            ("trellis_proxy_tcp_sent_bytes_total", "Bytes sent toward the service, of closed connections.", |s| {
                s.sent_bytes.to_string()
            }),
            (
                "trellis_proxy_tcp_received_bytes_total",
                "Bytes received from the service, of closed connections.",
                |s| s.received_bytes.to_string(),
            ),
            ("trellis_proxy_tcp_connection_seconds_total", "Time closed connections were open.", |s| {
                format!("{:.3}", s.seconds)
            }),
        ];
        for (name, help, value) in metrics {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in &all {
                let direction = match s.direction {
                    Direction::Inbound => "inbound",
                    Direction::Outbound => "outbound",
                };
                let labels = render_labels(&[
                    ("direction", direction),
                    ("dst_service", &s.service),
                    ("dst_version", &s.version),
                ]);
                let _ = writeln!(out, "{name}{{{labels}}} {}", value(&s.counts));
            }
        }
    }
}
