//! The compiled configuration: what proxies and the control plane run, and the wire types that
//! carry it. Every default is resolved here, so a proxy never guesses.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(feature = "schema")]
use schemars::JsonSchema;

/// The whole mesh at one policy revision.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeshConfig {
    /// The git commit this configuration was compiled from.
    pub revision: String,
    #[serde(default)]
    pub mesh: MeshSettings,
    pub services: BTreeMap<String, ServiceConfig>,
    #[serde(default)]
    pub rollouts: BTreeMap<String, RolloutConfig>,
    /// The control plane's own: never sent to proxies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notifications: BTreeMap<String, NotificationConfig>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshSettings {
    pub mtls: MtlsMode,
    /// Applies to services without an AccessPolicy.
    pub default_access: AccessMode,
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings { mtls: crate::defaults::MTLS, default_access: crate::defaults::ACCESS }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceConfig {
    pub name: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub protocol: Protocol,
    pub versions: Vec<String>,
    /// Tried in order; the first rule whose matches apply decides.
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub traffic: TrafficConfig,
    #[serde(default)]
    pub access: AccessConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleConfig {
    /// Any one of these must apply; empty applies to every request.
    pub matches: Vec<MatchConfig>,
    pub backends: Vec<Backend>,
    #[serde(default = "crate::defaults::timeouts")]
    pub timeouts: Timeouts,
    #[serde(default = "crate::defaults::retry")]
    pub retry: RetryConfig,
    #[serde(default)]
    pub fault: Option<FaultConfig>,
    #[serde(default)]
    pub mirror: Option<MirrorConfig>,
    /// Enforced by the service's own proxies on requests this rule matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
}

impl RuleConfig {
    /// A rule for every request with the mesh defaults.
    pub fn catch_all(backends: Vec<Backend>) -> Self {
        RuleConfig {
            matches: Vec::new(),
            backends,
            timeouts: crate::defaults::timeouts(),
            retry: crate::defaults::retry(),
            fault: None,
            mirror: None,
            rate_limit: None,
        }
    }
}

/// All conditions present must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchConfig {
    pub path: Option<PathConfig>,
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Vec<HeaderConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PathConfig {
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderConfig {
    /// Lowercase, as HTTP/2 carries it.
    pub name: String,
    pub value: HeaderValueMatch,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HeaderValueMatch {
    Exact(String),
    Regex(String),
    Present,
}

/// A version of a service and its share of a rule's traffic, in percent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub version: String,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub request_ms: u64,
    pub per_try_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryConfig {
    /// Retries after the first attempt.
    pub attempts: u32,
    pub on: Vec<RetryOn>,
    pub budget: RetryBudget,
    /// Non-idempotent requests (POST, PATCH...) are retried on the same conditions, not only
    /// when nothing was sent: the service tolerates a request processed twice.
    #[serde(default)]
    pub non_idempotent: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryBudget {
    /// Retries may add at most this fraction of requests...
    pub ratio: f64,
    /// ...but always this many per second...
    pub min_per_second: u32,
    /// ...counted over this window.
    pub window_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// Any 5xx response.
    #[serde(rename = "5xx")]
    ServerError,
    /// 502, 503, 504.
    GatewayError,
    /// The connection could not be made (nothing was sent: always safe to retry).
    ConnectFailure,
    /// The connection was reset before a response.
    Reset,
    /// gRPC UNAVAILABLE (14) in a trailers-only response: the server says it did not take
    /// the call up. gRPC conditions retry whatever the method (every gRPC call is a POST).
    Unavailable,
    /// gRPC RESOURCE_EXHAUSTED (8).
    ResourceExhausted,
    /// gRPC CANCELLED (1).
    Cancelled,
    /// gRPC DEADLINE_EXCEEDED (4).
    DeadlineExceeded,
    /// gRPC INTERNAL (13).
    Internal,
}

impl RetryOn {
    /// The gRPC status code a gRPC condition names.
    pub fn grpc_code(self) -> Option<u8> {
        match self {
            RetryOn::Unavailable => Some(14),
            RetryOn::ResourceExhausted => Some(8),
            RetryOn::Cancelled => Some(1),
            RetryOn::DeadlineExceeded => Some(4),
            RetryOn::Internal => Some(13),
            RetryOn::ServerError | RetryOn::GatewayError | RetryOn::ConnectFailure | RetryOn::Reset => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    pub delay: Option<DelayConfig>,
    pub abort: Option<AbortConfig>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DelayConfig {
    pub percent: f64,
    pub duration_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbortConfig {
    pub percent: f64,
    pub status: u16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MirrorConfig {
    pub version: String,
    pub percent: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrafficConfig {
    pub load_balancer: LoadBalancer,
    pub outlier: OutlierConfig,
    pub limits: ConnectionLimits,
    /// Enforced by the service's own proxies on every request they receive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            load_balancer: crate::defaults::LOAD_BALANCER,
            outlier: crate::defaults::outlier(),
            limits: crate::defaults::connection_limits(),
            rate_limit: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum LoadBalancer {
    /// Power of two choices over peak-EWMA latency.
    #[default]
    P2cEwma,
    RoundRobin,
    LeastRequest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutlierConfig {
    pub enabled: bool,
    pub consecutive_5xx: u32,
    pub consecutive_gateway_errors: u32,
    pub interval_ms: u64,
    pub base_ejection_ms: u64,
    pub max_ejected_percent: u32,
}

/// Local rate limits, as Linkerd's HTTPLocalRateLimitPolicy and Envoy's local_ratelimit keep
/// them: token buckets in each of the service's proxies, on the inbound side, so the limit is
/// per proxy instance. A request must fit every bucket that applies to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    /// What set the limit, named in refusals: `TrafficPolicy/inventory`, `Route/catalog: GET /api/*`.
    pub by: String,
    /// All callers together.
    pub total: Option<Rate>,
    /// Each caller identity alone; callers without one (plaintext) share one bucket.
    pub per_caller: Option<Rate>,
    /// Named callers get this rate instead of `per_caller`; `total` still applies to them.
    #[serde(default)]
    pub overrides: Vec<RateOverride>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub per_second: u32,
    /// Requests admitted at once after a quiet spell: the bucket's size.
    pub burst: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateOverride {
    /// Calling services.
    pub callers: Vec<String>,
    pub rate: Rate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionLimits {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests_per_connection: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessConfig {
    pub mode: AccessMode,
    /// When non-empty, only callers matching a rule are allowed (`mode` no longer applies).
    pub rules: Vec<AccessRuleConfig>,
    /// The AccessPolicies the rules came from, named in a denial.
    #[serde(default)]
    pub policies: Vec<String>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig { mode: crate::defaults::ACCESS, rules: Vec::new(), policies: Vec::new() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRuleConfig {
    pub from: Vec<String>,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum MtlsMode {
    #[default]
    Strict,
    /// Accept plaintext too, during migration.
    Permissive,
    Disabled,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    AllowAll,
    #[default]
    Authenticated,
    Deny,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http,
    Http2,
    Grpc,
    /// Opaque bytes (a database, a message broker): balanced per connection, with mTLS and
    /// access by identity, but no HTTP routing, retries or timeouts.
    Tcp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RolloutStrategy {
    /// Traffic moves by weight.
    #[default]
    Canary,
    /// Requests with the rollout's header go to the canary whatever the weight.
    Header,
    /// The canary gets only header-routed test traffic, then everything at once.
    BlueGreen,
}

/// How a rollout ended, as recorded in git.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RolloutOutcome {
    Completed,
    Aborted,
}

/// What a Notification tells, as its policy names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    RolloutStarted,
    RolloutStepped,
    RolloutPaused,
    RolloutAborted,
    RolloutCompleted,
    RevisionRejected,
    ProxyNack,
    CertificateExpiring,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 8] = [
        NotifyEvent::RolloutStarted,
        NotifyEvent::RolloutStepped,
        NotifyEvent::RolloutPaused,
        NotifyEvent::RolloutAborted,
        NotifyEvent::RolloutCompleted,
        NotifyEvent::RevisionRejected,
        NotifyEvent::ProxyNack,
        NotifyEvent::CertificateExpiring,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NotifyEvent::RolloutStarted => "rollout-started",
            NotifyEvent::RolloutStepped => "rollout-stepped",
            NotifyEvent::RolloutPaused => "rollout-paused",
            NotifyEvent::RolloutAborted => "rollout-aborted",
            NotifyEvent::RolloutCompleted => "rollout-completed",
            NotifyEvent::RevisionRejected => "revision-rejected",
            NotifyEvent::ProxyNack => "proxy-nack",
            NotifyEvent::CertificateExpiring => "certificate-expiring",
        }
    }

    pub fn parse(name: &str) -> Option<NotifyEvent> {
        NotifyEvent::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The event an audit entry of `kind` is, if it is one a notification can want.
    pub fn of_audit(kind: &str) -> Option<NotifyEvent> {
        Some(match kind {
            "rollout.started" => NotifyEvent::RolloutStarted,
            "rollout.stepped" => NotifyEvent::RolloutStepped,
            "rollout.paused" | "rollout.awaiting_promotion" => NotifyEvent::RolloutPaused,
            "rollout.aborted" => NotifyEvent::RolloutAborted,
            "rollout.completed" => NotifyEvent::RolloutCompleted,
            "revision.rejected" => NotifyEvent::RevisionRejected,
            "proxy.nacked" => NotifyEvent::ProxyNack,
            "identity.expiring" => NotifyEvent::CertificateExpiring,
            _ => return None,
        })
    }
}

/// A compiled Notification: its events, the services it is about, and where it goes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationConfig {
    pub name: String,
    pub events: Vec<NotifyEvent>,
    /// Empty: every service.
    pub services: Vec<String>,
    pub target: NotifyTarget,
}

impl NotificationConfig {
    /// Whether an event of `kind` about `service` (none: the mesh's) goes to this target.
    pub fn wants(&self, kind: &str, service: Option<&str>) -> Option<NotifyEvent> {
        let event = NotifyEvent::of_audit(kind).filter(|e| self.events.contains(e))?;
        match service {
            Some(s) if !self.services.is_empty() && !self.services.iter().any(|x| x == s) => None,
            _ => Some(event),
        }
    }
}

/// Where a notification goes. Secrets are the names of environment variables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum NotifyTarget {
    Webhook { url: Option<String>, url_from: Option<String>, secret_from: String },
    Slack { url_from: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutConfig {
    pub name: String,
    pub service: String,
    pub stable: String,
    pub canary: String,
    pub strategy: RolloutStrategy,
    pub header: Option<HeaderConfig>,
    pub steps: Vec<StepConfig>,
    pub analysis: AnalysisConfig,
    #[serde(default)]
    pub status: Option<RolloutOutcome>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepConfig {
    pub weight: u32,
    pub pause_ms: Option<u64>,
    pub manual: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisConfig {
    pub interval_ms: u64,
    pub min_success_rate: f64,
    pub max_p99_ms: u64,
    pub min_requests: u32,
    pub max_failures: u32,
    pub max_inconclusive: u32,
}

impl ServiceConfig {
    /// A service with the mesh defaults for everything but its versions and rules.
    pub fn new(name: &str, versions: &[&str], rules: Vec<RuleConfig>) -> Self {
        ServiceConfig {
            name: name.to_string(),
            port: None,
            protocol: Protocol::default(),
            versions: versions.iter().map(|v| v.to_string()).collect(),
            rules,
            traffic: TrafficConfig::default(),
            access: AccessConfig::default(),
        }
    }

    /// The weight of each version in the rule that catches every request, for display.
    pub fn default_weights(&self) -> Vec<Backend> {
        self.rules
            .iter()
            .find(|r| r.matches.is_empty())
            .or(self.rules.last())
            .map(|r| r.backends.clone())
            .unwrap_or_default()
    }
}

/// A proxy instance that serves one version of a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    pub version: String,
    /// The inbound listener other proxies connect to.
    pub addr: String,
    pub proxy_id: String,
    /// The identity its certificate names, when it has one: callers speak mTLS to it and
    /// check it is this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// What one proxy needs: the routes it may call, the endpoints behind them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProxyConfig {
    /// Changes whenever anything in this config changes; proxies ACK it.
    pub version: String,
    pub revision: String,
    #[serde(default)]
    pub mesh: MeshSettings,
    pub services: BTreeMap<String, ServiceConfig>,
    pub endpoints: BTreeMap<String, Vec<Endpoint>>,
}

/// A service's identity in trust domain `domain`, as its certificate's URI SAN names it.
pub fn spiffe_id(domain: &str, service: &str) -> String {
    format!("spiffe://{domain}/svc/{service}")
}

/// The trust domain and service a mesh SPIFFE ID names (`spiffe://<domain>/svc/<service>`).
pub fn parse_identity(spiffe: &str) -> Option<(&str, &str)> {
    let (domain, service) = spiffe.strip_prefix("spiffe://")?.split_once("/svc/")?;
    (!domain.is_empty() && !service.is_empty() && !service.contains('/')).then_some((domain, service))
}

/// The DNS name a certificate carries beside its SPIFFE ID, so that a caller can check the
/// server is the service it meant with ordinary (webpki) name verification.
pub fn identity_dns_name(spiffe: &str) -> Option<String> {
    parse_identity(spiffe).map(|(domain, service)| format!("{service}.svc.{domain}"))
}

/// The service a SPIFFE ID names, when it is one of this mesh's (`spiffe://<domain>/svc/<service>`).
pub fn identity_service<'a>(spiffe: &'a str, domain: &str) -> Option<&'a str> {
    parse_identity(spiffe).filter(|(d, _)| *d == domain).map(|(_, service)| service)
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn names_of_an_identity() {
        let id = spiffe_id("mesh.local", "inventory");
        assert_eq!(id, "spiffe://mesh.local/svc/inventory");
        assert_eq!(identity_dns_name(&id).as_deref(), Some("inventory.svc.mesh.local"));
        assert_eq!(identity_service(&id, "mesh.local"), Some("inventory"));
        assert_eq!(identity_service(&id, "other.local"), None);
        assert_eq!(identity_service("spiffe://mesh.local/svc/a/b", "mesh.local"), None);
        assert_eq!(identity_service("spiffe://mesh.localx/svc/a", "mesh.local"), None);
        assert_eq!(identity_dns_name("https://x/svc/a"), None);
    }
}
