//! Request counters, served in Prometheus text format on the admin port.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub direction: &'static str,
    pub service: String,
    pub version: String,
    /// `2xx`..`5xx`, or the proxy error kind when the proxy answered itself.
    pub status: String,
}

#[derive(Default)]
pub struct Metrics {
    // A short critical section per request; sharded atomics come with the data-plane work.
    requests: Mutex<BTreeMap<Key, u64>>,
}

impl Metrics {
    pub fn record(&self, key: Key) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<Key, u64> {
        self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn render(&self, proxy_id: &str, config_version: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP trellis_proxy_requests_total Requests handled, by direction, destination and status class."
        );
        let _ = writeln!(out, "# TYPE trellis_proxy_requests_total counter");
        for (k, n) in self.snapshot() {
            let _ = writeln!(
                out,
                "trellis_proxy_requests_total{{direction=\"{}\",dst_service=\"{}\",dst_version=\"{}\",status=\"{}\"}} {n}",
                k.direction,
                escape(&k.service),
                escape(&k.version),
                escape(&k.status)
            );
        }
        let _ = writeln!(out, "# HELP trellis_proxy_config_info The applied configuration version.");
        let _ = writeln!(out, "# TYPE trellis_proxy_config_info gauge");
        let _ = writeln!(
            out,
            "trellis_proxy_config_info{{proxy_id=\"{}\",version=\"{}\"}} 1",
            escape(proxy_id),
            escape(config_version)
        );
        out
    }
}

pub fn status_class(status: http::StatusCode) -> String {
    format!("{}xx", status.as_u16() / 100)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
