//! Counters and latency histograms, served in Prometheus text format on the admin port.
//!
//! Requests are counted twice, as Linkerd does: *effective* (`trellis_proxy_requests_total`,
//! what the application saw, once per request) and *actual* (`trellis_proxy_attempts_total`,
//! every attempt sent to an endpoint, retries included).
//!
//! A routed request counts through a [`Handle`], found by its labels once per config and
//! kept with it (as Linkerd resolves its metric families per route, not per request), and an
//! inbound one through the handle of the proxy's own service; other counters are found by
//! their labels when counted.

use crate::hash::Map;
use crate::sync::Locked;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::{Arc, Mutex};

const REQUESTS: &str = "trellis_proxy_requests_total";
const ATTEMPTS: &str = "trellis_proxy_attempts_total";

/// Every metric, with its help text; rendering follows this order.
const COUNTERS: &[(&str, &str)] = &[
    (
        REQUESTS,
        "Requests as the application saw them, by direction, destination and status class (and grpc_status, for gRPC).",
    ),
    (ATTEMPTS, "Attempts sent to endpoints, retries included."),
    ("trellis_proxy_retries_total", "Retries, by destination and whether the budget allowed them."),
    ("trellis_proxy_ejections_total", "Endpoints ejected after consecutive errors."),
    ("trellis_proxy_shed_total", "Requests refused because the proxy was at its concurrency limit."),
    ("trellis_proxy_mirrored_total", "Requests copied to a mirror version."),
    ("trellis_proxy_faults_total", "Faults injected, by kind."),
    (
        "trellis_proxy_inbound_connections_total",
        "Inbound connections by transport: mtls, or plaintext (in permissive mode, to see when strict is safe).",
    ),
    ("trellis_proxy_inbound_tls_failures_total", "Inbound TLS handshakes refused or abandoned, by reason."),
    ("trellis_proxy_access_denied_total", "Inbound requests denied, by verified caller and what denied them."),
    (
        "trellis_proxy_rate_limited_total",
        "Inbound requests refused by a rate limit (429), by caller, the limit (by) and its scope (total or caller).",
    ),
    (
        "trellis_proxy_connection_limit_waits_total",
        "New upstream connections that waited for a slot under the service's maxConnections.",
    ),
];

// A label set in Prometheus form, values escaped: for rendering, never per request.
use trellis_model::exposition::labels as render_labels;
use trellis_model::telemetry::{BUCKETS, BUCKETS_MS, Direction};

/// Requests of one direction, destination service and version: what telemetry reports.
#[derive(Clone, Debug)]
pub struct Series {
    pub direction: Direction,
    pub service: String,
    pub version: String,
    pub route: String,
    pub requests: u64,
    pub failures: u64,
    pub buckets: [u64; BUCKETS],
    pub sum_seconds: f64,
}

/// One counter: a metric and its labels.
struct Counter {
    name: &'static str,
    labels: Vec<(&'static str, String)>,
    value: u64,
}

impl Counter {
    fn is(&self, name: &str, pairs: &[(&'static str, &str)]) -> bool {
        self.name == name
            && self.labels.len() == pairs.len()
            && self.labels.iter().zip(pairs).all(|((k, v), (pk, pv))| k == pk && v == pv)
    }
}

/// The entry `is` picks among those filed under the hash of `key`, made by `make` when there
/// is none: the request path counts without rendering, copying or allocating anything.
fn find_or_add<T>(
    all: &mut Map<u64, Vec<T>>,
    key: impl std::hash::Hash,
    is: impl Fn(&T) -> bool,
    make: impl FnOnce() -> T,
) -> &mut T {
    use std::hash::Hasher;
    let mut h = crate::hash::Fx::default();
    key.hash(&mut h);
    let same = all.entry(h.finish()).or_default();
    let i = match same.iter().position(is) {
        Some(i) => i,
        None => {
            same.push(make());
            same.len() - 1
        }
    };
    &mut same[i]
}

/// The requests of one label set: the series, and the counts by status.
struct Requests {
    direction: Direction,
    service: String,
    version: String,
    route: String,
    counts: Mutex<RequestCounts>,
}

/// A status class (`2xx`) or the kind of error the proxy answered with, and a gRPC call's code.
pub type Status = (&'static str, Option<u8>);

#[derive(Default)]
struct RequestCounts {
    by_status: Vec<(Status, u64)>,
    requests: u64,
    failures: u64,
    buckets: [u64; BUCKETS],
    sum_seconds: f64,
}

impl Requests {
    fn is(&self, direction: Direction, service: &str, version: &str, route: &str) -> bool {
        self.direction == direction && self.service == service && self.version == version && self.route == route
    }

    /// Its labels in Prometheus form, without the status.
    fn labels(&self) -> String {
        let direction = direction_label(self.direction);
        let pairs = [
            ("direction", direction),
            ("dst_service", &self.service),
            ("dst_version", &self.version),
            ("route", &self.route),
        ];
        render_labels(&pairs)
    }

    /// The effective request: counted and timed once. `status` is a class (`2xx`) or the kind
    /// of error the proxy answered with, with a gRPC call's code.
    fn record(&self, (status, grpc): Status, seconds: f64) {
        let mut c = self.counts.locked();
        add(&mut c.by_status, (status, grpc));
        // Client errors are the caller's; server errors and the proxy's own are failures, and
        // so is a gRPC call the service failed, whatever its HTTP status.
        let failed = status == "5xx" || !status.ends_with("xx") || grpc.is_some_and(crate::grpc::is_failure);
        c.requests += 1;
        c.failures += u64::from(failed);
        c.buckets[trellis_model::telemetry::bucket_of(seconds * 1000.0)] += 1;
        c.sum_seconds += seconds;
    }

    fn series(&self) -> Series {
        let c = self.counts.locked();
        Series {
            direction: self.direction,
            service: self.service.clone(),
            version: self.version.clone(),
            route: self.route.clone(),
            requests: c.requests,
            failures: c.failures,
            buckets: c.buckets,
            sum_seconds: c.sum_seconds,
        }
    }
}

/// The attempts sent to one service's version, by status.
struct Attempts {
    service: String,
    version: String,
    by_status: Mutex<Vec<(Status, u64)>>,
}

/// Counts by status as rendered label sets: `labels` with the status (and gRPC code) added.
fn by_status(out: &mut Map<String, u64>, labels: &str, counts: &[(Status, u64)]) {
    for ((status, grpc), n) in counts {
        let status = match grpc {
            Some(code) => render_labels(&[("status", status), ("grpc_status", &crate::grpc::LABELS[*code as usize])]),
            None => render_labels(&[("status", status)]),
        };
        out.insert(format!("{labels},{status}"), *n);
    }
}

/// On every request: the statuses are constants, so the same one is mostly the same pointer.
#[inline]
fn add(by_status: &mut Vec<(Status, u64)>, status: Status) {
    let same = |s: &Status| (std::ptr::eq(s.0, status.0) || s.0 == status.0) && s.1 == status.1;
    match by_status.iter_mut().find(|(s, _)| same(s)) {
        Some((_, n)) => *n += 1,
        None => by_status.push((status, 1)),
    }
}

/// Where a routed destination's requests (by direction, service, version and route) and
/// attempts (by service and version) are counted.
#[derive(Clone)]
pub struct Handle {
    requests: Arc<Requests>,
    attempts: Arc<Attempts>,
}

impl Handle {
    pub fn service(&self) -> &str {
        &self.requests.service
    }

    pub fn version(&self) -> &str {
        &self.requests.version
    }

    /// The rule's label.
    pub fn route(&self) -> &str {
        &self.requests.route
    }

    /// See [`Metrics::request`].
    pub fn request(&self, status: Status, seconds: f64) {
        self.requests.record(status, seconds);
    }

    /// An attempt sent to an endpoint, by its status class or how it failed.
    pub fn attempt(&self, status: &'static str) {
        add(&mut self.attempts.by_status.locked(), (status, None));
    }
}

fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

mod tcp;

#[derive(Default)]
pub struct Metrics {
    /// Opaque TCP connections.
    pub tcp: tcp::Tcp,
    // Short critical sections; both found by label values (see `find_or_add`).
    counters: Mutex<Map<u64, Vec<Counter>>>,
    requests: Mutex<Map<u64, Vec<Arc<Requests>>>>,
    attempts: Mutex<Map<u64, Vec<Arc<Attempts>>>>,
    /// Denied inbound requests by (caller, what denied them): for telemetry and the topology.
    denials: Mutex<HashMap<(String, String), u64>>,
    /// Inbound requests refused by a rate limit, by (caller, the limit): for telemetry.
    limited: Mutex<HashMap<(String, String), u64>>,
    /// Unix seconds; 0 without a certificate.
    identity_expiry: std::sync::atomic::AtomicI64,
    /// Spans exported to an OpenTelemetry collector, dropped or failed.
    pub spans: SpanCounts,
}

impl Metrics {
    pub fn inc(&self, name: &'static str, pairs: &[(&'static str, &str)]) {
        let mut all = self.counters.locked();
        let make = || Counter { name, labels: pairs.iter().map(|(k, v)| (*k, v.to_string())).collect(), value: 0 };
        find_or_add(&mut all, (name, pairs), |c| c.is(name, pairs), make).value += 1;
    }

    /// Every counter's value by metric and rendered labels.
    fn counts(&self) -> Map<&'static str, Map<String, u64>> {
        let mut counts: Map<&'static str, Map<String, u64>> = Map::default();
        for c in self.counters.locked().values().flatten() {
            counts.entry(c.name).or_default().insert(render_labels(&c.labels), c.value);
        }
        let requests = counts.entry(REQUESTS).or_default();
        for r in self.requests.locked().values().flatten() {
            by_status(requests, &r.labels(), &r.counts.locked().by_status);
        }
        let attempts = counts.entry(ATTEMPTS).or_default();
        for a in self.attempts.locked().values().flatten() {
            let labels = render_labels(&[("dst_service", &a.service), ("dst_version", &a.version)]);
            by_status(attempts, &labels, &a.by_status.locked());
        }
        counts
    }

    /// A request the inbound side denied: counted for `/metrics` and for telemetry.
    pub fn denied(&self, caller: &str, by: &str) {
        self.inc("trellis_proxy_access_denied_total", &[("caller", caller), ("by", by)]);
        *self.denials.locked().entry((caller.to_string(), by.to_string())).or_default() += 1;
    }

    /// Totals of denied requests by (caller, what denied them).
    pub fn denials(&self) -> Vec<((String, String), u64)> {
        self.denials.locked().iter().map(|(k, n)| (k.clone(), *n)).collect()
    }

    /// A request a rate limit refused: counted for `/metrics` and for telemetry.
    pub fn rate_limited(&self, caller: &str, by: &str, scope: &str) {
        self.inc("trellis_proxy_rate_limited_total", &[("caller", caller), ("by", by), ("scope", scope)]);
        *self.limited.locked().entry((caller.to_string(), by.to_string())).or_default() += 1;
    }

    /// Totals of rate-limited requests by (caller, the limit).
    pub fn limited(&self) -> Vec<((String, String), u64)> {
        self.limited.locked().iter().map(|(k, n)| (k.clone(), *n)).collect()
    }

    /// The effective request: counted and timed once. `status` is a class (`2xx`) or the
    /// kind of error the proxy answered with, with a gRPC call's code.
    pub fn request(
        &self,
        direction: Direction,
        service: &str,
        version: &str,
        route: &str,
        status: Status,
        seconds: f64,
    ) {
        self.requests_of(direction, service, version, route).record(status, seconds);
    }

    fn requests_of(&self, direction: Direction, service: &str, version: &str, route: &str) -> Arc<Requests> {
        let mut all = self.requests.locked();
        let make = || {
            let (service, version, route) = (service.to_string(), version.to_string(), route.to_string());
            Arc::new(Requests { direction, service, version, route, counts: Mutex::default() })
        };
        let key = (direction_label(direction), service, version, route);
        find_or_add(&mut all, key, |r| r.is(direction, service, version, route), make).clone()
    }

    /// The handle a routed destination counts through.
    pub fn handle(&self, direction: Direction, service: &str, version: &str, route: &str) -> Handle {
        let requests = self.requests_of(direction, service, version, route);
        let mut all = self.attempts.locked();
        let make = || {
            let (service, version) = (service.to_string(), version.to_string());
            Arc::new(Attempts { service, version, by_status: Mutex::default() })
        };
        let is = |a: &Arc<Attempts>| a.service == service && a.version == version;
        let attempts = find_or_add(&mut all, (service, version), is, make).clone();
        Handle { requests, attempts }
    }

    /// Runs `f` over the requests that reached a service: a request that did not (unknown,
    /// no config, shed) is counted in `trellis_proxy_requests_total` only. It is no service's
    /// traffic, and the control plane refuses a report with a series that names none.
    fn served<T>(&self, f: impl Fn(&Requests) -> T) -> Vec<T> {
        let all = self.requests.locked();
        let served = all.values().flatten().filter(|r| !r.service.is_empty() && !r.version.is_empty());
        // A series a handle was made for but no request came through is not reported.
        served.filter(|r| r.counts.locked().requests > 0).map(|r| f(r)).collect()
    }

    /// Cumulative counts per series, for telemetry.
    pub fn series(&self) -> Vec<Series> {
        self.served(Requests::series)
    }

    /// The sum of a counter over the label sets that include `pairs`, for tests.
    pub fn get(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        let key = render_labels(pairs);
        let counts = self.counts();
        counts.get(name).map_or(0, |m| m.iter().filter(|(l, _)| l.contains(&key)).map(|(_, v)| v).sum())
    }

    /// When this proxy's certificate expires (unix seconds).
    pub fn set_identity_expiry(&self, unix_s: i64) {
        self.identity_expiry.store(unix_s, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn render(&self, proxy_id: &str, config_version: &str) -> String {
        let counters = self.counts();
        let mut out = String::new();
        for (name, help) in COUNTERS {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            // Sorted, so scrapes and diffs are stable.
            let series: BTreeMap<&String, &u64> = counters.get(name).map(|m| m.iter().collect()).unwrap_or_default();
            for (l, v) in series {
                let _ = writeln!(out, "{name}{{{l}}} {v}");
            }
        }
        let name = "trellis_proxy_response_latency_seconds";
        let _ = writeln!(out, "# HELP {name} Time to response headers, per request.\n# TYPE {name} histogram");
        let series: BTreeMap<String, Series> = self.served(|r| (r.labels(), r.series())).into_iter().collect();
        for (l, s) in &series {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS_MS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(out, "{name}_bucket{{{l},le=\"{}\"}} {cumulative}", bound / 1000.0);
            }
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {}", s.requests);
            let _ = writeln!(out, "{name}_sum{{{l}}} {}\n{name}_count{{{l}}} {}", s.sum_seconds, s.requests);
        }
        self.tcp.render(&mut out);
        let _ = writeln!(out, "# HELP trellis_proxy_config_info The applied configuration version.");
        let _ = writeln!(out, "# TYPE trellis_proxy_config_info gauge");
        let info = render_labels(&[("proxy_id", proxy_id), ("version", config_version)]);
        let _ = writeln!(out, "trellis_proxy_config_info{{{info}}} 1");
        // This thread's: one runtime thread is the only one that batches.
        let batch = crate::batch::stats();
        for (name, help, value) in [
            ("trellis_proxy_batched_writes_total", "Socket writes handed to the per-pass batch.", batch.writes),
            ("trellis_proxy_write_submits_total", "io_uring submissions carrying the other writes.", batch.submits),
            ("trellis_proxy_write_sends_total", "Writes alone in their pass, sent with one send.", batch.alone),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        let name = "trellis_proxy_spans_total";
        let _ = writeln!(
            out,
            "# HELP {name} Request spans for an OpenTelemetry collector: exported, dropped (the queue was full) or failed (the collector refused them or could not be reached).\n# TYPE {name} counter"
        );
        let s = &self.spans;
        for (result, n) in [("exported", &s.exported), ("dropped", &s.dropped), ("failed", &s.failed)] {
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {}", n.load(std::sync::atomic::Ordering::Relaxed));
        }
        let expiry = self.identity_expiry.load(std::sync::atomic::Ordering::Relaxed);
        if expiry > 0 {
            let name = "trellis_proxy_identity_expiry_timestamp_seconds";
            let _ = writeln!(
                out,
                "# HELP {name} When this proxy's certificate expires.\n# TYPE {name} gauge\n{name} {expiry}"
            );
        }
        trellis_model::exposition::process(&mut out, &trellis_host::proc_files());
        trellis_model::exposition::build_info(&mut out, "proxy", env!("CARGO_PKG_VERSION"));
        out
    }
}

/// What became of request spans exported to an OpenTelemetry collector.
#[derive(Default)]
pub struct SpanCounts {
    pub exported: std::sync::atomic::AtomicU64,
    /// The queue was full.
    pub dropped: std::sync::atomic::AtomicU64,
    /// The collector refused them or could not be reached, tries included.
    pub failed: std::sync::atomic::AtomicU64,
}

pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = super::Metrics::default();
        let out = trellis_model::telemetry::Direction::Outbound;
        m.request(out, "inv", "v1", "/stock", ("2xx", None), 0.003);
        m.request(out, "inv", "v1", "/stock", ("2xx", None), 0.2);
        m.inc("trellis_proxy_retries_total", &[("dst_service", "inv"), ("result", "sent")]);
        let text = m.render("p", "r.1");
        assert!(text.contains("trellis_proxy_requests_total{direction=\"outbound\",dst_service=\"inv\",dst_version=\"v1\",route=\"/stock\",status=\"2xx\"} 2"));
        assert!(text.contains(
            "trellis_proxy_response_latency_seconds_bucket{direction=\"outbound\",dst_service=\"inv\",dst_version=\"v1\",route=\"/stock\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("le=\"0.25\"} 2"));
        assert!(text.contains("trellis_proxy_retries_total{dst_service=\"inv\",result=\"sent\"} 1"));
        assert_eq!(m.get("trellis_proxy_retries_total", &[("dst_service", "inv")]), 1);
    }

    #[test]
    fn requests_that_reached_no_service_are_counted_but_are_no_series() {
        let m = super::Metrics::default();
        let out = trellis_model::telemetry::Direction::Outbound;
        m.request(out, "", "", "", ("unknown-service", None), 0.001);
        m.request(out, "inv", "", "", ("no-route", None), 0.001);
        m.request(out, "inv", "v1", "", ("2xx", None), 0.001);
        assert_eq!(m.get("trellis_proxy_requests_total", &[("status", "unknown-service")]), 1);
        // The control plane refuses a whole report with a series naming no service or version.
        let series: Vec<_> = m.series().into_iter().map(|s| (s.service, s.version)).collect();
        assert_eq!(series, [("inv".to_string(), "v1".to_string())]);
    }

    #[test]
    fn handles_count_into_the_series_of_their_labels_and_an_unused_one_shows_nothing() {
        let m = super::Metrics::default();
        let out = trellis_model::telemetry::Direction::Outbound;
        let unused = m.handle(out, "inv", "v2", "/stock");
        let first = m.handle(out, "inv", "v1", "/stock");
        first.request(("2xx", None), 0.001);
        first.attempt("5xx");
        first.attempt("2xx");
        // The next config's handle for the same labels: the counts go on.
        let next = m.handle(out, "inv", "v1", "/stock");
        next.request(("5xx", None), 0.001);
        next.attempt("2xx");
        // Another rule to the same version: its own requests, the version's attempts.
        m.handle(out, "inv", "v1", "/other").attempt("2xx");
        m.request(out, "inv", "v1", "/stock", ("2xx", None), 0.001);
        let text = m.render("p", "r.1");
        let requests = "trellis_proxy_requests_total{direction=\"outbound\",dst_service=\"inv\",dst_version=\"v1\",route=\"/stock\"";
        assert!(text.contains(&format!("{requests},status=\"2xx\"}} 2")), "{text}");
        assert!(text.contains(&format!("{requests},status=\"5xx\"}} 1")), "{text}");
        let attempts = "trellis_proxy_attempts_total{dst_service=\"inv\",dst_version=\"v1\"";
        assert!(text.contains(&format!("{attempts},status=\"2xx\"}} 3")), "{text}");
        assert!(text.contains(&format!("{attempts},status=\"5xx\"}} 1")), "{text}");
        assert!(!text.contains("v2") && !text.contains("/other"), "no request, no series: {text}");
        let series: Vec<_> = m.series().into_iter().map(|s| (s.version, s.requests, s.failures)).collect();
        assert_eq!(series, [("v1".to_string(), 3, 1)]);
        drop(unused);
    }

    #[test]
    fn a_grpc_call_the_service_failed_is_a_failure_whatever_its_http_status() {
        let m = super::Metrics::default();
        let h = m.handle(trellis_model::telemetry::Direction::Inbound, "inv", "v1", "");
        h.request(("2xx", Some(crate::grpc::OK)), 0.001);
        h.request(("2xx", Some(crate::grpc::UNAVAILABLE)), 0.001);
        h.request(("2xx", Some(crate::grpc::CANCELLED)), 0.001);
        h.request(("timeout", Some(crate::grpc::DEADLINE_EXCEEDED)), 0.001);
        let text = m.render("p", "r.1");
        assert!(text.contains("route=\"\",status=\"2xx\",grpc_status=\"14\"} 1"), "{text}");
        assert!(text.contains("route=\"\",status=\"2xx\",grpc_status=\"0\"} 1"), "{text}");
        assert_eq!(m.get("trellis_proxy_requests_total", &[("status", "2xx")]), 3);
        let series: Vec<_> = m.series().into_iter().map(|s| (s.requests, s.failures)).collect();
        assert_eq!(series, [(4, 2)], "UNAVAILABLE and the proxy's timeout; not OK, not CANCELLED");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = super::Metrics::default();
        m.inc("trellis_proxy_ejections_total", &[("endpoint", "a\"b\\c\nd")]);
        let text = m.render("p", "r.1");
        assert!(text.contains(r#"trellis_proxy_ejections_total{endpoint="a\"b\\c\nd"} 1"#), "{text}");
    }
}
