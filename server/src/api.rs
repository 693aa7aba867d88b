//! The public JSON API under `/api/v1`, used by the dashboard, the CLI and scripts.
//! Lists answer `{"items": [...], "next": cursor}`.

use crate::state::AppState;
use crate::telemetry::Counts;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use openapi::{Api, Op};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use trellis_api::{
    AuditFilter, EdgeView, FleetView, NodeView, Overview, ServiceView, TopologyView, TrafficView, VersionView,
};

pub mod audit;
mod error;
pub mod forward;
mod metrics;
pub mod openapi;
pub mod revisions;
pub mod rollouts;
mod traffic;

pub use error::{ApiError, ApiJson, log_errors, security_headers, strict_transport};
pub use revisions::build_policy;
pub use traffic::{build_traffic, build_traffic_over};

/// Every endpoint, with what the OpenAPI document says of it.
fn api() -> Api {
    let api = revisions::routes(audit::routes(rollouts::routes(Api::default())));
    api.get("/api/v1/overview", Op::json::<Overview>("The mesh at a glance: revision, services, fleet sync"), overview)
        .get("/api/v1/services", Op::json::<Page<ServiceView>>("Every service with its versions and split"), services)
        .get("/api/v1/proxies", Op::json::<Page<trellis_api::ProxyView>>("Every proxy the fleet knows"), proxies)
        .get("/api/v1/fleet", Op::json::<FleetView>("The fleet's sync and the control plane's replicas"), fleet)
        .get(
            "/api/v1/topology",
            Op::json::<TopologyView>("Who calls whom, with golden metrics, over a window").query::<WindowQuery>(),
            topology,
        )
        .get(
            "/api/v1/traffic",
            Op::json::<TrafficView>("Golden metrics per service, route and version over a range")
                .query::<traffic::RangeQuery>(),
            traffic::traffic,
        )
        .get("/api/v1/health", Op::json::<crate::health::Report>("What `trellis check` reports"), health)
        .get("/live", Op::other("The process answers", "text/plain"), || async { "live\n" })
        .get("/ready", Op::other("Ready to serve, or what it waits for (503)", "text/plain"), ready)
        .get("/metrics", Op::other("Prometheus metrics", "text/plain; version=0.0.4"), metrics::prometheus)
        .get(
            "/api/v1/prometheus/targets",
            Op::json::<Vec<metrics::Targets>>("The proxies' admin endpoints, for Prometheus's http_sd_configs"),
            metrics::targets,
        )
        .get(
            "/api/v1/events",
            Op::other("Server-sent events: `changed` whenever the dashboard would", "text/event-stream"),
            events,
        )
        .post("/api/v1/hooks/git", Op::other("A git host's push hook: look at the branch now", "text/plain"), git_hook)
        .get("/api/v1/openapi.json", Op::other("This document", "application/json"), openapi_document)
        .post(ADMISSION, Op::other(ADMISSION_SUMMARY, "application/json"), inject)
}

/// The sidecar injector's endpoint: `{scope}` is `namespace` for the webhook's entry for
/// namespaces labelled `trellis.io/inject: enabled` (their pods are injected unless they opt
/// out) and `pod` for the other (only pods annotated so are).
const ADMISSION: &str = "/api/v1/admission/inject/{scope}";
const ADMISSION_SUMMARY: &str = "The sidecar injector: a Kubernetes AdmissionReview (v1) of a pod, answered with one \
                                 holding a JSON Patch; scope is namespace or pod";

/// The admission listener's routes: the injector alone, served over TLS to the API server.
pub fn admission_router() -> axum::Router<AppState> {
    Api::default().post(ADMISSION, Op::other(ADMISSION_SUMMARY, "application/json"), inject).into_router()
}

/// Never an error status: a review the injector cannot read is answered with a review that
/// refuses it, saying why, for the API server to show.
async fn inject(
    State(state): State<AppState>,
    axum::extract::Path(scope): axum::extract::Path<String>,
    body: bytes::Bytes,
) -> Json<serde_json::Value> {
    Json(crate::inject::review(&body, crate::inject::Scope::parse(&scope), &state.injector))
}

pub fn router() -> axum::Router<AppState> {
    api().into_router()
}

/// The API's OpenAPI 3.1 document (`trellis openapi`, `GET /api/v1/openapi.json`).
pub fn openapi() -> serde_json::Value {
    api().document()
}

async fn openapi_document() -> Json<serde_json::Value> {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(openapi).clone())
}

#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "PageOf{T}")]
struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct PageQuery {
    /// The `next` cursor of the previous page.
    cursor: Option<String>,
    limit: Option<i64>,
}

impl PageQuery {
    pub(crate) fn parse(&self) -> Result<(Option<i64>, i64), ApiError> {
        let before = match &self.cursor {
            None => None,
            Some(c) => Some(
                c.parse::<i64>()
                    .map_err(|_| ApiError::invalid("invalid cursor", "use the `next` value of the previous page"))?,
            ),
        };
        Ok((before, self.limit.unwrap_or(50).clamp(1, 500)))
    }
}

pub async fn build_overview(state: &AppState) -> Result<Overview, ApiError> {
    let revisions = state.revisions();
    let proxies = state.fleet.proxies();
    Ok(Overview {
        applied: revisions.applied,
        latest: revisions.rejected,
        services: service_views(state, &proxies),
        proxies,
        // What an operator opening the dashboard wants to know first: not the analyses.
        audit: state.store.events(&AuditFilter { significant: true, ..Default::default() }, None, 10).await?,
    })
}

async fn overview(State(state): State<AppState>) -> Result<Json<Overview>, ApiError> {
    Ok(Json(build_overview(&state).await?))
}

fn service_views(state: &AppState, proxies: &[trellis_api::ProxyView]) -> Vec<ServiceView> {
    let Some(mesh) = state.fleet.mesh() else { return Vec::new() };
    mesh.services
        .values()
        .map(|svc| {
            let weights = svc.default_weights();
            ServiceView {
                name: svc.name.clone(),
                versions: svc
                    .versions
                    .iter()
                    .map(|v| VersionView {
                        name: v.clone(),
                        weight: weights.iter().find(|b| &b.version == v).map_or(0, |b| b.weight),
                        proxies: proxies.iter().filter(|p| p.service == svc.name && &p.version == v).count(),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[derive(Deserialize, schemars::JsonSchema)]
struct WindowQuery {
    /// `10s`, `1m` (the default, as the Traffic page's figures) or `10m`.
    window: Option<String>,
}

fn window_secs(q: &WindowQuery) -> Result<u64, ApiError> {
    match q.window.as_deref().unwrap_or("1m") {
        "10s" => Ok(10),
        "1m" => Ok(60),
        "10m" => Ok(600),
        other => Err(ApiError::invalid("invalid window", format!("`{other}`: use 10s, 1m or 10m"))),
    }
}

pub fn build_topology(state: &AppState, window_s: u64) -> TopologyView {
    let now_s = crate::telemetry::settled(crate::now_ms() as u64 / 1000);
    let totals = state.telemetry.window(now_s, window_s);
    let tcp = state.telemetry.tcp_window(now_s, window_s);
    let mut tcp_nodes: BTreeMap<String, trellis_model::telemetry::TcpCounts> = BTreeMap::new();
    let mut tcp_edges: BTreeMap<(String, String), trellis_model::telemetry::TcpCounts> = BTreeMap::new();
    for (key, counts) in &tcp {
        match &key.caller {
            Some(caller) => tcp_edges.entry((caller.clone(), key.service.clone())).or_default().merge(counts),
            None => tcp_nodes.entry(key.service.clone()).or_default().merge(counts),
        }
    }
    let mut services: Vec<String> =
        state.fleet.mesh().map(|m| m.services.keys().cloned().collect()).unwrap_or_default();
    let mut nodes = Vec::new();
    let mut edges: BTreeMap<(String, String), Counts> = BTreeMap::new();
    let mut splits: BTreeMap<(String, String), BTreeMap<String, u64>> = BTreeMap::new();
    for (key, counts) in &totals {
        if let Some(caller) = &key.caller {
            edges.entry((caller.clone(), key.service.clone())).or_default().merge(counts);
            let split = splits.entry((caller.clone(), key.service.clone())).or_default();
            *split.entry(key.version.clone()).or_default() += counts.requests;
        }
        if !services.contains(&key.service) {
            services.push(key.service.clone());
        }
    }
    for (from, to) in tcp_edges.keys() {
        edges.entry((from.clone(), to.clone())).or_default();
    }
    for service in tcp.keys().map(|k| &k.service) {
        if !services.contains(service) {
            services.push(service.clone());
        }
    }
    services.sort();
    for service in services {
        let mut all = Counts::default();
        let mut versions: BTreeMap<String, Counts> = BTreeMap::new();
        for (key, counts) in totals.iter().filter(|(k, _)| k.caller.is_none() && k.service == service) {
            all.merge(counts);
            versions.entry(key.version.clone()).or_default().merge(counts);
        }
        nodes.push(NodeView {
            tcp: tcp_nodes.get(&service).map(|c| crate::telemetry::tcp_view(c, window_s)),
            service,
            golden: all.golden(window_s),
            versions: versions.into_iter().map(|(v, c)| (v, c.golden(window_s))).collect(),
        });
    }
    let mut denied: BTreeMap<(String, String), (u64, Vec<String>)> = BTreeMap::new();
    for ((caller, callee, by), n) in state.telemetry.denied(now_s, window_s) {
        edges.entry((caller.clone(), callee.clone())).or_default();
        let entry = denied.entry((caller, callee)).or_default();
        entry.0 += n;
        entry.1.push(by);
    }
    let edges = edges
        .into_iter()
        .map(|((from, to), c)| {
            let (denied, mut denied_by) = denied.remove(&(from.clone(), to.clone())).unwrap_or_default();
            denied_by.sort();
            let tcp = tcp_edges.get(&(from.clone(), to.clone())).map(|c| crate::telemetry::tcp_view(c, window_s));
            let versions = splits.remove(&(from.clone(), to.clone())).unwrap_or_default().into_iter().collect();
            EdgeView { golden: c.golden(window_s), from, to, denied, denied_by, tcp, versions }
        })
        .collect();
    TopologyView { window_s, nodes, edges }
}

async fn topology(State(state): State<AppState>, Query(q): Query<WindowQuery>) -> Result<Json<TopologyView>, ApiError> {
    Ok(Json(build_topology(&state, window_secs(&q)?)))
}

/// Ready to take requests (a Kubernetes readiness probe, a load balancer's check): the
/// database answers. Not the policy: a replica whose repository is unreachable still serves
/// the last revision, and its dashboard says what is wrong.
async fn ready(State(state): State<AppState>) -> (http::StatusCode, String) {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (http::StatusCode::OK, "ready\n".into()),
        Ok(Err(e)) => (http::StatusCode::SERVICE_UNAVAILABLE, format!("the database does not answer: {e}\n")),
        Err(_) => (http::StatusCode::SERVICE_UNAVAILABLE, "the database did not answer within 2 s\n".into()),
    }
}

async fn health(State(state): State<AppState>) -> Json<crate::health::Report> {
    Json(crate::health::report(&state).await)
}

pub fn build_fleet(state: &AppState) -> FleetView {
    let proxies = state.fleet.proxies();
    FleetView {
        revision: state.fleet.mesh().map(|m| m.revision.clone()),
        synced: proxies.iter().filter(|p| p.synced).count(),
        total: proxies.len(),
        proxies,
        issuer_expires: state.ca.as_ref().map(|ca| ca.issuer_not_after_ms),
        anchor_expires: state.ca.as_ref().map(|ca| ca.anchor_not_after_ms),
        now_ms: crate::now_ms(),
        control_plane: state.cluster.view(),
    }
}

async fn fleet(State(state): State<AppState>) -> Json<FleetView> {
    Json(build_fleet(&state))
}

async fn services(State(state): State<AppState>) -> Json<Page<ServiceView>> {
    Json(Page { items: service_views(&state, &state.fleet.proxies()), next: None })
}

async fn proxies(State(state): State<AppState>) -> Json<Page<trellis_api::ProxyView>> {
    Json(Page { items: state.fleet.proxies(), next: None })
}

/// Server-sent events: one message per change (coalesced), for live pages.
/// One event per change, at most one per [`EVENT_GAP`]: changes in between are told as one,
/// so a page refetches a few times a second at most, however busy the mesh.
async fn events(State(state): State<AppState>) -> impl IntoResponse {
    let changes = state.changes.subscribe();
    let shutdown = state.shutdown.clone();
    let stream = futures::stream::unfold((changes, shutdown, false), |(mut changes, mut shutdown, sent)| async move {
        if sent {
            tokio::select! {
                () = tokio::time::sleep(EVENT_GAP) => {}
                () = shutdown.recv() => return None,
            }
        }
        tokio::select! {
            r = changes.changed() => {
                r.ok()?;
                let generation = *changes.borrow_and_update();
                let event = Event::default().data(json!({ "generation": generation }).to_string());
                Some((Ok::<_, std::convert::Infallible>(event), (changes, shutdown, true)))
            }
            () = shutdown.recv() => None,
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

const EVENT_GAP: Duration = Duration::from_millis(250);

/// Asks the git follower to fetch and look at the branch now (a push notification). With a
/// secret configured, the body must be signed as GitHub signs it: `X-Hub-Signature-256`.
async fn git_hook(
    State(state): State<AppState>,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> Result<http::StatusCode, ApiError> {
    if let Some(secret) = &state.webhook_secret {
        let signature = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok());
        if let Err(why) = crate::webhook::verify(secret.as_bytes(), &body, signature) {
            tracing::warn!(%why, "git webhook refused");
            state.audit.system("hook.denied", None, format!("git webhook refused: {why}"), json!({}));
            return Err(ApiError::Unauthorized(format!("webhook signature: {why}")));
        }
    }
    state.git_hook.notify_one();
    // A load balancer hands the hook to one replica; the others fetch now too.
    if let Err(e) = state.store.notify(crate::store::topic::GIT).await {
        tracing::debug!(error = %e, "cannot pass the webhook on to the other replicas; they fetch at their next poll");
    }
    Ok(http::StatusCode::ACCEPTED)
}
