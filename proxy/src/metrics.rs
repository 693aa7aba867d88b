//! Counters and latency histograms, served in Prometheus text format on the admin port.
//!
//! Requests are counted twice, as Linkerd does: *effective* (`trellis_proxy_requests_total`,
//! what the application saw, once per request) and *actual* (`trellis_proxy_attempts_total`,
//! every attempt sent to an endpoint, retries included).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Every metric, with its help text; rendering follows this order.
const COUNTERS: &[(&str, &str)] = &[
    (
        "trellis_proxy_requests_total",
        "Requests as the application saw them, by direction, destination and status class.",
    ),
    ("trellis_proxy_attempts_total", "Attempts sent to endpoints, retries included."),
    ("trellis_proxy_retries_total", "Retries, by destination and whether the budget allowed them."),
    ("trellis_proxy_ejections_total", "Endpoints ejected after consecutive errors."),
    ("trellis_proxy_shed_total", "Requests refused because the proxy was at its concurrency limit."),
    ("trellis_proxy_mirrored_total", "Requests copied to a mirror version."),
    ("trellis_proxy_faults_total", "Faults injected, by kind."),
];

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    // Short critical sections per request; sharded atomics can come when a profile asks.
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn labels(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect::<Vec<_>>().join(",")
}

impl Metrics {
    pub fn inc(&self, name: &'static str, pairs: &[(&str, &str)]) {
        *lock(&self.counters).entry((name, labels(pairs))).or_default() += 1;
    }

    /// The effective request: counted and timed once.
    pub fn request(&self, direction: &str, service: &str, version: &str, status: &str, seconds: f64) {
        let pairs = [("direction", direction), ("dst_service", service), ("dst_version", version), ("status", status)];
        self.inc("trellis_proxy_requests_total", &pairs);
        let key = labels(&[("direction", direction), ("dst_service", service)]);
        let mut latency = lock(&self.latency);
        let h = latency.entry(key).or_default();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            h.counts[i] += 1;
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The value of one counter, for tests and the control plane's telemetry.
    pub fn get(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        let key = labels(pairs);
        lock(&self.counters).iter().filter(|((n, l), _)| *n == name && l.contains(&key)).map(|(_, v)| v).sum()
    }

    pub fn render(&self, proxy_id: &str, config_version: &str) -> String {
        let counters = lock(&self.counters).clone();
        let mut out = String::new();
        for (name, help) in COUNTERS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((_, l), v) in counters.iter().filter(|((n, _), _)| n == name) {
                let _ = writeln!(out, "{name}{{{l}}} {v}");
            }
        }
        let name = "trellis_proxy_response_latency_seconds";
        let _ = writeln!(out, "# HELP {name} Time to response headers, per request.\n# TYPE {name} histogram");
        for (l, h) in lock(&self.latency).iter() {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(out, "{name}_bucket{{{l},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum{{{l}}} {}\n{name}_count{{{l}}} {}", h.sum, h.count);
        }
        let _ = writeln!(out, "# HELP trellis_proxy_config_info The applied configuration version.");
        let _ = writeln!(out, "# TYPE trellis_proxy_config_info gauge");
        let _ = writeln!(
            out,
            "trellis_proxy_config_info{{{}}} 1",
            labels(&[("proxy_id", proxy_id), ("version", config_version)])
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

#[cfg(test)]
mod tests {
    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = super::Metrics::default();
        m.request("outbound", "inv", "v1", "2xx", 0.003);
        m.request("outbound", "inv", "v1", "2xx", 0.2);
        m.inc("trellis_proxy_retries_total", &[("dst_service", "inv"), ("result", "sent")]);
        let text = m.render("p", "r.1");
        assert!(text.contains("trellis_proxy_requests_total{direction=\"outbound\",dst_service=\"inv\",dst_version=\"v1\",status=\"2xx\"} 2"));
        assert!(text.contains(
            "trellis_proxy_response_latency_seconds_bucket{direction=\"outbound\",dst_service=\"inv\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("le=\"0.25\"} 2"));
        assert!(text.contains("trellis_proxy_retries_total{dst_service=\"inv\",result=\"sent\"} 1"));
        assert_eq!(m.get("trellis_proxy_retries_total", &[("dst_service", "inv")]), 1);
    }
}
