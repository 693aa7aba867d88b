//! The hook through which the control plane feeds the dashboard, so this crate does not depend
//! on the server (which depends on it).

use crate::api::{FleetView, Overview, PolicyView, TopologyView, TrafficView};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait DataSource: Send + Sync + 'static {
    fn overview(&self) -> BoxFuture<'_, Result<Overview, String>>;
    fn policy(&self) -> BoxFuture<'_, Result<PolicyView, String>>;
    fn topology(&self, window_s: u64) -> TopologyView;
    fn fleet(&self) -> FleetView;
    fn traffic(&self) -> TrafficView;
}

/// Provided as Leptos context for rendering and for server functions.
#[derive(Clone)]
pub struct Backend(pub Arc<dyn DataSource>);
