//! Starting and stopping the control plane: store, git follower, fleet, API and dashboard on
//! one listener.

pub use crate::config::{IdentityConfig, ServeConfig};
use crate::state::AppState;
use crate::store::Store;
use crate::sync::Shutdown;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

mod workers;

pub struct Running {
    pub addr: SocketAddr,
    /// The fleet's mTLS listener, when identities are on.
    pub fleet_addr: Option<SocketAddr>,
    /// The sidecar injector's TLS listener, when configured.
    pub admission_addr: Option<SocketAddr>,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Held while this control plane runs: no second one may share its data directory.
    _lock: std::fs::File,
}

impl Running {
    pub fn url(&self) -> String {
        format!("{}://{}", if self.state.https { "https" } else { "http" }, self.addr)
    }

    /// Stops following git, ends every stream, drains requests and closes the database.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.state.audit.system("control_plane.stopped", None, "control plane stopped".into(), serde_json::json!({}));
        // The other replicas keep counting what this one's proxies last reported.
        if self.state.store.is_shared() {
            let _ = workers::hand_on_telemetry(&self.state, u64::MAX).await;
        }
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
    let lock = lock_data_dir(&config.spool_dir)?;
    // A certificate that does not load stops the start: never fall back to plaintext.
    let tls = config.tls.as_ref().map(crate::https::server_config).transpose().map_err(anyhow::Error::msg)?;
    let store = Store::connect(&config.database_url).await?;
    let listener = listen(config.listen).map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let (shutdown, shutdown_rx) = Shutdown::new();
    let (ca, fleet_listener) = match &config.identity {
        Some(id) => {
            // Replicas share one anchor (through the database); a lone one keeps its own.
            let ca = if store.is_shared() {
                crate::identity::load_shared(&store, &id.dir, &id.trust_domain).await.map_err(anyhow::Error::msg)
            } else {
                crate::identity::Ca::load_or_create(&id.dir, &id.trust_domain).map_err(anyhow::Error::from)
            };
            let mut ca = ca.map_err(|e| anyhow::anyhow!("the issuing CA in {}: {e}", id.dir.display()))?;
            ca.cert_ttl = id.cert_lifetime;
            let fleet = listen(id.fleet_listen)
                .map_err(|e| anyhow::anyhow!("cannot listen for the fleet on {}: {e}", id.fleet_listen))?;
            (Some(std::sync::Arc::new(ca)), Some(fleet))
        }
        None => (None, None),
    };
    let admission = match (&ca, config.identity.as_ref().and_then(|id| id.admission.clone())) {
        (Some(ca), Some((at, names))) => {
            let tls = crate::fleet::tls::named_server_config(ca.clone(), names)
                .map_err(|e| anyhow::anyhow!("the admission listener's TLS: {e}"))?;
            let listener =
                listen(at).map_err(|e| anyhow::anyhow!("cannot listen for admission reviews on {at}: {e}"))?;
            Some((listener, tls))
        }
        _ => None,
    };
    let admission_addr = admission.as_ref().map(|(l, _)| l.local_addr()).transpose()?;
    let fleet_addr = fleet_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let replica = (replica_id(&config)?, advertise_url(&config, addr));
    let peers = crate::https::client(config.control_plane_ca.as_deref()).map_err(anyhow::Error::msg)?;
    let fleet_port = fleet_addr.map(|a| a.port());
    let state = AppState::new(store.clone(), shutdown_rx.clone(), &config, replica, ca.clone(), fleet_port, peers)
        .map_err(|e| anyhow::anyhow!("cannot open the audit spool in {}: {e}", config.spool_dir.display()))?;
    // Proxies heard from in the last ten minutes are the fleet a restart must wait for.
    let known = store.recent_members(state.cluster.id(), 600_000).await.unwrap_or_default();
    state.fleet.hold_until_rejoined(known, REJOIN_GRACE);
    state.rollouts.restore(store.rollouts().await?).await;
    // Lead at once when no other replica does: a lone control plane's rollouts and outcome
    // commits do not wait for the first turn of the lease loop.
    state.cluster.claim_now().await;
    state.fleet.set_leads(state.cluster.leads());
    // The other replicas' proxies before the first of its own: a proxy that fails over to
    // this replica is never sent endpoints of only the proxies connected here.
    state.fleet.exchange(state.cluster.leads(), false).await?;
    state.audit.system(
        "control_plane.started",
        None,
        format!("control plane started on {addr}, following {} ({})", config.policy.describe(), config.policy.branch),
        serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }),
    );

    let mut app = crate::api::router()
        .merge(crate::fleet_api::router())
        .with_state(state.clone())
        .merge(crate::dashboard::router(state.clone(), &config.site_root));
    if tls.is_some() {
        app = app.layer(axum::middleware::from_fn(crate::api::strict_transport));
    }
    let app = app
        .layer(axum::middleware::from_fn(crate::api::security_headers))
        .layer(axum::middleware::from_fn(crate::api::log_errors))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20));

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(
        crate::gitops::run(state.clone(), config.policy.clone(), shutdown_rx.clone())
            .instrument(tracing::info_span!("gitops")),
    ));
    let fleet = state.fleet.clone();
    tasks.push(tokio::spawn(every(Duration::from_secs(5), shutdown_rx.clone(), move || {
        fleet.sweep();
        std::future::ready(())
    })));
    let told = state.clone();
    tasks.push(tokio::spawn(every(Duration::from_secs(1), shutdown_rx.clone(), move || {
        told.tell_telemetry();
        std::future::ready(())
    })));
    if store.is_shared() {
        state.telemetry.share();
    }
    tasks.push(tokio::spawn(workers::exchange(state.clone(), shutdown_rx.clone())));
    tasks.push(tokio::spawn(state.cluster.clone().run(shutdown_rx.clone()).instrument(tracing::info_span!("cluster"))));
    let follow_now = std::sync::Arc::new(tokio::sync::Notify::new());
    let heard = {
        let (state, follow_now) = (state.clone(), follow_now.clone());
        move |topic: &str| {
            use crate::store::topic;
            if topic == topic::ROLLOUTS || topic == topic::ALL {
                follow_now.notify_one();
            }
            if topic == topic::GIT || topic == topic::ALL {
                state.git_hook.notify_one();
            }
            state.changed();
        }
    };
    tasks.push(tokio::spawn(crate::cluster::listen(store.clone(), heard, shutdown_rx.clone())));
    tasks.push(tokio::spawn(workers::run_rollouts(state.clone(), follow_now, shutdown_rx.clone())));
    tasks.push(tokio::spawn(
        crate::notify::run(state.clone(), shutdown_rx.clone()).instrument(tracing::info_span!("notify")),
    ));
    if let Some((listener, tls)) = admission {
        let app = crate::api::admission_router()
            .with_state(state.clone())
            .layer(axum::middleware::from_fn(crate::api::log_errors))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20));
        let serving = crate::https::serve(listener, tls, shutdown_rx.clone(), move |_: &_, _| {
            Some((app.clone(), http::Extensions::new()))
        });
        tasks.push(tokio::spawn(serving.instrument(tracing::info_span!("admission"))));
    }
    if let (Some(ca), Some(listener)) = (ca, fleet_listener) {
        let tls = crate::fleet::tls::server_config(ca.clone()).map_err(|e| anyhow::anyhow!("the fleet's TLS: {e}"))?;
        let fleet_app = crate::fleet_api::router()
            .with_state(state.clone())
            .layer(axum::middleware::from_fn(crate::api::log_errors))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20));
        let domain = ca.trust_domain.clone();
        let admit = move |tls: &_, peer| crate::fleet::tls::admit(tls, peer, &domain, &fleet_app);
        let serving = crate::https::serve(listener, tls, shutdown_rx.clone(), admit);
        tasks.push(tokio::spawn(serving.instrument(tracing::info_span!("fleet-tls"))));
    }
    match tls {
        Some(tls) => tasks.push(tokio::spawn(crate::https::serve(listener, tls, shutdown_rx, move |_: &_, _| {
            Some((app.clone(), http::Extensions::new()))
        }))),
        None => {
            let mut serve_stop = shutdown_rx;
            tasks.push(tokio::spawn(async move {
                // Connection info gives login rate limiting the client's address.
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                    serve_stop.recv().await;
                });
                if let Err(e) = server.await {
                    tracing::error!(error = %e, "server failed");
                }
            }));
        }
    }
    tracing::info!(%addr, https = state.https, "control plane listening");
    Ok(Running { addr, fleet_addr, admission_addr, state, shutdown, tasks, _lock: lock })
}

/// Locks the data directory (its audit spool, and with SQLite the database beside it) for
/// this process: a second control plane on the same directory would interleave the spool and
/// corrupt state. Replicas share one Postgres, each with a directory of its own.
fn lock_data_dir(spool_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(spool_dir)
        .map_err(|e| anyhow::anyhow!("cannot create the audit spool in {}: {e}", spool_dir.display()))?;
    let path = spool_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(anyhow::anyhow!(
            "another trellis serve is running on the data directory of {} (it holds {}): give each control \
             plane its own --data-dir; replicas share one Postgres (DATABASE_URL), never a data directory",
            spool_dir.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(anyhow::anyhow!("cannot lock {}: {e}", path.display())),
    }
}

/// This replica's id: configured, or made up once and kept in the data directory, so that a
/// restart is the same replica (and renews its own lease at once).
fn replica_id(config: &ServeConfig) -> anyhow::Result<String> {
    if let Some(id) = &config.replica_id {
        return Ok(id.clone());
    }
    let path = config.spool_dir.join("replica-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let host: String = hostname().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let id = format!("{}-{}", if host.is_empty() { "trellis" } else { &host }, &crate::auth::random_token()[..6]);
    std::fs::write(&path, &id).map_err(|e| anyhow::anyhow!("cannot keep the replica id in {}: {e}", path.display()))?;
    Ok(id)
}

/// Where the others reach this replica: configured, or its listen address (with the host's
/// name in place of an address that means every address).
fn advertise_url(config: &ServeConfig, addr: SocketAddr) -> String {
    if let Some(url) = &config.advertise_url {
        return url.trim_end_matches('/').to_string();
    }
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    if addr.ip().is_unspecified() {
        return format!("{scheme}://{}:{}", hostname(), addr.port());
    }
    format!("{scheme}://{addr}")
}

/// This host's name, as the kernel has it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

/// Runs `tick` every `period` until shutdown (a tick in progress finishes first).
async fn every<F, Fut>(period: Duration, mut shutdown: Shutdown, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => tick().await,
            () = shutdown.recv() => return,
        }
    }
}

/// `target/site`: the build script puts the bundle beside the binaries' profile directories.
pub fn default_site_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(|p| p.parent()).map(|t| t.join("site")))
        .unwrap_or_else(|| PathBuf::from("target/site"))
}

/// SIGINT or SIGTERM: the one shutdown signal every server drains on.
pub async fn shutdown_signal() {
    shutdown_signals().await
}

/// SIGINT or SIGTERM, listened for from this call on: one that comes before the future is
/// awaited (while the demo still starts its processes) is kept for it, instead of the default
/// action killing this process and leaving its children running.
pub fn shutdown_signals() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (term, int) = (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok());
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => drop(s.recv().await),
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = wait(term) => {}
            () = wait(int) => {}
        }
    }
}
