//! `trellis`: the control plane of the Trellis mesh, its API, the dashboard host and the CLI.
//!
//! # Layout
//! - [`cli`]: the `trellis` command line.
//! - [`serve`]: starting and stopping the control plane.
//! - [`gitops`]: git branch → judged revisions.
//! - [`source`]: policy files from a commit or a directory.
//! - [`state`]: the revision in force and change notifications.
//! - [`fleet`]: proxy registry, config snapshots and the proxy stream protocol.
//! - [`store`]: Postgres / SQLite through sqlx, with migrations.
//! - [`audit`]: the audit trail writer.
//! - [`telemetry`]: golden metrics aggregated from proxy reports.
//! - [`rollouts`]: running canary rollouts against live telemetry.
//! - [`auth`]: operators, viewers, sessions and CSRF.
//! - [`health`]: the checks behind `trellis check`.
//! - [`identity`]: the issuing CA and proxies' certificates.
//! - [`api`]: the public JSON API under `/api/v1`.
//! - [`dashboard`]: the Leptos dashboard host.
//! - [`demo`]: `trellis demo`, a whole mesh on one machine.
//! - [`webhook`]: verifying signed git webhooks.
//! - [`testing`]: policy repositories for tests and the demo.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod dashboard;
pub mod demo;
pub mod fleet;
pub mod gitops;
pub mod health;
pub mod identity;
pub mod rollouts;
pub mod serve;
pub mod source;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod testing;
pub mod webhook;

/// Wall-clock unix milliseconds, the time unit of the store and the API.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
