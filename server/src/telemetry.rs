//! Golden metrics from the proxies' reports: requests per second, success rate and latency
//! quantiles per service, version and edge (caller → callee), over sliding windows.
//!
//! Reports are kept in one-second buckets for fifteen minutes; a window sums the buckets it
//! covers. Inbound series (what a service received) make the node metrics; outbound series
//! (what a caller sent) make the edges.
//!
//! Replicas share what their own proxies reported: each hands on its finished seconds
//! ([`Telemetry::take_finished`]) and adds the others' into the same buckets
//! ([`Telemetry::merge`]), so every replica (and the leader's rollout analyses) counts the
//! traffic of the whole fleet.

use crate::sync::Locked;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use trellis_api::Golden;
use trellis_model::telemetry::{BUCKETS, Direction, Report, TcpCounts, quantile_ms};

/// Fifteen minutes of one-second buckets: the Traffic page's span.
pub const RETENTION_S: u64 = 900;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Key {
    /// The calling service for edges; `None` for what a service received.
    pub caller: Option<String>,
    pub service: String,
    pub version: String,
    /// The caller's route rule (edges only).
    pub route: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub failures: u64,
    pub buckets: [u64; BUCKETS],
}

impl Counts {
    pub fn merge(&mut self, other: &Counts) {
        self.add(other.requests, other.failures, &other.buckets);
    }

    fn add(&mut self, requests: u64, failures: u64, buckets: &[u64]) {
        self.requests += requests;
        self.failures += failures;
        for (a, b) in self.buckets.iter_mut().zip(buckets) {
            *a += b;
        }
    }

    pub fn golden(&self, window_s: u64) -> Golden {
        let rate = |n: u64| n as f64 / window_s.max(1) as f64;
        Golden {
            rps: rate(self.requests),
            success_rate: (self.requests > 0).then(|| 1.0 - self.failures as f64 / self.requests as f64),
            p50_ms: quantile_ms(&self.buckets, 0.5),
            p95_ms: quantile_ms(&self.buckets, 0.95),
            p99_ms: quantile_ms(&self.buckets, 0.99),
            requests: self.requests,
        }
    }
}

/// Proxies report every 2 s, so the newest second whose reports have all arrived is some 3 s
/// old. Every window and chart ends there ([`settled`]): a figure taken from a second still
/// filling reads as traffic falling.
pub const SETTLE_S: u64 = 3;

/// The newest complete second at `now_s`.
pub fn settled(now_s: u64) -> u64 {
    now_s.saturating_sub(SETTLE_S)
}

/// Opaque TCP connections over a window, as the API shows them.
pub fn tcp_view(c: &TcpCounts, window_s: u64) -> trellis_api::TcpView {
    let rate = |n: u64| n as f64 / window_s.max(1) as f64;
    trellis_api::TcpView {
        opened: c.opened,
        connections_per_s: rate(c.opened),
        failed: c.failed,
        sent_bytes_per_s: rate(c.sent_bytes),
        received_bytes_per_s: rate(c.received_bytes),
    }
}

/// Why a report was refused; each reason is counted and exported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rejection {
    Unreadable,
    Invalid,
    UnknownProxy,
    Stale,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Unreadable => "unreadable",
            Rejection::Invalid => "invalid",
            Rejection::UnknownProxy => "unknown_proxy",
            Rejection::Stale => "stale",
        }
    }
}

#[derive(Default)]
pub struct Telemetry {
    inner: Mutex<Inner>,
    /// Reports being handled now (read, checked, added).
    busy: std::sync::atomic::AtomicUsize,
    /// Reports the proxies were asked to send later.
    deferred: std::sync::atomic::AtomicU64,
}

/// Reports handled at once past which intake has fallen behind: the proxies are asked to
/// report less often (429 with `Retry-After`) and carry their counts into a later report.
/// At 5,000 reports a second a few are in hand at a time; hundreds mean they queue.
pub const BACKLOG: usize = 256;

/// How long a proxy asked to slow down waits before its next report.
pub const RETRY_AFTER_S: u64 = 4;

/// The reports a second one control plane asks its proxies for, at most: 10,000 proxies at
/// the usual two seconds (`bench/fleet.sh` measured 43 µs of control-plane CPU for each on the
/// duplex stream, so 5,000 a second take about a fifth of a core).
pub const REPORTS_PER_S: usize = 5_000;

/// The seconds between reports asked of each of `proxies`: two, or longer so that they come
/// at [`REPORTS_PER_S`] at most, up to six (well within the heartbeat timeout: past that, 429s
/// hold the rest back).
pub fn report_every_s(proxies: usize) -> u64 {
    paced_s(proxies, REPORTS_PER_S, 6)
}

/// The seconds between the messages each of `proxies` sends or is sent periodically (reports
/// here, the fleet's pings too): two, or longer so that the fleet's come at `per_s` at most,
/// up to `longest`.
pub fn paced_s(proxies: usize, per_s: usize, longest: u64) -> u64 {
    (proxies.div_ceil(per_s) as u64).clamp(2, longest)
}

/// A report being handled; dropping it ends that.
pub struct InHand<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Denied or rate-limited calls: (caller, callee, what denied them).
pub type DeniedKey = (String, String, String);

/// One second of one replica's proxies' reports, as replicas hand them to each other.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Second {
    pub series: Vec<(Key, Counts)>,
    pub denied: Vec<(DeniedKey, u64)>,
    /// Absent from a replica that predates rate limits.
    #[serde(default)]
    pub limited: Vec<(DeniedKey, u64)>,
    /// Absent from a replica that predates opaque TCP.
    #[serde(default)]
    pub tcp: Vec<(Key, TcpCounts)>,
}

/// Refusals (denied or rate-limited calls) in one-second buckets.
type Refusals = BTreeMap<u64, HashMap<DeniedKey, u64>>;

fn add_refusals(into: &mut Refusals, at_s: u64, from: &[(DeniedKey, u64)]) {
    if from.is_empty() {
        return;
    }
    let bucket = into.entry(at_s).or_default();
    for (key, n) in from {
        *bucket.entry(key.clone()).or_default() += n;
    }
}

fn refusals_in(all: &Refusals, now_s: u64, window_s: u64) -> HashMap<DeniedKey, u64> {
    let mut out = HashMap::new();
    for (s, bucket) in all {
        if s + window_s > now_s && *s <= now_s {
            for (k, n) in bucket {
                *out.entry(k.clone()).or_default() += n;
            }
        }
    }
    out
}

/// One entry per key.
fn summed(refusals: Vec<(DeniedKey, u64)>) -> Vec<(DeniedKey, u64)> {
    let mut out: BTreeMap<DeniedKey, u64> = BTreeMap::new();
    for (k, n) in refusals {
        *out.entry(k).or_default() += n;
    }
    out.into_iter().collect()
}

#[derive(Default)]
struct Inner {
    /// Every replica's reports, by second.
    seconds: BTreeMap<u64, HashMap<Key, Counts>>,
    /// Denied calls in one-second buckets, kept as long as `seconds`.
    denials: Refusals,
    /// Rate-limited calls, the same way.
    limited: Refusals,
    /// Opaque TCP connections, the same way.
    tcp: BTreeMap<u64, HashMap<Key, TcpCounts>>,
    /// This replica's own reports of the seconds not yet handed on (with replicas only).
    own: BTreeMap<u64, Second>,
    sharing: bool,
    last_seq: HashMap<String, u64>,
    rejected: BTreeMap<Rejection, u64>,
    accepted: u64,
}

impl Inner {
    fn forget_before(&mut self, now_s: u64) {
        let oldest = now_s.saturating_sub(RETENTION_S - 1);
        self.seconds = self.seconds.split_off(&oldest);
        self.denials = self.denials.split_off(&oldest);
        self.limited = self.limited.split_off(&oldest);
        self.tcp = self.tcp.split_off(&oldest);
        self.own = self.own.split_off(&oldest);
    }

    fn add(&mut self, at_s: u64, second: &Second) {
        let bucket = self.seconds.entry(at_s).or_default();
        for (key, c) in &second.series {
            bucket.entry(key.clone()).or_default().merge(c);
        }
        add_refusals(&mut self.denials, at_s, &second.denied);
        add_refusals(&mut self.limited, at_s, &second.limited);
        if !second.tcp.is_empty() {
            let bucket = self.tcp.entry(at_s).or_default();
            for (key, c) in &second.tcp {
                bucket.entry(key.clone()).or_default().merge(c);
            }
        }
    }
}

/// One entry per key: a second's reports summed.
fn compact(second: Second) -> Second {
    let mut series: BTreeMap<Key, Counts> = BTreeMap::new();
    for (k, c) in second.series {
        series.entry(k).or_default().merge(&c);
    }
    let mut tcp: BTreeMap<Key, TcpCounts> = BTreeMap::new();
    for (k, c) in second.tcp {
        tcp.entry(k).or_default().merge(&c);
    }
    Second {
        series: series.into_iter().collect(),
        denied: summed(second.denied),
        limited: summed(second.limited),
        tcp: tcp.into_iter().collect(),
    }
}

impl Telemetry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.locked()
    }

    /// A report arrived: in hand until the guard drops. `None` (counted as deferred) when
    /// [`BACKLOG`] reports are already in hand.
    pub fn admit(&self) -> Option<InHand<'_>> {
        use std::sync::atomic::Ordering::Relaxed;
        let guard = InHand(&self.busy);
        if self.busy.fetch_add(1, Relaxed) >= BACKLOG {
            self.deferred.fetch_add(1, Relaxed);
            return None;
        }
        Some(guard)
    }

    /// Reports the proxies were asked to send later.
    pub fn deferred(&self) -> u64 {
        self.deferred.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Adds a checked report from a proxy of `reporter` (its service) at `now_s`.
    pub fn ingest(&self, reporter: &str, report: &Report, now_s: u64) -> Result<(), Rejection> {
        if report.check().is_err() {
            return Err(self.reject(Rejection::Invalid));
        }
        let mut inner = self.lock();
        let last = inner.last_seq.get(&report.proxy_id).copied();
        if last.is_some_and(|l| report.seq <= l) {
            drop(inner);
            return Err(self.reject(Rejection::Stale));
        }
        inner.last_seq.insert(report.proxy_id.clone(), report.seq);
        inner.accepted += 1;
        inner.forget_before(now_s);
        let mut own = Second::default();
        let refusal =
            |d: &trellis_model::telemetry::Denial| ((d.caller.clone(), reporter.to_string(), d.by.clone()), d.requests);
        own.denied = report.denied.iter().map(refusal).collect();
        own.limited = report.limited.iter().map(refusal).collect();
        for t in &report.tcp {
            let caller = (t.direction == Direction::Outbound).then(|| reporter.to_string());
            let key = Key { caller, service: t.service.clone(), version: t.version.clone(), route: String::new() };
            own.tcp.push((key, t.counts));
        }
        for s in &report.series {
            let caller = match s.direction {
                Direction::Outbound => Some(reporter.to_string()),
                Direction::Inbound => None,
            };
            let key = Key { caller, service: s.service.clone(), version: s.version.clone(), route: s.route.clone() };
            let mut counts = Counts::default();
            counts.add(s.requests, s.failures, &s.buckets);
            own.series.push((key, counts));
        }
        inner.add(now_s, &own);
        if inner.sharing {
            let mine = inner.own.entry(now_s).or_default();
            mine.series.extend(own.series);
            mine.denied.extend(own.denied);
            mine.limited.extend(own.limited);
            mine.tcp.extend(own.tcp);
        }
        Ok(())
    }

    /// Keeps this replica's own seconds to hand on: there are other replicas.
    pub fn share(&self) {
        self.lock().sharing = true;
    }

    /// This replica's own seconds before `now_s`, to hand on to the others (each once).
    pub fn take_finished(&self, now_s: u64) -> Vec<(u64, Second)> {
        let mut inner = self.lock();
        let keep = inner.own.split_off(&now_s);
        let done = std::mem::replace(&mut inner.own, keep);
        done.into_iter().map(|(s, second)| (s, compact(second))).collect()
    }

    /// Adds a second another replica's proxies reported.
    pub fn merge(&self, at_s: u64, second: &Second, now_s: u64) {
        if at_s + RETENTION_S <= now_s {
            return;
        }
        let mut inner = self.lock();
        inner.forget_before(now_s);
        inner.add(at_s, second);
    }

    pub fn reject(&self, why: Rejection) -> Rejection {
        *self.lock().rejected.entry(why).or_default() += 1;
        why
    }

    /// Totals per key over the last `window_s` seconds up to `now_s`.
    pub fn window(&self, now_s: u64, window_s: u64) -> HashMap<Key, Counts> {
        let mut out: HashMap<Key, Counts> = HashMap::new();
        for (s, bucket) in &self.lock().seconds {
            if s + window_s > now_s && *s <= now_s {
                for (k, c) in bucket {
                    out.entry(k.clone()).or_default().add(c.requests, c.failures, &c.buckets);
                }
            }
        }
        out
    }

    /// Denied calls over the last `window_s` seconds up to `now_s`.
    pub fn denied(&self, now_s: u64, window_s: u64) -> HashMap<DeniedKey, u64> {
        refusals_in(&self.lock().denials, now_s, window_s)
    }

    /// TCP connections per key over the last `window_s` seconds up to `now_s`.
    pub fn tcp_window(&self, now_s: u64, window_s: u64) -> HashMap<Key, TcpCounts> {
        let mut out: HashMap<Key, TcpCounts> = HashMap::new();
        for (s, bucket) in &self.lock().tcp {
            if s + window_s > now_s && *s <= now_s {
                for (k, c) in bucket {
                    out.entry(k.clone()).or_default().merge(c);
                }
            }
        }
        out
    }

    /// Rate-limited calls over the last `window_s` seconds up to `now_s`.
    pub fn limited(&self, now_s: u64, window_s: u64) -> HashMap<DeniedKey, u64> {
        refusals_in(&self.lock().limited, now_s, window_s)
    }

    /// Per-interval totals for one key filter, oldest first: the points of a chart. Only
    /// steps that ended by `now_s` (pass [`settled`]): a step still filling would end every
    /// chart in a drop.
    pub fn series(&self, now_s: u64, span_s: u64, step_s: u64, keep: impl Fn(&Key) -> bool) -> Vec<(u64, Counts)> {
        let step = step_s.max(1);
        let start = now_s.saturating_sub(span_s) / step * step;
        let end = (now_s + 1) / step * step;
        let mut points: BTreeMap<u64, Counts> =
            (start..end).step_by(step as usize).map(|t| (t, Counts::default())).collect();
        for (s, bucket) in &self.lock().seconds {
            if *s < start || *s >= end {
                continue;
            }
            let slot = points.entry(s / step * step).or_default();
            for (_, c) in bucket.iter().filter(|(k, _)| keep(k)) {
                slot.add(c.requests, c.failures, &c.buckets);
            }
        }
        points.into_iter().collect()
    }

    /// (accepted reports, rejections by reason), for the control plane's own metrics.
    pub fn counters(&self) -> (u64, Vec<(&'static str, u64)>) {
        let inner = self.lock();
        (inner.accepted, inner.rejected.iter().map(|(r, n)| (r.as_str(), *n)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_model::telemetry::{Series, bucket_of};

    #[test]
    fn a_large_fleet_is_asked_to_report_less_often_within_the_heartbeat_timeout() {
        assert_eq!(report_every_s(1), 2);
        assert_eq!(report_every_s(10_000), 2);
        assert_eq!(report_every_s(10_001), 3);
        assert_eq!(report_every_s(20_000), 4);
        assert_eq!(report_every_s(1_000_000), 6);
        assert!(std::time::Duration::from_secs(report_every_s(usize::MAX) * 3 / 2) < crate::fleet::HEARTBEAT_TIMEOUT);
    }

    #[test]
    fn past_the_backlog_reports_are_deferred_until_one_is_done() {
        let t = Telemetry::default();
        let in_hand: Vec<InHand> = (0..BACKLOG).map(|_| t.admit().expect("within the backlog")).collect();
        assert!(t.admit().is_none(), "one more is deferred");
        assert_eq!(t.deferred(), 1);
        drop(in_hand.into_iter().next());
        assert!(t.admit().is_some(), "room again once one is done");
        assert_eq!(t.deferred(), 1);
    }

    fn report(seq: u64, series: Vec<(Direction, &str, &str, u64, u64, f64)>) -> Report {
        Report {
            proxy_id: "p1".into(),
            seq,
            denied: Vec::new(),
            limited: Vec::new(),
            tcp: Vec::new(),
            series: series
                .into_iter()
                .map(|(direction, service, version, requests, failures, ms)| {
                    let mut buckets = vec![0; BUCKETS];
                    buckets[bucket_of(ms)] = requests;
                    Series {
                        direction,
                        service: service.into(),
                        version: version.into(),
                        route: String::new(),
                        requests,
                        failures,
                        buckets,
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn windows_sum_what_was_reported_and_drop_what_is_older() {
        let t = Telemetry::default();
        t.ingest("shop", &report(1, vec![(Direction::Outbound, "inv", "v1", 20, 2, 7.0)]), 100).unwrap();
        t.ingest("shop", &report(2, vec![(Direction::Outbound, "inv", "v1", 30, 0, 7.0)]), 105).unwrap();
        let edge =
            Key { caller: Some("shop".into()), service: "inv".into(), version: "v1".into(), route: String::new() };
        let w = t.window(109, 10);
        assert_eq!((w[&edge].requests, w[&edge].failures), (50, 2));
        let g = w[&edge].golden(10);
        assert_eq!(g.rps, 5.0);
        assert_eq!(g.success_rate, Some(0.96));
        assert!(g.p99_ms.unwrap() > 5.0 && g.p99_ms.unwrap() <= 10.0);
        assert_eq!(t.window(112, 10)[&edge].requests, 30, "the first report left the 10 s window");
    }

    #[test]
    fn stale_and_impossible_reports_change_nothing_and_are_counted() {
        let t = Telemetry::default();
        t.ingest("shop", &report(5, vec![(Direction::Inbound, "shop", "v1", 10, 0, 1.0)]), 10).unwrap();
        assert_eq!(
            t.ingest("shop", &report(5, vec![(Direction::Inbound, "shop", "v1", 10, 0, 1.0)]), 10),
            Err(Rejection::Stale)
        );
        let mut bad = report(6, vec![(Direction::Inbound, "shop", "v1", 10, 0, 1.0)]);
        bad.series[0].failures = 11;
        assert_eq!(t.ingest("shop", &bad, 10), Err(Rejection::Invalid));
        let key = Key { caller: None, service: "shop".into(), version: "v1".into(), route: String::new() };
        assert_eq!(t.window(10, 10)[&key].requests, 10);
        assert_eq!(t.counters(), (1, vec![("invalid", 1), ("stale", 1)]));
    }

    #[test]
    fn denied_calls_are_kept_per_caller_callee_and_policy() {
        let t = Telemetry::default();
        let mut r = report(1, vec![]);
        r.denied = vec![trellis_model::telemetry::Denial {
            caller: "catalog".into(),
            by: "AccessPolicy/inventory-readers".into(),
            requests: 3,
        }];
        t.ingest("inventory", &r, 100).unwrap();
        let key = ("catalog".to_string(), "inventory".to_string(), "AccessPolicy/inventory-readers".to_string());
        assert_eq!(t.denied(105, 10).get(&key), Some(&3));
        assert!(t.denied(120, 10).is_empty(), "out of the window");
    }

    #[test]
    fn tcp_connections_make_edges_and_nodes_and_are_handed_on() {
        let (a, b) = (Telemetry::default(), Telemetry::default());
        a.share();
        let mut r = report(1, vec![]);
        let mut t = trellis_model::telemetry::TcpSeries::new(Direction::Outbound, "db", "v1");
        t.counts = TcpCounts { opened: 3, closed: 2, failed: 0, sent_bytes: 100, received_bytes: 4000, seconds: 1.5 };
        r.tcp = vec![t.clone()];
        a.ingest("shop", &r, 100).unwrap();
        let edge =
            Key { caller: Some("shop".into()), service: "db".into(), version: "v1".into(), route: String::new() };
        assert_eq!(a.tcp_window(100, 10)[&edge].opened, 3);
        let mut bad = report(2, vec![]);
        bad.tcp =
            vec![trellis_model::telemetry::TcpSeries { counts: TcpCounts { seconds: f64::NAN, ..t.counts }, ..t }];
        assert_eq!(a.ingest("shop", &bad, 100), Err(Rejection::Invalid));
        for (at, second) in a.take_finished(101) {
            b.merge(at, &second, 101);
        }
        let view = tcp_view(&b.tcp_window(101, 10)[&edge], 10);
        assert_eq!((view.opened, view.received_bytes_per_s), (3, 400.0));
    }

    #[test]
    fn rate_limited_calls_are_kept_apart_from_denials_and_handed_on() {
        let (a, b) = (Telemetry::default(), Telemetry::default());
        a.share();
        let mut r = report(1, vec![]);
        let by = "TrafficPolicy/inventory".to_string();
        r.limited = vec![trellis_model::telemetry::Denial { caller: "storefront".into(), by: by.clone(), requests: 7 }];
        a.ingest("inventory", &r, 100).unwrap();
        let key = ("storefront".to_string(), "inventory".to_string(), by);
        assert_eq!(a.limited(100, 10).get(&key), Some(&7));
        assert!(a.denied(100, 10).is_empty());
        for (at, second) in a.take_finished(101) {
            b.merge(at, &second, 101);
        }
        assert_eq!(b.limited(101, 10).get(&key), Some(&7), "another replica counts them too");
    }

    #[test]
    fn replicas_hand_on_their_own_seconds_once_and_count_each_others() {
        let (a, b) = (Telemetry::default(), Telemetry::default());
        a.share();
        let r = report(1, vec![(Direction::Outbound, "inventory", "v2", 10, 1, 5.0)]);
        a.ingest("storefront", &r, 100).unwrap();
        a.ingest("storefront", &report(2, vec![(Direction::Outbound, "inventory", "v2", 5, 0, 5.0)]), 100).unwrap();
        assert!(a.take_finished(100).is_empty(), "second 100 is not over at 100");
        let handed = a.take_finished(101);
        assert_eq!(handed.len(), 1);
        assert_eq!(handed[0].1.series.len(), 1, "one entry per key");
        assert!(a.take_finished(101).is_empty(), "each second once");
        for (at, second) in &handed {
            b.merge(*at, second, 101);
        }
        let window = b.window(101, 10);
        let counts = window.values().next().unwrap();
        assert_eq!((counts.requests, counts.failures), (15, 1));
        b.merge(1, &handed[0].1, 101 + RETENTION_S);
        assert!(b.window(1, 10).is_empty(), "too old to keep");
    }

    #[test]
    fn chart_points_fall_into_their_steps() {
        let t = Telemetry::default();
        t.ingest("shop", &report(1, vec![(Direction::Inbound, "shop", "v1", 10, 0, 1.0)]), 95).unwrap();
        t.ingest("shop", &report(2, vec![(Direction::Inbound, "shop", "v1", 5, 1, 1.0)]), 101).unwrap();
        let counts = |now| -> Vec<(u64, u64)> {
            t.series(now, 20, 10, |k| k.service == "shop").iter().map(|(t, c)| (*t, c.requests)).collect()
        };
        assert_eq!(counts(109), vec![(80, 0), (90, 10), (100, 5)]);
        assert_eq!(counts(108), vec![(80, 0), (90, 10)], "the step of 100-109 has not ended");
    }
}
