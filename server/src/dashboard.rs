//! Hosts the Leptos dashboard: server-side rendering of every page, the server functions
//! behind them, and the browser bundle under `/pkg`.

use crate::state::AppState;
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use std::path::Path;
use std::sync::Arc;
use trellis_api::{
    AuditFilter, AuditPage, Comparison, FleetView, Overview, PolicyView, Reverted, RolloutRun, RolloutView,
    RolloutsView, SessionView, TopologyView, TrafficView,
};
use trellis_web::ssr::{Backend, BoxFuture, DataSource};
use trellis_web::{App, shell};

/// The name the wasm bundle is built under (see `scripts/build-web.sh`).
pub const OUTPUT_NAME: &str = "trellis_web";

impl DataSource for AppState {
    fn overview(&self) -> BoxFuture<'_, Result<Overview, String>> {
        Box::pin(async move { crate::api::build_overview(self).await.map_err(|e| e.to_string()) })
    }

    fn topology(&self, window_s: u64) -> TopologyView {
        crate::api::build_topology(self, window_s)
    }

    fn fleet(&self) -> FleetView {
        crate::api::build_fleet(self)
    }

    fn traffic(&self, range_s: u64) -> BoxFuture<'_, Result<TrafficView, String>> {
        Box::pin(async move { crate::api::build_traffic_over(self, range_s).await.map_err(|e| e.to_string()) })
    }

    fn policy(&self) -> BoxFuture<'_, Result<PolicyView, String>> {
        Box::pin(async move { crate::api::build_policy(self).await.map_err(|e| e.to_string()) })
    }

    fn rollouts(&self) -> BoxFuture<'_, RolloutsView> {
        Box::pin(async move { crate::notify::with_deliveries(self, self.rollouts.views().await).await })
    }

    fn audit(&self, filter: AuditFilter, cursor: Option<String>) -> BoxFuture<'_, Result<AuditPage, String>> {
        Box::pin(async move {
            crate::api::audit::page(self, &filter, cursor, Some(50)).await.map_err(|e| e.status_and_message().1)
        })
    }

    fn session<'a>(&'a self, headers: &'a http::HeaderMap) -> BoxFuture<'a, SessionView> {
        Box::pin(crate::api::rollouts::session_of(self, headers))
    }

    fn login<'a>(
        &'a self,
        token: &'a str,
        client: std::net::IpAddr,
    ) -> BoxFuture<'a, Result<(SessionView, String), (u16, String)>> {
        Box::pin(async move {
            crate::api::rollouts::start_session(self, token, client).await.map_err(|e| {
                let (status, message) = e.status_and_message();
                (status.as_u16(), message)
            })
        })
    }

    fn logout<'a>(&'a self, headers: &'a http::HeaderMap) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(id) = crate::auth::cookie(headers, crate::auth::SESSION_COOKIE) {
                self.auth.logout(id).await;
            }
        })
    }

    fn act<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        name: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<RolloutView, (u16, String)>> {
        Box::pin(async move {
            crate::api::rollouts::perform(self, headers, name, action).await.map_err(|e| {
                let (status, message) = e.status_and_message();
                (status.as_u16(), message)
            })
        })
    }

    fn finished_rollouts(&self) -> BoxFuture<'_, Result<Vec<RolloutRun>, String>> {
        Box::pin(async move { crate::api::rollouts::finished(self).await.map_err(|e| e.to_string()) })
    }

    fn compare<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<Comparison, String>> {
        Box::pin(async move { crate::api::revisions::compare(self, from, to).await.map_err(|e| e.to_string()) })
    }

    fn revert<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        rev: &'a str,
    ) -> BoxFuture<'a, Result<Reverted, (u16, String)>> {
        Box::pin(async move {
            crate::api::revisions::revert(self, headers, rev).await.map_err(|e| {
                let (status, message) = e.status_and_message();
                (status.as_u16(), message)
            })
        })
    }
}

pub fn router(state: AppState, site_root: &Path) -> axum::Router {
    if !site_root.join("pkg").join(format!("{OUTPUT_NAME}_bg.wasm")).exists() {
        tracing::warn!(
            site_root = %site_root.display(),
            "browser bundle not found: pages render but will not update live; run scripts/build-web.sh"
        );
    }
    // Resources resolve on the server through Leptos's executor: back it with our tokio runtime.
    let _ = any_spawner::Executor::init_tokio();
    let options = LeptosOptions::builder()
        .output_name(OUTPUT_NAME)
        .site_root(site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .build();
    let backend = Backend(Arc::new(state));
    let routes = generate_route_list(App);
    axum::Router::new()
        .leptos_routes_with_context(&options, routes, move || provide_context(backend.clone()), {
            let options = options.clone();
            move || shell(options.clone())
        })
        .nest_service("/pkg", tower_http::services::ServeDir::new(site_root.join("pkg")))
        .with_state(options)
}
