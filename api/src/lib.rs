//! `trellis-api`: the shapes of the public API under `/api/v1`, as plain serialisable data.
//! The control plane builds them from its state, the REST API returns them, the dashboard
//! renders them (on the server and in the browser), and scripts read them: one definition
//! for all, in a crate that depends on nothing but the policy model, so that neither the
//! control plane's domain nor the dashboard owns the other's types.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use trellis_model::Diagnostic;
use trellis_model::diff::Change;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The revision proxies should be running.
    pub applied: Option<RevisionView>,
    /// The newest revision seen on the branch, when it differs from `applied` (a rejection).
    pub latest: Option<RevisionView>,
    pub services: Vec<ServiceView>,
    pub proxies: Vec<ProxyView>,
    pub audit: Vec<AuditEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevisionView {
    pub sha: String,
    pub author: String,
    pub message: String,
    /// Unix milliseconds.
    pub committed_at: i64,
    /// `applied` or `rejected`.
    pub outcome: String,
    pub errors: Vec<Diagnostic>,
    /// For an applied revision: what it changed compared with the one before, in plain words.
    #[serde(default)]
    pub changes: Vec<Change>,
}

impl RevisionView {
    pub fn short(&self) -> String {
        short_sha(&self.sha)
    }
}

/// The first 8 characters of a commit id, as people quote them. Counts characters, not bytes:
/// versions reported by proxies are not trusted to be hex.
pub fn short_sha(sha: &str) -> String {
    sha.chars().take(8).collect()
}

/// The `/policy` page: the revision in force, its files, and the recent history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    pub applied: Option<RevisionView>,
    pub files: Vec<PolicyFile>,
    /// Newest first.
    pub revisions: Vec<RevisionView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyFile {
    pub path: String,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceView {
    pub name: String,
    pub versions: Vec<VersionView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    pub name: String,
    /// Share of the service's default rule, in percent.
    pub weight: u32,
    /// Connected proxies serving this version.
    pub proxies: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProxyView {
    pub id: String,
    pub service: String,
    pub version: String,
    pub address: String,
    /// The proxy's admin listener (`/metrics`, `/config`).
    #[serde(default)]
    pub admin: String,
    /// When its certificate expires (unix ms), if it has one.
    #[serde(default)]
    pub cert_expires: Option<i64>,
    /// The config version the proxy last ACKed, and the revision it belongs to.
    pub applied_version: Option<String>,
    pub applied_revision: Option<String>,
    /// The proxy runs the current revision.
    pub synced: bool,
    /// The reason of the last NACK, if the proxy refused a config.
    pub nack: Option<String>,
    /// Unix milliseconds of the last message from the proxy.
    pub last_seen: i64,
    /// For a proxy not yet on the current revision: since when it lags (unix ms).
    #[serde(default)]
    pub lagging_since: Option<i64>,
    /// The control-plane replica it is connected to, when not the one answering.
    #[serde(default)]
    pub replica: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub revision: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    pub summary: String,
    /// What the event carries: a revision's diff and errors, a rollout's numbers.
    #[serde(default)]
    pub detail: serde_json::Value,
    /// Its link in the tamper-evident chain (absent on events from before the chain).
    #[serde(default)]
    pub hash: Option<String>,
}

/// Which audit events to list; every field narrows, none means all.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// A kind (`revision.rejected`) or a family of kinds (`rollout`).
    pub kind: Option<String>,
    pub service: Option<String>,
    pub actor: Option<String>,
    /// A commit SHA or its prefix.
    pub revision: Option<String>,
    /// Unix ms, inclusive.
    pub since: Option<i64>,
    /// Unix ms, exclusive.
    pub until: Option<i64>,
    /// Words in the summary, any case.
    pub q: Option<String>,
}

/// A page of the audit log: newest first, `next` the cursor of the following page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next: Option<String>,
}

/// The golden metrics of a service, version or edge over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Golden {
    pub rps: f64,
    /// `None` without requests: no traffic is not 100 % success.
    pub success_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub requests: u64,
}

/// The `/topology` page: services and who calls whom, with their golden metrics.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopologyView {
    pub window_s: u64,
    pub nodes: Vec<NodeView>,
    pub edges: Vec<EdgeView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub service: String,
    /// What the service received, all versions together.
    pub golden: Golden,
    pub versions: Vec<(String, Golden)>,
    /// Opaque TCP connections the service received (`protocol: tcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpView>,
}

/// Opaque TCP connections over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpView {
    pub opened: u64,
    pub connections_per_s: f64,
    /// Connections that could not be made: no endpoint, or none answered.
    pub failed: u64,
    /// Of the connections that closed in the window: toward the service, and from it.
    pub sent_bytes_per_s: f64,
    pub received_bytes_per_s: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeView {
    pub from: String,
    pub to: String,
    pub golden: Golden,
    /// Calls the callee's proxy refused (access policy, strict mTLS) in the window.
    #[serde(default)]
    pub denied: u64,
    /// What refused them (`AccessPolicy/<name>`, `Mesh/mtls=strict`).
    #[serde(default)]
    pub denied_by: Vec<String>,
    /// Opaque TCP connections the caller opened (`protocol: tcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpView>,
}

/// The `/traffic` page: golden metrics per service and version over the last 15 minutes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrafficView {
    pub step_s: u64,
    pub services: Vec<ServiceTraffic>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceTraffic {
    pub service: String,
    pub versions: Vec<VersionTraffic>,
    /// As callers' route rules matched it, all versions together.
    #[serde(default)]
    pub routes: Vec<RouteTraffic>,
    /// The rate limits the service's policy sets, in words (`TrafficPolicy/inventory: ...`).
    #[serde(default)]
    pub rate_limits: Vec<String>,
    /// Requests its proxies refused by a rate limit over the last minute, by caller and limit.
    #[serde(default)]
    pub limited: Vec<LimitedTraffic>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitedTraffic {
    /// The calling service, or `plaintext` / `unknown`.
    pub caller: String,
    /// The limit that refused them: `TrafficPolicy/<name>`, `Route/<name>: <rule>`.
    pub by: String,
    pub requests: u64,
    pub rps: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteTraffic {
    pub route: String,
    /// Over the last minute.
    pub golden: Golden,
    /// The last fifteen minutes, one point per step.
    #[serde(default)]
    pub points: Vec<Point>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionTraffic {
    pub version: String,
    /// Oldest first; one point per step.
    pub points: Vec<Point>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Unix seconds at the start of the step.
    pub t: u64,
    pub golden: Golden,
}

/// The `/fleet` page: every live proxy and the sync status of the current revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    pub revision: Option<String>,
    pub synced: usize,
    pub total: usize,
    pub proxies: Vec<ProxyView>,
    /// When the mesh's issuer and trust anchor expire (unix ms), when identities are on.
    #[serde(default)]
    pub issuer_expires: Option<i64>,
    #[serde(default)]
    pub anchor_expires: Option<i64>,
    /// The server's clock when this was built, so expiry warnings render the same everywhere.
    #[serde(default)]
    pub now_ms: i64,
    /// The control plane's replicas and which of them leads.
    #[serde(default)]
    pub control_plane: ClusterView,
}

/// The control plane's replicas as the one answering sees them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The replica that answered.
    pub replica: String,
    /// The leader's replica id, when one holds the lease.
    pub leader: Option<String>,
    /// When the leader's term began (unix ms).
    pub leader_since: Option<i64>,
    /// The leader's fencing token: it grows by one at every change of leader.
    pub term: i64,
    /// How long ago the leader last renewed its lease (ms).
    pub lease_age_ms: Option<i64>,
    /// Replicas seen in the last minute, oldest first.
    pub replicas: Vec<ReplicaView>,
    /// Why the database could not be asked, when it could not.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub id: String,
    /// Where it serves the API, the dashboard and proxies.
    pub address: String,
    pub version: String,
    pub started_at: i64,
    /// How long ago it last said it was alive (ms).
    pub seen_ago_ms: i64,
    /// It said so lately enough to count as running.
    pub up: bool,
    pub leader: bool,
}

/// Renders unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC` without a date library, on both
/// server and browser, so that hydration sees identical text.
pub fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil-from-days, after Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02} UTC")
}

/// Reads a time as people write it: unix milliseconds, or a UTC date `2026-11-26`, optionally
/// with a time (`2026-11-26 13:33`, `2026-11-26T13:33:20Z`, a trailing ` UTC`).
pub fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    let t = t.trim_end_matches(" UTC").trim_end_matches('Z');
    let (date, time) = t.split_once(['T', ' ']).unwrap_or((t, "00:00:00"));
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = time.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (c.next()??, c.next().flatten().unwrap_or(0), c.next().flatten().unwrap_or(0));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&day) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days-from-civil, the inverse of `format_time`'s algorithm.
    let y = y - i64::from(mo <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + s) * 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_what_it_formats() {
        assert_eq!(super::parse_time("2026-11-26 13:33:20 UTC"), Some(1_795_700_000_000));
        assert_eq!(super::parse_time("2026-11-26T13:33:20Z"), Some(1_795_700_000_000));
        assert_eq!(super::parse_time("1970-01-01"), Some(0));
        assert_eq!(super::parse_time("1795700000000"), Some(1_795_700_000_000));
        assert_eq!(
            super::parse_time("2024-02-29 12:00").map(super::format_time).as_deref(),
            Some("2024-02-29 12:00:00 UTC")
        );
        assert_eq!(super::parse_time("yesterday"), None);
        assert_eq!(super::parse_time("2026-13-01"), None);
    }

    #[test]
    fn formats_utc() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::format_time(1_795_700_000_000), "2026-11-26 13:33:20 UTC");
    }
}

/// The `/rollouts` page and `GET /api/v1/rollouts`: every Rollout in the applied revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutsView {
    pub items: Vec<RolloutView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub name: String,
    pub service: String,
    pub stable: String,
    pub canary: String,
    /// `canary`, `header` or `blue-green`.
    pub strategy: String,
    /// `pending`, `progressing`, `awaiting-promotion`, `paused`, `completed` or `aborted`.
    pub phase: String,
    /// Why it paused or aborted, or who completed it.
    pub reason: Option<String>,
    /// Zero-based index of the current step.
    pub step: usize,
    /// Each step's canary weight.
    pub steps: Vec<u32>,
    /// The canary's share of traffic now, in percent.
    pub canary_weight: u32,
    /// Whether requests with the rollout's header go to the canary now.
    pub header_routed: bool,
    pub failures: u32,
    pub max_failures: u32,
    pub inconclusive: u32,
    pub max_inconclusive: u32,
    pub interval_ms: u64,
    /// Percent.
    pub min_success_rate: f64,
    pub max_p99_ms: u64,
    pub min_requests: u32,
    /// Oldest first.
    pub analyses: Vec<trellis_model::rollout::Analysis>,
    /// What an operator may do now: `promote`, `promote-full`, `pause`, `resume`, `abort`.
    pub actions: Vec<String>,
    /// The outcome recorded in git, when the rollout has ended there.
    pub recorded: Option<String>,
}

/// Who the dashboard is talking to. Viewers (signed in or not) see everything; operators also
/// get the rollout buttons, whose requests carry `csrf`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionView {
    pub user: Option<String>,
    pub operator: bool,
    pub csrf: Option<String>,
}
