//! The hook through which the control plane feeds the dashboard, so this crate does not depend
//! on the server (which depends on it).

use crate::api::{
    AuditFilter, AuditPage, Comparison, FleetView, Overview, PolicyView, Reverted, RolloutRun, RolloutView,
    RolloutsView, SessionView, TopologyView, TrafficView,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait DataSource: Send + Sync + 'static {
    fn overview(&self) -> BoxFuture<'_, Result<Overview, String>>;
    fn policy(&self) -> BoxFuture<'_, Result<PolicyView, String>>;
    fn topology(&self, window_s: u64) -> TopologyView;
    fn fleet(&self) -> FleetView;
    /// The last `range_s` seconds (900 from memory; longer from Prometheus, or why not).
    fn traffic(&self, range_s: u64) -> BoxFuture<'_, Result<TrafficView, String>>;
    fn rollouts(&self) -> BoxFuture<'_, RolloutsView>;
    /// A page of the audit log; `cursor` is the previous page's `next`.
    fn audit(&self, filter: AuditFilter, cursor: Option<String>) -> BoxFuture<'_, Result<AuditPage, String>>;
    /// Who sent these request headers (their session cookie).
    fn session<'a>(&'a self, headers: &'a http::HeaderMap) -> BoxFuture<'a, SessionView>;
    /// A login with a token: the session and the `Set-Cookie` value, or why not.
    fn login<'a>(
        &'a self,
        token: &'a str,
        client: std::net::IpAddr,
    ) -> BoxFuture<'a, Result<(SessionView, String), (u16, String)>>;
    fn logout<'a>(&'a self, headers: &'a http::HeaderMap) -> BoxFuture<'a, ()>;
    /// An operator's action on a rollout; refusals carry their HTTP status.
    fn act<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        name: &'a str,
        action: &'a str,
    ) -> BoxFuture<'a, Result<RolloutView, (u16, String)>>;
    /// Rollouts that ended, newest first.
    fn finished_rollouts(&self) -> BoxFuture<'_, Result<Vec<RolloutRun>, String>>;
    /// Two revisions compared (SHAs or prefixes).
    fn compare<'a>(&'a self, from: &'a str, to: &'a str) -> BoxFuture<'a, Result<Comparison, String>>;
    /// An operator's revert to an earlier revision; refusals carry their HTTP status.
    fn revert<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        rev: &'a str,
    ) -> BoxFuture<'a, Result<Reverted, (u16, String)>>;
}

/// Provided as Leptos context for rendering and for server functions.
#[derive(Clone)]
pub struct Backend(pub Arc<dyn DataSource>);
