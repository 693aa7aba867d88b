//! `trellis demo --replicas N`: the control plane as N `trellis serve` processes on one
//! Postgres (`DATABASE_URL`, or a cluster of the demo's own, started and stopped with it), so
//! that anyone can kill one (the leader too) and watch the others carry on. Each replica
//! listens on a loopback address of its own (127.0.0.1, .2, .3 ...) with the same ports, as
//! replicas on separate hosts would.

use super::spawn;
use crate::identity::Ca;
use crate::testing::PgCluster;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use tokio::process::{Child, Command};

pub struct Replicas {
    pub urls: Vec<String>,
    pub children: Vec<Child>,
    pub ca: Arc<Ca>,
    postgres: Option<PgCluster>,
}

impl Replicas {
    pub async fn stop(mut self) {
        for child in &mut self.children {
            if let Some(pid) = child.id() {
                // SIGTERM: each replica gives up its lease and flushes its audit spool.
                let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            }
        }
        for child in &mut self.children {
            let _ = child.wait().await;
        }
        if let Some(pg) = self.postgres.take() {
            pg.stop();
        }
    }
}

/// Starts `n` replicas following `repo`, with `users` and the notifications' `secrets`, the
/// first on `listen`.
#[allow(clippy::too_many_arguments)] // the demo's settings, each passed on to every replica
pub async fn start(
    n: usize,
    listen: SocketAddr,
    database_url: Option<String>,
    data_dir: &Path,
    repo: &Path,
    users: &[crate::auth::User],
    site_root: &Path,
    secrets: &[(String, String)],
) -> anyhow::Result<Replicas> {
    let SocketAddr::V4(first) = listen else { anyhow::bail!("--replicas needs a 127.0.0.1 listen address") };
    anyhow::ensure!(
        first.ip().is_loopback()
            && u32::from(*first.ip()) as usize + n < u32::from(Ipv4Addr::new(127, 255, 255, 255)) as usize,
        "--replicas puts replicas on 127.0.0.1, .2, ...: listen on a loopback address"
    );
    let (database_url, postgres) = match database_url {
        Some(url) if url.starts_with("sqlite:") => {
            anyhow::bail!(
                "replicas share one Postgres: set DATABASE_URL=postgres://..., or leave it unset for a cluster of the demo's own"
            )
        }
        Some(url) => (url, None),
        None => {
            let pg = PgCluster::start(&data_dir.join("postgres"), std::net::Ipv4Addr::LOCALHOST.into())?;
            (pg.url(), Some(pg))
        }
    };
    // The demo's own CA (for its load generator) takes the anchor the replicas will share.
    let store = crate::store::Store::connect(&database_url).await?;
    let ca = crate::identity::load_shared(&store, &data_dir.join("identity"), "trellis.local")
        .await
        .map_err(anyhow::Error::msg)?;
    store.close().await;
    let exe = std::env::current_exe()?;
    let tokens = users
        .iter()
        .map(|u| {
            format!(
                "{}:{}:{}",
                u.name,
                if u.role == crate::auth::Role::Operator { "operator" } else { "viewer" },
                u.token
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let fleet_port = super::free_ports::<1>()?[0].port();
    let (mut urls, mut children) = (Vec::new(), Vec::new());
    for i in 0..n {
        let host = Ipv4Addr::from(u32::from(*first.ip()) + i as u32);
        let dir = data_dir.join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir)?;
        let log = std::fs::File::create(dir.join("serve.log"))?;
        children.push(spawn(
            Command::new(&exe)
                .args(["serve", "--repo"])
                .arg(repo)
                .arg("--data-dir")
                .arg(&dir)
                .args(["--listen", &SocketAddr::from((host, first.port())).to_string()])
                .args(["--fleet-listen", &SocketAddr::from((host, fleet_port)).to_string()])
                .args(["--record-outcome", "watched", "--site-root"])
                .arg(site_root)
                .env("DATABASE_URL", &database_url)
                .env("TRELLIS_TOKENS", &tokens)
                .env("TRELLIS_REPLICA_ID", format!("replica-{i}"))
                .envs(secrets.iter().map(|(k, v)| (k, v)))
                .stdout(log.try_clone()?)
                .stderr(log),
        )?);
        urls.push(format!("http://{host}:{}", first.port()));
    }
    for url in &urls {
        super::wait_answering(url).await?;
    }
    Ok(Replicas { urls, children, ca: Arc::new(ca), postgres })
}
