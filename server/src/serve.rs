//! Starting and stopping the control plane: store, git follower, fleet, API and dashboard on
//! one listener.

use crate::gitops::PolicySource;
use crate::state::AppState;
use crate::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub policy: PolicySource,
    pub database_url: String,
    /// Where the dashboard's browser bundle lives (`<site_root>/pkg`).
    pub site_root: PathBuf,
    /// The shared secret of the git webhook; unsigned hooks are refused when set.
    pub webhook_secret: Option<String>,
    /// Operators and viewers with their tokens; without any, nothing can be changed.
    pub users: Vec<crate::auth::User>,
    /// Where a rollout's outcome is committed.
    pub record_to: crate::gitops::outcome::RecordTo,
    /// The audit log's durable spool (events wait here while the database is away).
    pub spool_dir: PathBuf,
    /// The issuing CA: where its anchor and join secret live, and the trust domain. Without
    /// it, proxies are not given certificates.
    pub identity: Option<IdentityConfig>,
}

impl ServeConfig {
    /// A control plane on any free local port, keeping its SQLite database and spool under
    /// `data_dir`, with nothing optional switched on: no users, no webhook secret, no CA.
    pub fn local(policy: PolicySource, data_dir: &std::path::Path) -> ServeConfig {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            policy,
            database_url: Store::sqlite_url(&data_dir.join("trellis.db")),
            site_root: data_dir.join("site"),
            webhook_secret: None,
            users: Vec::new(),
            record_to: Default::default(),
            spool_dir: data_dir.join("audit-spool"),
            identity: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct IdentityConfig {
    pub dir: PathBuf,
    pub trust_domain: String,
    /// How long proxies' certificates last; they renew at two thirds.
    pub cert_lifetime: std::time::Duration,
    /// Where certified proxies reach the control plane over mTLS.
    pub fleet_listen: SocketAddr,
}

impl IdentityConfig {
    /// Day-long certificates, the fleet's mTLS port on any free local port.
    pub fn new(dir: PathBuf, trust_domain: &str) -> IdentityConfig {
        IdentityConfig {
            dir,
            trust_domain: trust_domain.into(),
            cert_lifetime: crate::identity::CERT_TTL,
            fleet_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

pub struct Running {
    pub addr: SocketAddr,
    /// The fleet's mTLS listener, when identities are on.
    pub fleet_addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops following git, ends every stream, drains requests and closes the database.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.state.audit.system("control_plane.stopped", None, "control plane stopped".into(), serde_json::json!({}));
        // Whatever the database does not take now stays spooled for the next start.
        self.state.audit.flush(Duration::from_secs(5)).await;
        self.state.store.close().await;
    }
}

/// A whole fleet reconnects at once after a restart: a short accept queue would drop their
/// SYNs and stall them for seconds of TCP retransmission.
const ACCEPT_BACKLOG: u32 = 8192;

fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// How long a restarted control plane waits for its previous fleet before pushing configs.
/// Proxies retry with backoff capped at 5 s, so all of them are back well within this.
const REJOIN_GRACE: Duration = Duration::from_secs(8);

pub async fn start(mut config: ServeConfig) -> anyhow::Result<Running> {
    if config.policy.signers.is_some() && config.record_to == crate::gitops::outcome::RecordTo::Watched {
        // Trellis does not sign: its outcome commits go to a branch that a person merges, signed.
        tracing::warn!("signed commits are required: rollout outcomes are committed to a branch, not the watched one");
        config.record_to = crate::gitops::outcome::RecordTo::Branch;
    }
    let store = Store::connect(&config.database_url).await?;
    let listener = listen(config.listen).map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (ca, fleet_listener) = match &config.identity {
        Some(id) => {
            let mut ca = crate::identity::Ca::load_or_create(&id.dir, &id.trust_domain)
                .map_err(|e| anyhow::anyhow!("the issuing CA in {}: {e}", id.dir.display()))?;
            ca.cert_ttl = id.cert_lifetime;
            let fleet = listen(id.fleet_listen)
                .map_err(|e| anyhow::anyhow!("cannot listen for the fleet on {}: {e}", id.fleet_listen))?;
            (Some(std::sync::Arc::new(ca)), Some(fleet))
        }
        None => (None, None),
    };
    let fleet_addr = fleet_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let state = AppState::new(store.clone(), shutdown_rx.clone(), &config, ca.clone(), fleet_addr.map(|a| a.port()))
        .map_err(|e| anyhow::anyhow!("cannot open the audit spool in {}: {e}", config.spool_dir.display()))?;
    // Proxies heard from in the last ten minutes are the fleet a restart must wait for.
    let known = store.recent_members(crate::now_ms() - 600_000).await.unwrap_or_default();
    state.fleet.hold_until_rejoined(known, REJOIN_GRACE);
    state.rollouts.restore(store.rollouts().await?).await;
    state.audit.system(
        "control_plane.started",
        None,
        format!("control plane started on {addr}, following {} ({})", config.policy.describe(), config.policy.branch),
        serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }),
    );

    let app = crate::api::router()
        .merge(crate::fleet::stream::router())
        .with_state(state.clone())
        .merge(crate::dashboard::router(state.clone(), &config.site_root))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20));

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(
        crate::gitops::run(state.clone(), config.policy.clone(), shutdown_rx.clone())
            .instrument(tracing::info_span!("gitops")),
    ));
    let fleet = state.fleet.clone();
    let mut sweep_stop = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(5)) => fleet.sweep(),
                _ = sweep_stop.changed() => return,
            }
        }
    }));
    let (rollouts, mut rollouts_stop) = (state.clone(), shutdown_rx.clone());
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(crate::rollouts::TICK) => {
                    rollouts.rollouts.tick(&rollouts).await;
                    rollouts.rollouts.record_outcomes(&rollouts).await;
                }
                _ = rollouts_stop.changed() => return,
            }
        }
    }));
    if let (Some(ca), Some(listener)) = (ca, fleet_listener) {
        let tls = crate::fleet::tls::server_config(ca.clone()).map_err(|e| anyhow::anyhow!("the fleet's TLS: {e}"))?;
        let fleet_app = crate::fleet::stream::router()
            .with_state(state.clone())
            .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20));
        let serving = crate::fleet::tls::serve(listener, tls, ca.trust_domain.clone(), fleet_app, shutdown_rx.clone());
        tasks.push(tokio::spawn(serving.instrument(tracing::info_span!("fleet-tls"))));
    }
    let mut serve_stop = shutdown_rx;
    tasks.push(tokio::spawn(async move {
        // Connection info gives login rate limiting the client's address.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = serve_stop.changed().await;
        });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "server failed");
        }
    }));
    tracing::info!(%addr, "control plane listening");
    Ok(Running { addr, fleet_addr, state, shutdown, tasks })
}
