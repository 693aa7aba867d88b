//! `/api/v1/traffic`: golden metrics per service, version and route over fifteen minutes from
//! memory, or over hours from Prometheus; the figures in numbers over the last minute.

use super::ApiError;
use crate::state::AppState;
use crate::telemetry::Counts;
use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use std::collections::BTreeMap;
use trellis_api::{LimitedTraffic, Point, RouteTraffic, ServiceTraffic, TrafficView, VersionTraffic};

/// Fifteen minutes in thirty-second steps, per service and version, from what each service
/// received; the figures in numbers over the last complete minute.
pub fn build_traffic(state: &AppState) -> TrafficView {
    const SPAN_S: u64 = 900;
    const STEP_S: u64 = 30;
    const WINDOW_S: u64 = 60;
    let now = crate::telemetry::settled(crate::now_ms() as u64 / 1000);
    let minute = state.telemetry.window(now, WINDOW_S);
    // What each service received over the minute, all versions together.
    let mut received: BTreeMap<&str, Counts> = BTreeMap::new();
    for (k, c) in minute.iter().filter(|(k, _)| k.caller.is_none()) {
        received.entry(k.service.as_str()).or_default().merge(c);
    }
    let recent = state.telemetry.window(now, SPAN_S);
    // A chart of the last fifteen minutes, one point per complete step, of what `pick` selects.
    let chart = |pick: &dyn Fn(&crate::telemetry::Key) -> bool| -> Vec<Point> {
        let series = state.telemetry.series(now, SPAN_S, STEP_S, pick);
        series.into_iter().map(|(t, c)| Point { t, golden: c.golden(STEP_S) }).collect()
    };
    let mut pairs: Vec<(String, String)> =
        recent.keys().filter(|k| k.caller.is_none()).map(|k| (k.service.clone(), k.version.clone())).collect();
    pairs.sort();
    pairs.dedup();
    let mut services: Vec<ServiceTraffic> = Vec::new();
    for (service, version) in pairs {
        let points = chart(&|k| k.caller.is_none() && k.service == service && k.version == version);
        let golden = received.get(service.as_str()).copied().unwrap_or_default().golden(WINDOW_S);
        service_mut(&mut services, state, &service, golden).versions.push(VersionTraffic { version, points });
    }
    // Routes as callers matched them (all versions together): the last minute, and charts.
    let mut routes: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for (k, c) in minute.iter().filter(|(k, _)| k.caller.is_some()) {
        routes.entry((k.service.clone(), k.route.clone())).or_default().merge(c);
    }
    for k in recent.keys().filter(|k| k.caller.is_some()) {
        routes.entry((k.service.clone(), k.route.clone())).or_default();
    }
    for ((service, route), counts) in routes {
        let Some(s) = services.iter_mut().find(|s| s.service == service) else { continue };
        let points = chart(&|k| k.caller.is_some() && k.service == service && k.route == route);
        s.routes.push(RouteTraffic { route, golden: counts.golden(WINDOW_S), points });
    }
    for ((caller, callee, by), requests) in state.telemetry.limited(now, WINDOW_S) {
        let Some(s) = services.iter_mut().find(|s| s.service == callee) else { continue };
        s.limited.push(LimitedTraffic { caller, by, requests, rps: requests as f64 / WINDOW_S as f64 });
    }
    for s in &mut services {
        s.limited.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| (&a.caller, &a.by).cmp(&(&b.caller, &b.by))));
    }
    TrafficView { step_s: STEP_S, span_s: SPAN_S, window_s: WINDOW_S, services, history: state.prometheus.is_some() }
}

/// The Traffic view over `range_s`: the quarter hour from memory; longer ranges chart what
/// Prometheus kept, while the figures in numbers stay the last complete minute's.
pub async fn build_traffic_over(state: &AppState, range_s: u64) -> Result<TrafficView, ApiError> {
    let mut view = build_traffic(state);
    if range_s <= view.span_s {
        return Ok(view);
    }
    let Some(url) = &state.prometheus else {
        return Err(ApiError::invalid(
            "no traffic history beyond 15 minutes",
            "longer ranges need TRELLIS_PROMETHEUS_URL, a Prometheus that scrapes the proxies (see the README's Prometheus section)",
        ));
    };
    let end = crate::telemetry::settled(crate::now_ms() as u64 / 1000);
    let history = crate::prometheus::history(&state.peers, url, range_s, end).await.map_err(ApiError::Unavailable)?;
    for s in &mut view.services {
        s.versions.clear();
        s.routes.iter_mut().for_each(|r| r.points.clear());
    }
    // A service quiet for the last minute but busy earlier in the range still gets its charts.
    for ((service, version), points) in history.versions {
        let entry = service_mut(&mut view.services, state, &service, trellis_api::Golden::default());
        entry.versions.push(VersionTraffic { version, points });
    }
    for ((service, route), points) in history.routes {
        let Some(s) = view.services.iter_mut().find(|s| s.service == service) else { continue };
        match s.routes.iter_mut().find(|r| r.route == route) {
            Some(r) => r.points = points,
            None => s.routes.push(RouteTraffic { route, golden: trellis_api::Golden::default(), points }),
        }
    }
    view.services.sort_by(|a, b| a.service.cmp(&b.service));
    view.step_s = crate::prometheus::step_for(range_s);
    view.span_s = range_s;
    Ok(view)
}

/// `service`'s entry in `services`, made (with `golden` and its rate limits) if it has none.
fn service_mut<'a>(
    services: &'a mut Vec<ServiceTraffic>,
    state: &AppState,
    service: &str,
    golden: trellis_api::Golden,
) -> &'a mut ServiceTraffic {
    match services.iter().position(|s| s.service == service) {
        Some(at) => &mut services[at],
        None => {
            services.push(ServiceTraffic {
                golden,
                rate_limits: rate_limits(state, service),
                service: service.to_string(),
                versions: Vec::new(),
                routes: Vec::new(),
                limited: Vec::new(),
            });
            services.last_mut().expect("just pushed")
        }
    }
}

/// A service's rate limits in words, its own first, then its rules'.
fn rate_limits(state: &AppState, service: &str) -> Vec<String> {
    let Some(mesh) = state.fleet.mesh() else { return Vec::new() };
    let Some(s) = mesh.services.get(service) else { return Vec::new() };
    let rules = s.rules.iter().filter_map(|r| r.rate_limit.as_ref());
    s.traffic.rate_limit.iter().chain(rules).map(|l| format!("{}: {}", l.by, trellis_model::diff::rates(l))).collect()
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct RangeQuery {
    /// `15m` (the default, from memory), `1h`, `6h` or `24h` (from Prometheus).
    range: Option<String>,
}

pub async fn traffic(
    State(state): State<AppState>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<TrafficView>, ApiError> {
    let name = q.range.as_deref().unwrap_or("15m");
    let range_s = trellis_api::traffic_range(name)
        .ok_or_else(|| ApiError::invalid("invalid range", format!("`{name}`: use 15m, 1h, 6h or 24h")))?;
    Ok(Json(build_traffic_over(&state, range_s).await?))
}
