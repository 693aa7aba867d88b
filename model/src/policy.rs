//! The resource kinds as users write them in the policy repository.
//!
//! Fields that validation points at are [`Sp`], so an error names the exact line and column.
//! Unknown fields are refused: a typo must never silently mean "use the default".
//! Optional fields fall back to the Mesh's defaults, then to [`crate::defaults`].

pub use crate::config::{AccessMode, LoadBalancer, MtlsMode, Protocol, RetryOn, RolloutOutcome, RolloutStrategy};
use crate::diagnostic::Pos;
pub use crate::spanned::Sp;
use serde::Deserialize;

/// Every resource of one commit, with the file each came from.
#[derive(Debug, Default)]
pub struct Policy {
    pub meshes: Vec<Located<Mesh>>,
    pub services: Vec<Located<Service>>,
    pub routes: Vec<Located<Route>>,
    pub traffic_policies: Vec<Located<TrafficPolicy>>,
    pub access_policies: Vec<Located<AccessPolicy>>,
    pub rollouts: Vec<Located<Rollout>>,
    pub notifications: Vec<Located<Notification>>,
}

/// A resource and where it was written.
#[derive(Debug)]
pub struct Located<T> {
    pub file: String,
    /// Position of the document's `kind:` key.
    pub pos: Pos,
    /// Lines before the document in its file: positions inside `value` count from the document.
    pub line_offset: u32,
    pub value: T,
}

impl<T> Located<T> {
    /// The position in the file of a value inside this resource.
    pub fn at<S>(&self, s: &Sp<S>) -> Pos {
        let p = s.pos;
        Pos { line: if p.line == 0 { 0 } else { p.line + self.line_offset }, ..p }
    }
}

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// Mesh-wide settings and the defaults every service inherits. At most one per repository.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mesh {
    pub kind: String,
    pub name: Sp<String>,
    /// Encryption between proxies: strict (default), permissive, or disabled.
    #[serde(default)]
    pub mtls: Option<MtlsMode>,
    /// Who may call a service that has no AccessPolicy: allow-all, authenticated (default), deny.
    #[serde(default)]
    pub access: Option<AccessMode>,
    #[serde(default)]
    pub defaults: Option<Defaults>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Defaults {
    #[serde(default)]
    pub timeouts: Option<TimeoutsSpec>,
    #[serde(default)]
    pub retries: Option<RetrySpec>,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierSpec>,
}

/// A service in the mesh and the versions (subsets) it runs.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    pub kind: String,
    pub name: Sp<String>,
    /// The port the application listens on behind its sidecar.
    #[serde(default)]
    pub port: Option<Sp<u16>>,
    #[serde(default)]
    pub protocol: Protocol,
    pub versions: Vec<Sp<String>>,
}

/// How requests to one service are matched, split across versions, timed out and retried.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    pub kind: String,
    pub name: Sp<String>,
    /// The service whose traffic this route shapes.
    pub service: Sp<String>,
    /// Tried in order; the first rule with a matching condition decides.
    pub rules: Vec<Sp<Rule>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    /// The rule applies when any one of these matches; without matches it applies to all.
    #[serde(default)]
    pub matches: Vec<Sp<Match>>,
    pub backends: Vec<Sp<WeightedVersion>>,
    #[serde(default)]
    pub timeouts: Option<TimeoutsSpec>,
    #[serde(default)]
    pub retries: Option<RetrySpec>,
    #[serde(default)]
    pub fault: Option<FaultSpec>,
    #[serde(default)]
    pub mirror: Option<Sp<MirrorSpec>>,
    /// Requests this rule matches that the service's proxies admit, on top of the service's
    /// own limit (TrafficPolicy `rateLimit`).
    #[serde(default)]
    pub rate_limit: Option<Sp<RateLimitSpec>>,
}

/// Every condition given must hold.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Match {
    #[serde(default)]
    pub path: Option<PathMatch>,
    /// HTTP method, e.g. GET; any when absent.
    #[serde(default)]
    pub method: Option<Sp<String>>,
    #[serde(default)]
    pub headers: Vec<Sp<HeaderMatch>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub enum PathMatch {
    Exact(Sp<String>),
    /// Whole path segments: `/api` matches `/api` and `/api/x`, not `/apis`.
    Prefix(Sp<String>),
    Regex(Sp<String>),
}

/// A header condition: `value` (exact), `regex`, or neither (the header is present).
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderMatch {
    pub name: Sp<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub regex: Option<Sp<String>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeightedVersion {
    pub version: Sp<String>,
    /// Percentage of matching requests; the weights of a rule add up to 100.
    pub weight: u32,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TimeoutsSpec {
    /// The whole request, retries included, e.g. `2s`.
    #[serde(default)]
    pub request: Option<Sp<String>>,
    /// Each attempt.
    #[serde(default)]
    pub per_try: Option<Sp<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetrySpec {
    /// Retries after the first attempt, 0 to 10.
    #[serde(default)]
    pub attempts: Option<Sp<u32>>,
    /// Which failures are retried.
    #[serde(default)]
    pub on: Option<Vec<RetryOn>>,
    /// Retry non-idempotent requests (POST, PATCH, ...) on these conditions too. Off by
    /// default: such a request is retried only when it never left the proxy (a connection
    /// that could not be made), as it may have been processed (RFC 9110 §9.2.2).
    #[serde(default)]
    pub non_idempotent: Option<Sp<bool>>,
    #[serde(default)]
    pub budget: Option<BudgetSpec>,
}

/// Retries may add at most `ratio` of the requests, but always `minPerSecond`, over `window`.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BudgetSpec {
    /// 0.0 to 1.0; 0.2 means retries may add 20% to the load.
    #[serde(default)]
    pub ratio: Option<Sp<f64>>,
    #[serde(default)]
    pub min_per_second: Option<Sp<u32>>,
    #[serde(default)]
    pub window: Option<Sp<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultSpec {
    #[serde(default)]
    pub delay: Option<Sp<DelaySpec>>,
    #[serde(default)]
    pub abort: Option<Sp<AbortSpec>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DelaySpec {
    pub percent: Sp<f64>,
    pub duration: Sp<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AbortSpec {
    pub percent: Sp<f64>,
    /// The HTTP status answered instead, 400 to 599.
    pub status: Sp<u16>,
}

/// Copies a share of requests to a version; its responses are discarded.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MirrorSpec {
    pub version: Sp<String>,
    pub percent: Sp<f64>,
}

/// How one service's endpoints are balanced, ejected and limited.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrafficPolicy {
    pub kind: String,
    pub name: Sp<String>,
    pub service: Sp<String>,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierSpec>,
    #[serde(default)]
    pub connection_limits: Option<LimitsSpec>,
    /// Requests each of the service's proxies admits; beyond it callers get 429.
    #[serde(default)]
    pub rate_limit: Option<Sp<RateLimitSpec>>,
}

/// Local rate limits (Linkerd's HTTPLocalRateLimitPolicy): every proxy of the service keeps
/// its own token buckets, so the limits are per proxy instance. A caller over a limit gets
/// 429 with `Retry-After` (a gRPC caller RESOURCE_EXHAUSTED).
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitSpec {
    /// All callers together.
    #[serde(default)]
    pub total: Option<Sp<RateSpec>>,
    /// Each caller identity alone; callers without one (plaintext) share one limit.
    #[serde(default)]
    pub per_caller: Option<Sp<RateSpec>>,
    /// Named callers get their own rate instead of `perCaller`; `total` still applies.
    #[serde(default)]
    pub overrides: Vec<Sp<RateOverrideSpec>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateSpec {
    pub requests_per_second: Sp<u32>,
    /// Requests admitted at once after a quiet spell; one second's worth by default.
    #[serde(default)]
    pub burst: Option<Sp<u32>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateOverrideSpec {
    /// Calling services (their mesh identities).
    pub from: Vec<Sp<String>>,
    pub requests_per_second: Sp<u32>,
    #[serde(default)]
    pub burst: Option<Sp<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutlierSpec {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, rename = "consecutive5xx")]
    pub consecutive_5xx: Option<Sp<u32>>,
    #[serde(default)]
    pub consecutive_gateway_errors: Option<Sp<u32>>,
    #[serde(default)]
    pub interval: Option<Sp<String>>,
    /// Multiplied by the number of times an endpoint was ejected.
    #[serde(default)]
    pub base_ejection_time: Option<Sp<String>>,
    #[serde(default)]
    pub max_ejected_percent: Option<Sp<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsSpec {
    #[serde(default)]
    pub max_connections: Option<Sp<u32>>,
    #[serde(default)]
    pub max_pending_requests: Option<Sp<u32>>,
    /// 0 means unlimited.
    #[serde(default)]
    pub max_requests_per_connection: Option<Sp<u32>>,
}

/// Which identities may call a service. Several policies on one service add up.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessPolicy {
    pub kind: String,
    pub name: Sp<String>,
    pub service: Sp<String>,
    pub rules: Vec<Sp<AccessRule>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccessRule {
    /// Calling services (their mesh identities).
    pub from: Vec<Sp<String>>,
    /// Path prefixes; any path when empty.
    #[serde(default)]
    pub paths: Vec<Sp<String>>,
    /// Any method when empty.
    #[serde(default)]
    pub methods: Vec<Sp<String>>,
}

/// A canary of one service: traffic moves from `stable` to `canary` step by step while the
/// canary's metrics stay within the analysis thresholds.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rollout {
    pub kind: String,
    pub name: Sp<String>,
    pub service: Sp<String>,
    pub stable: Sp<String>,
    pub canary: Sp<String>,
    #[serde(default)]
    pub strategy: RolloutStrategy,
    /// For `header` and `blue-green`: requests with this header go to the canary.
    #[serde(default)]
    pub header: Option<Sp<HeaderMatch>>,
    pub steps: Vec<Sp<StepSpec>>,
    pub analysis: AnalysisSpec,
    /// Written by Trellis when the rollout ends: `completed` (all traffic stays on the canary)
    /// or `aborted` (all traffic stays on stable). A finished rollout no longer runs.
    #[serde(default)]
    pub status: Option<RolloutOutcome>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StepSpec {
    /// The canary's share of traffic at this step, 1 to 100.
    pub weight: Sp<u32>,
    /// Wait this long (analysing) before the next step.
    #[serde(default)]
    pub pause: Option<Sp<String>>,
    /// Wait for an operator to promote.
    #[serde(default)]
    pub manual: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnalysisSpec {
    pub interval: Sp<String>,
    /// Minimum success rate of the canary, in percent.
    pub success_rate: Sp<f64>,
    /// Maximum p99 latency of the canary.
    pub p99: Sp<String>,
    /// Fewer requests than this in an interval is inconclusive, neither pass nor fail.
    pub min_requests: Sp<u32>,
    /// Failed analyses before the rollout aborts.
    #[serde(default)]
    pub max_failures: Option<Sp<u32>>,
    /// Inconclusive analyses in a row before the rollout pauses and says why.
    #[serde(default)]
    pub max_inconclusive: Option<Sp<u32>>,
}

/// Who is told of what: a webhook or a Slack channel, and the events it wants. Secrets are
/// named, never written: each `...From` is an environment variable of the control plane.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notification {
    pub kind: String,
    pub name: Sp<String>,
    /// rollout-started, rollout-stepped, rollout-paused (an analysis paused it, or it waits
    /// for a promotion), rollout-aborted, rollout-completed, revision-rejected, proxy-nack,
    /// certificate-expiring.
    pub events: Vec<Sp<String>>,
    /// Only events about these services (every service's when empty); revision and
    /// certificate events concern no one service and always go.
    #[serde(default)]
    pub services: Vec<Sp<String>>,
    /// Generic JSON, signed with HMAC-SHA256 in `X-Trellis-Signature-256`.
    #[serde(default)]
    pub webhook: Option<Sp<WebhookSpec>>,
    /// Slack's incoming-webhook format.
    #[serde(default)]
    pub slack: Option<Sp<SlackSpec>>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookSpec {
    /// Where to POST; or `urlFrom`, when the URL itself is a secret.
    #[serde(default)]
    pub url: Option<Sp<String>>,
    #[serde(default)]
    pub url_from: Option<Sp<String>>,
    /// The environment variable holding the HMAC key deliveries are signed with.
    pub secret_from: Sp<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlackSpec {
    /// The environment variable holding the channel's incoming-webhook URL (it carries the
    /// channel's token, so it is never written in git).
    pub url_from: Sp<String>,
}
