//! `trellis`: the control plane of the Trellis mesh, its API, the dashboard host and the CLI.
//!
//! # Layers
//!
//! Each module imports its own layer or lower ones, never a higher one, and no modules import
//! each other in a circle (`tests/layers.rs` holds the line):
//!
//! ```text
//! commands    cli, demo                      the `trellis` command line; the demo mesh
//!   wiring    serve                          starts the services, workers and listeners
//!     http    api, dashboard, fleet_api,     /api/v1, the dashboard, /fleet/v1 for proxies,
//!             health                         the checks behind `trellis check`
//!  workers    notify                         tells webhooks and Slack what the audit log says
//!    state    state                          the revision in force; what every handler reads
//! services    audit, cluster, fleet, gitops, each owns its state; what it needs of the
//!             rollouts, config               control plane it says in a trait (gitops::Follower,
//!                                            rollouts::Env) that `state` implements
//! foundation  store, auth, identity,         the database, users and sessions, the issuing CA,
//!             inject, https, prometheus,     sidecar injection, HTTPS, Prometheus history,
//!             source, telemetry, webhook,    policy files, golden metrics, webhook signatures,
//!             secrets, sync, testing         the secrets policies name, locks, test repos
//! ```
//!
//! # Layout
//! - [`cli`]: the `trellis` command line.
//! - [`demo`]: `trellis demo`, a whole mesh on one machine.
//! - [`serve`]: starting and stopping the control plane.
//! - [`api`]: the public JSON API under `/api/v1`.
//! - [`dashboard`]: the Leptos dashboard host.
//! - [`fleet_api`]: the fleet protocol's endpoints (`/fleet/v1`), which proxies call.
//! - [`health`]: the checks behind `trellis check`.
//! - [`notify`]: Notification deliveries to webhooks and Slack, from the audit log.
//! - [`state`]: the revision in force and change notifications.
//! - [`config`]: the control plane's settings.
//! - [`gitops`]: git branch → judged revisions.
//! - [`fleet`]: proxy registry and config snapshots.
//! - [`rollouts`]: running canary rollouts against live telemetry.
//! - [`cluster`]: replicas on one database, and the leader's lease.
//! - [`audit`]: the audit trail writer and its hash chain.
//! - [`store`]: Postgres / SQLite through sqlx, with migrations.
//! - [`auth`]: operators, viewers, sessions and CSRF.
//! - [`identity`]: the issuing CA and proxies' certificates.
//! - [`inject`]: the sidecar injector's answer to a Kubernetes AdmissionReview.
//! - [`https`]: the main listener's TLS, and the client of a control plane served so.
//! - [`prometheus`]: traffic history from a Prometheus that scrapes the proxies.
//! - [`source`]: policy files from a commit or a directory.
//! - [`telemetry`]: golden metrics aggregated from proxy reports.
//! - [`webhook`]: verifying signed git webhooks.
//! - [`secrets`]: the secrets policies name, from the environment.
//! - [`sync`]: locks that outlive a panic.
//! - [`testing`]: policy repositories for tests and the demo.

#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod fleet;
pub mod fleet_api;
pub mod gitops;
pub mod health;
pub mod https;
pub mod identity;
pub mod inject;
pub mod notify;
pub mod prometheus;
pub mod rollouts;
pub mod secrets;
pub mod serve;
pub mod source;
pub mod state;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod testing;
pub mod webhook;

/// Wall-clock unix milliseconds, the time unit of the store and the API.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}
