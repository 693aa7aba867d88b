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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

    /// The first line of the commit message.
    pub fn subject(&self) -> &str {
        self.message.lines().next().unwrap_or_default()
    }
}

/// The first 8 characters of a commit id, as people quote them. Counts characters, not bytes:
/// versions reported by proxies are not trusted to be hex.
pub fn short_sha(sha: &str) -> String {
    sha.chars().take(8).collect()
}

/// The `/policy` page: the revision in force, its files, and the recent history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicyView {
    pub applied: Option<RevisionView>,
    pub files: Vec<PolicyFile>,
    /// Newest first.
    pub revisions: Vec<RevisionView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PolicyFile {
    pub path: String,
    pub text: String,
}

/// Two revisions compared: what going from one to the other does to traffic, in the words of
/// `trellis diff`, and every policy file that differs, line by line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Comparison {
    pub from: RevisionView,
    pub to: RevisionView,
    /// `None` when either side is not a valid policy: there is no traffic to compare.
    pub changes: Option<Vec<Change>>,
    /// Only the files that differ, by path.
    pub files: Vec<FileDiff>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FileDiff {
    pub path: String,
    /// `added`, `removed` or `modified`.
    pub status: String,
    /// Side by side, old on the left; unchanged stretches away from a change are one `gap`.
    pub rows: Vec<DiffRow>,
}

/// One row of a side-by-side diff; line numbers count from 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DiffRow {
    Same {
        old: u32,
        new: u32,
        text: String,
    },
    Removed {
        old: u32,
        text: String,
    },
    Added {
        new: u32,
        text: String,
    },
    /// A line replaced by another.
    Changed {
        old: u32,
        new: u32,
        old_text: String,
        new_text: String,
    },
    /// Unchanged lines left out.
    Gap {
        lines: u32,
    },
}

/// What an operator's revert made: a commit restoring `to`'s policy, on `branch`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Reverted {
    /// The revision whose policy the commit restores.
    pub to: String,
    /// The new commit.
    pub sha: String,
    pub branch: String,
    /// On the watched branch (the control plane applies it next), or on a branch of its own
    /// for a pull request.
    pub watched: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServiceView {
    pub name: String,
    pub versions: Vec<VersionView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VersionView {
    pub name: String,
    /// Share of the service's default rule, in percent.
    pub weight: u32,
    /// Connected proxies serving this version.
    pub proxies: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// Leave out the routine kinds ([`ROUTINE_KINDS`]): what changed, who acted, what was
    /// refused or failed.
    #[serde(default)]
    pub significant: bool,
}

/// Audit kinds that come as a matter of course: an analysis every interval, proxies joining
/// and leaving, a revision the fleet caught up with. Consecutive ones that agree collapse into
/// one line of the log ([`runs`]); the overview and `significant` leave them out.
pub const ROUTINE_KINDS: &[&str] = &["rollout.analysed", "proxy.joined", "proxy.left", "revision.synced"];

pub fn is_routine(kind: &str) -> bool {
    ROUTINE_KINDS.contains(&kind)
}

/// The lines of the audit log, newest first: each the range of `items` it shows. Consecutive
/// events of a routine kind that agree on actor, service and outcome (an analysis's verdict)
/// are one line ("analysis passed × 42"); every other event is a line of its own.
pub fn runs(items: &[AuditEntry]) -> Vec<std::ops::Range<usize>> {
    fn key(e: &AuditEntry) -> Option<(&str, &str, Option<&str>, Option<&str>)> {
        is_routine(&e.kind)
            .then(|| (e.kind.as_str(), e.actor.as_str(), e.service.as_deref(), e.detail["verdict"].as_str()))
    }
    let mut lines: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, entry) in items.iter().enumerate() {
        match lines.last_mut() {
            Some(line) if key(entry).is_some() && key(entry) == key(&items[line.start]) => line.end = i + 1,
            _ => lines.push(i..i + 1),
        }
    }
    lines
}

/// A page of the audit log: newest first, `next` the cursor of the following page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next: Option<String>,
}

/// The golden metrics of a service, version or edge over a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TopologyView {
    pub window_s: u64,
    pub nodes: Vec<NodeView>,
    pub edges: Vec<EdgeView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
    /// The requests of the window per version of the callee that answered them: the split
    /// the caller's traffic took.
    #[serde(default)]
    pub versions: Vec<(String, u64)>,
}

/// The ranges the Traffic page and `/api/v1/traffic?range=` offer: seconds, name, label. The
/// first is kept in memory; the others come from Prometheus.
pub const TRAFFIC_RANGES: [(u64, &str, &str); 4] =
    [(900, "15m", "15 min"), (3600, "1h", "1 h"), (21_600, "6h", "6 h"), (86_400, "24h", "24 h")];

/// A range's seconds from its name (`1h`), if it is one of [`TRAFFIC_RANGES`].
pub fn traffic_range(name: &str) -> Option<u64> {
    TRAFFIC_RANGES.iter().find(|(_, n, _)| *n == name).map(|(s, ..)| *s)
}

/// The `/traffic` page: golden metrics per service and version over the last 15 minutes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TrafficView {
    pub step_s: u64,
    /// How far back the charts go: 900 from memory, longer from Prometheus.
    #[serde(default)]
    pub span_s: u64,
    /// Whether ranges beyond the quarter hour can be asked for (a Prometheus is configured).
    #[serde(default)]
    pub history: bool,
    /// The window of the figures in numbers (each service's `golden`, its routes' and refusals'):
    /// the last complete minute.
    #[serde(default)]
    pub window_s: u64,
    pub services: Vec<ServiceTraffic>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ServiceTraffic {
    pub service: String,
    /// What the service received over the view's window, all versions together: the same
    /// figure as its node on the topology over that window.
    #[serde(default)]
    pub golden: Golden,
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LimitedTraffic {
    /// The calling service, or `plaintext` / `unknown`.
    pub caller: String,
    /// The limit that refused them: `TrafficPolicy/<name>`, `Route/<name>: <rule>`.
    pub by: String,
    pub requests: u64,
    pub rps: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RouteTraffic {
    pub route: String,
    /// Over the last minute.
    pub golden: Golden,
    /// The last fifteen minutes, one point per step.
    #[serde(default)]
    pub points: Vec<Point>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VersionTraffic {
    pub version: String,
    /// Oldest first; one point per step.
    pub points: Vec<Point>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Point {
    /// Unix seconds at the start of the step.
    pub t: u64,
    pub golden: Golden,
}

/// The `/fleet` page: every live proxy and the sync status of the current revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

/// Renders unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`, on both server and browser, so
/// that hydration sees identical text.
pub fn format_time(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{ms} ms since 1970"),
    }
}

/// Reads a time as people write it: unix milliseconds, or a UTC date `2026-11-26`, optionally
/// with a time (`2026-11-26 13:33`, `2026-11-26T13:33:20Z`, a trailing ` UTC`). A date or time
/// that does not exist (`2026-02-31`, `24:00`, `-1:00`) is refused, not carried over.
pub fn parse_time(text: &str) -> Option<i64> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Some(ms);
    }
    let t = t.strip_suffix(" UTC").or_else(|| t.strip_suffix('Z')).unwrap_or(t);
    let (date, clock) = t.split_once(['T', ' ']).map_or((t, None), |(d, c)| (d, Some(c)));
    let fields = |text: &str, most: usize| -> Option<Vec<u16>> {
        let parts: Vec<&str> = text.split(&['-', ':'][..]).collect();
        let digits = |p: &&str| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit());
        (parts.len() <= most && parts.iter().all(digits)).then(|| parts.iter().filter_map(|p| p.parse().ok()).collect())
    };
    let [y, mo, d] = fields(date, 3)?[..] else { return None };
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::from(y), month, u8::try_from(d).ok()?).ok()?;
    let clock = match clock.map(|c| fields(c, 3)) {
        None => time::Time::MIDNIGHT,
        Some(None) => return None,
        Some(Some(hms)) => {
            let (h, m, s) = match hms[..] {
                [h, m] => (h, m, 0),
                [h, m, s] => (h, m, s),
                _ => return None,
            };
            time::Time::from_hms(u8::try_from(h).ok()?, u8::try_from(m).ok()?, u8::try_from(s).ok()?).ok()?
        }
    };
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc().unix_timestamp() * 1000)
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
        // Dates and times that do not exist are refused, never carried into the next month.
        for bad in
            ["2026-02-31", "2025-02-29", "2026-11-26 -1:00", "2026-11-26 24:00", "2026-11-26 12:60", "2026-11-26 12"]
        {
            assert_eq!(super::parse_time(bad), None, "{bad}");
        }
        assert_eq!(super::parse_time("2024-02-29").map(super::format_time).as_deref(), Some("2024-02-29 00:00:00 UTC"));
    }

    #[test]
    fn routine_events_that_agree_collapse_and_nothing_else_does() {
        let e = |kind: &str, service: &str, verdict: Option<&str>| super::AuditEntry {
            id: 0,
            at: 0,
            kind: kind.into(),
            actor: "trellis".into(),
            revision: None,
            service: Some(service.into()),
            summary: String::new(),
            detail: verdict.map_or(serde_json::Value::Null, |v| serde_json::json!({ "verdict": v })),
            hash: None,
        };
        let items = [
            e("rollout.analysed", "inventory", Some("pass")),
            e("rollout.analysed", "inventory", Some("pass")),
            e("rollout.analysed", "inventory", Some("pass")),
            e("rollout.analysed", "inventory", Some("fail")),
            e("rollout.analysed", "catalog", Some("fail")),
            e("revision.applied", "inventory", None),
            e("revision.applied", "inventory", None),
            e("proxy.joined", "inventory", None),
            e("proxy.joined", "inventory", None),
        ];
        assert_eq!(super::runs(&items), vec![0..3, 3..4, 4..5, 5..6, 6..7, 7..9]);
        assert_eq!(super::runs(&[]), vec![]);
        assert!(super::is_routine("rollout.analysed") && !super::is_routine("rollout.aborted"));
    }

    #[test]
    fn formats_utc() {
        assert_eq!(super::format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::format_time(1_795_700_000_000), "2026-11-26 13:33:20 UTC");
    }
}

/// The `/rollouts` page and `GET /api/v1/rollouts`: every Rollout in the applied revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RolloutsView {
    pub items: Vec<RolloutView>,
    /// The newest notification deliveries, newest first.
    #[serde(default)]
    pub deliveries: Vec<DeliveryView>,
}

/// One event told to one Notification's target, and how that went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeliveryView {
    pub id: i64,
    pub notification: String,
    /// `rollout-aborted`, `revision-rejected`, ...
    pub event: String,
    pub service: Option<String>,
    /// The audit event's summary.
    pub summary: String,
    /// `pending` (to be tried again), `delivered` or `failed` (given up).
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Unix milliseconds: queued, and last tried.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A rollout run that ended, as the audit log tells it: how it ended, who acted, the canary's
/// weight over time, and the commit that recorded the outcome in git.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RolloutRun {
    pub name: String,
    pub service: Option<String>,
    /// Unix milliseconds; `None` when the start is older than the log read.
    pub started_at: Option<i64>,
    pub ended_at: i64,
    /// `completed` or `aborted`.
    pub outcome: String,
    /// Who ended it: an operator, or `trellis` for the analyses.
    pub by: String,
    pub reason: Option<String>,
    /// Operators who acted on it, in order of their first action.
    pub operators: Vec<String>,
    /// The canary's weight from each change on (unix milliseconds, percent).
    pub weights: Vec<(i64, u32)>,
    /// The outcome's commit and the branch it went to, once recorded.
    pub commit: Option<String>,
    pub branch: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SessionView {
    pub user: Option<String>,
    pub operator: bool,
    pub csrf: Option<String>,
}
