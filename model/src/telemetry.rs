//! Telemetry reports: what each proxy pushes to the control plane every couple of seconds,
//! and the checks a report must pass before it may touch the aggregates.

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets in milliseconds; a last bucket counts the rest.
pub const BUCKETS_MS: [f64; 14] =
    [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0];
/// Buckets in a report: the bounded ones and the overflow.
pub const BUCKETS: usize = BUCKETS_MS.len() + 1;

/// A report may describe at most this many series...
pub const MAX_SERIES: usize = 10_000;
/// ...and at most this many requests per series: more in one window is not a real proxy.
pub const MAX_REQUESTS: u64 = 100_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Requests the proxy received for its own service.
    Inbound,
    /// Requests its application sent to other services.
    Outbound,
}

/// Counts since the previous accepted report of the same proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub proxy_id: String,
    /// Increases with every report; a repeated or older one is ignored, not double-counted.
    pub seq: u64,
    pub series: Vec<Series>,
    /// Requests this proxy's inbound side denied, by verified caller and what denied them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<Denial>,
    /// Requests its inbound side refused by a rate limit (`by` names the limit), by caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limited: Vec<Denial>,
    /// Opaque TCP connections (`protocol: tcp` services).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpSeries>,
}

/// Opaque TCP connections of one direction, service and version: totals in a proxy, the
/// change since the last accepted report in a report. Bytes and time are of closed ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TcpSeries {
    pub direction: Direction,
    /// Outbound: the destination service; inbound: the proxy's own.
    pub service: String,
    /// Empty for a connection that failed before a version was picked.
    pub version: String,
    #[serde(flatten)]
    pub counts: TcpCounts,
}

/// Opaque TCP connections: counted by a proxy, summed by the control plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpCounts {
    pub opened: u64,
    pub closed: u64,
    /// Connections that could not be made: no endpoint, or none answered.
    pub failed: u64,
    /// Toward the service.
    pub sent_bytes: u64,
    /// From the service.
    pub received_bytes: u64,
    pub seconds: f64,
}

impl TcpCounts {
    pub fn merge(&mut self, o: &TcpCounts) {
        self.opened += o.opened;
        self.closed += o.closed;
        self.failed += o.failed;
        self.sent_bytes += o.sent_bytes;
        self.received_bytes += o.received_bytes;
        self.seconds += o.seconds;
    }

    /// What was counted after `earlier`, totals of the same connections.
    pub fn since(&self, earlier: &TcpCounts) -> TcpCounts {
        TcpCounts {
            opened: self.opened.saturating_sub(earlier.opened),
            closed: self.closed.saturating_sub(earlier.closed),
            failed: self.failed.saturating_sub(earlier.failed),
            sent_bytes: self.sent_bytes.saturating_sub(earlier.sent_bytes),
            received_bytes: self.received_bytes.saturating_sub(earlier.received_bytes),
            seconds: (self.seconds - earlier.seconds).max(0.0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.opened + self.closed + self.failed == 0
    }
}

/// More bytes than this in one report is not a real proxy (a petabyte).
pub const MAX_BYTES: u64 = 1 << 50;

impl TcpSeries {
    pub fn new(direction: Direction, service: &str, version: &str) -> Self {
        TcpSeries {
            direction,
            service: service.to_string(),
            version: version.to_string(),
            counts: TcpCounts::default(),
        }
    }

    fn check(&self) -> Result<(), String> {
        let name = format!("TCP {:?} {}/{}", self.direction, self.service, self.version);
        if self.service.is_empty() || self.service.len() > 253 || self.version.len() > 253 {
            return Err(format!("{name}: service 1 to 253 characters, version at most 253"));
        }
        let c = &self.counts;
        if [c.opened, c.closed, c.failed].iter().any(|n| *n > MAX_REQUESTS) {
            return Err(format!("{name}: more connections than one report can hold"));
        }
        if c.sent_bytes > MAX_BYTES || c.received_bytes > MAX_BYTES {
            return Err(format!("{name}: more bytes than one report can hold"));
        }
        if !c.seconds.is_finite() || c.seconds < 0.0 || c.seconds > 1e12 {
            return Err(format!("{name}: {} seconds open is impossible", c.seconds));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// The caller's service, or `plaintext` / `unknown` when it proved none.
    pub caller: String,
    /// `AccessPolicy/<name>`, `Mesh/mtls=strict`, ...
    pub by: String,
    pub requests: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub direction: Direction,
    /// Outbound: the destination service; inbound: the proxy's own.
    pub service: String,
    pub version: String,
    /// The route rule that matched (outbound), as `trellis diff` names rules; empty inbound.
    #[serde(default)]
    pub route: String,
    pub requests: u64,
    /// 5xx responses and requests the proxy could not complete.
    pub failures: u64,
    /// Requests per latency bucket ([`BUCKETS_MS`], then overflow); they add up to `requests`.
    pub buckets: Vec<u64>,
}

impl Report {
    /// Refuses what no proxy could have measured, saying what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if self.series.len() > MAX_SERIES {
            return Err(format!("{} series; at most {MAX_SERIES}", self.series.len()));
        }
        if self.denied.len() > MAX_SERIES || self.limited.len() > MAX_SERIES {
            return Err(format!("{} denials; at most {MAX_SERIES}", self.denied.len().max(self.limited.len())));
        }
        for d in self.denied.iter().chain(&self.limited) {
            if d.caller.is_empty() || d.caller.len() > 253 || d.by.is_empty() || d.by.len() > 1024 {
                return Err(format!("denial {:?} by {:?}: caller 1 to 253 characters, by 1 to 1024", d.caller, d.by));
            }
            if d.requests == 0 || d.requests > MAX_REQUESTS {
                return Err(format!("denial of {} by {}: {} requests is impossible", d.caller, d.by, d.requests));
            }
        }
        if self.tcp.len() > MAX_SERIES {
            return Err(format!("{} TCP series; at most {MAX_SERIES}", self.tcp.len()));
        }
        for t in &self.tcp {
            t.check()?;
        }
        for s in &self.series {
            let name = format!("{:?} {}/{}", s.direction, s.service, s.version);
            let label_ok = |v: &str| !v.is_empty() && v.len() <= 253;
            if !label_ok(&s.service) || !label_ok(&s.version) {
                return Err(format!("{name}: service and version must be 1 to 253 characters"));
            }
            if s.buckets.len() != BUCKETS {
                return Err(format!("{name}: {} latency buckets; expected {BUCKETS}", s.buckets.len()));
            }
            if s.requests > MAX_REQUESTS {
                return Err(format!("{name}: {} requests in one report is impossible", s.requests));
            }
            if s.failures > s.requests {
                return Err(format!("{name}: {} failures out of {} requests", s.failures, s.requests));
            }
            let bucketed = s.buckets.iter().try_fold(0u64, |a, b| a.checked_add(*b));
            if bucketed != Some(s.requests) {
                return Err(format!("{name}: latency buckets add up to {bucketed:?}, not {} requests", s.requests));
            }
        }
        Ok(())
    }
}

/// The bucket a latency falls in.
pub fn bucket_of(ms: f64) -> usize {
    BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(BUCKETS_MS.len())
}

/// The latency below which `q` of the requests fall, by linear interpolation inside the
/// bucket (the overflow bucket reports its lower bound).
pub fn quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0.0;
    for (i, n) in buckets.iter().enumerate() {
        let next = seen + *n as f64;
        if next >= rank && *n > 0 {
            let lower = if i == 0 { 0.0 } else { BUCKETS_MS[i - 1] };
            let Some(upper) = BUCKETS_MS.get(i) else { return Some(lower) };
            return Some(lower + (upper - lower) * ((rank - seen) / *n as f64));
        }
        seen = next;
    }
    BUCKETS_MS.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(requests: u64, failures: u64, buckets: Vec<u64>) -> Report {
        let s = Series {
            direction: Direction::Outbound,
            service: "a".into(),
            version: "v1".into(),
            route: String::new(),
            requests,
            failures,
            buckets,
        };
        Report {
            proxy_id: "p".into(),
            seq: 1,
            series: vec![s],
            denied: Vec::new(),
            limited: Vec::new(),
            tcp: Vec::new(),
        }
    }

    #[test]
    fn impossible_reports_are_refused_with_the_reason() {
        let mut b = vec![0; BUCKETS];
        b[3] = 10;
        assert!(series(10, 1, b.clone()).check().is_ok());
        assert!(series(10, 11, b.clone()).check().unwrap_err().contains("11 failures out of 10"));
        assert!(series(9, 0, b.clone()).check().unwrap_err().contains("add up to Some(10), not 9"));
        assert!(series(10, 0, vec![10]).check().unwrap_err().contains("1 latency buckets"));
        let mut huge = vec![0; BUCKETS];
        huge[0] = u64::MAX;
        huge[1] = 1;
        assert!(series(u64::MAX, 0, huge).check().is_err());
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let mut b = vec![0; BUCKETS];
        b[bucket_of(7.0)] = 100; // all between 5 and 10 ms
        assert_eq!(quantile_ms(&b, 0.5), Some(7.5));
        assert_eq!(quantile_ms(&b, 1.0), Some(10.0));
        assert_eq!(quantile_ms(&[0; BUCKETS], 0.5), None);
    }
}
