//! `trellis demo`: a whole mesh on one machine. Seeds a policy repository from `policies/`,
//! starts the control plane with the dashboard, then each demo service and its own
//! `trellis-proxy` as separate processes, and a load generator. Ctrl-C stops all of it.

pub mod app;
pub mod load;
mod receiver;
mod replicas;

use crate::gitops::PolicySource;
use crate::serve::ServeConfig;
use crate::testing::{DEMO_POLICIES, PolicyRepo};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Where the policy repository and the embedded database are kept between runs.
    #[arg(long, env = "TRELLIS_DATA_DIR", default_value = ".trellis/demo")]
    pub data_dir: PathBuf,
    /// Address of the dashboard and API.
    #[arg(long, env = "TRELLIS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// postgres://... to use Postgres; the embedded SQLite file when unset.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Requests per second the load generator sends to the storefront.
    #[arg(long, default_value_t = 20)]
    pub rps: u32,
    /// The dashboard's built browser bundle.
    #[arg(long, env = "TRELLIS_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
    /// Control-plane replicas, each a `trellis serve` process on 127.0.0.1, .2, ... sharing
    /// one Postgres (DATABASE_URL, or a cluster the demo starts in its data directory).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=9))]
    pub replicas: u16,
}

/// The demo's control plane: in this process, or replicas of their own.
enum ControlPlane {
    One(crate::serve::Running),
    Replicas(replicas::Replicas),
}

impl ControlPlane {
    fn urls(&self) -> Vec<String> {
        match self {
            ControlPlane::One(cp) => vec![cp.url()],
            ControlPlane::Replicas(r) => r.urls.clone(),
        }
    }

    fn ca(&self) -> Option<std::sync::Arc<crate::identity::Ca>> {
        match self {
            ControlPlane::One(cp) => cp.state.ca.clone(),
            ControlPlane::Replicas(r) => Some(r.ca.clone()),
        }
    }

    async fn stop(self) {
        match self {
            ControlPlane::One(cp) => cp.shutdown().await,
            ControlPlane::Replicas(r) => r.stop().await,
        }
    }
}

/// The demo mesh: storefront calls catalog and inventory; inventory runs v1 and v2.
const SERVICES: [(&str, &str); 4] = [("storefront", "v1"), ("catalog", "v1"), ("inventory", "v1"), ("inventory", "v2")];

struct Sidecar {
    inbound: SocketAddr,
    admin: SocketAddr,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    // Listened for before anything starts: a stop asked for while the demo still starts its
    // processes stops them all once they are up, rather than killing the demo alone.
    let stopped = crate::serve::shutdown_signals();
    std::fs::create_dir_all(&args.data_dir)?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let repo = PolicyRepo::create(&data_dir.join("policy"), DEMO_POLICIES)?;
    let database_url =
        args.database_url.clone().unwrap_or_else(|| crate::store::Store::sqlite_url(&data_dir.join("trellis.db")));
    // An operator and a viewer: as configured, or made up for this run and printed below.
    let users = match std::env::var("TRELLIS_TOKENS") {
        Ok(list) => crate::auth::User::parse_list(&list).map_err(|e| anyhow::anyhow!("TRELLIS_TOKENS: {e}"))?,
        Err(_) => ["operator", "viewer"]
            .into_iter()
            .map(|role| crate::auth::User {
                name: format!("demo-{role}"),
                role: if role == "operator" { crate::auth::Role::Operator } else { crate::auth::Role::Viewer },
                token: crate::auth::random_token(),
            })
            .collect(),
    };
    let fail_flag = data_dir.join("fail-version");
    let _ = std::fs::remove_file(&fail_flag);
    let site_root = args.site_root.clone().unwrap_or_else(crate::serve::default_site_root);
    let secrets = receiver::start().await?;
    let cp = if args.replicas > 1 {
        let n = usize::from(args.replicas);
        let (db, dir) = (args.database_url.clone(), &data_dir);
        let r = replicas::start(n, args.listen, db, dir, repo.path(), &users, &site_root, &secrets);
        ControlPlane::Replicas(r.await?)
    } else {
        ControlPlane::One(
            crate::serve::start(ServeConfig {
                listen: args.listen,
                policy: PolicySource::local(repo.path(), "main"),
                database_url,
                site_root: site_root.clone(),
                webhook_secret: None,
                users: users.clone(),
                // The demo's repository is its own: outcomes go straight to the watched branch.
                record_to: crate::gitops::outcome::RecordTo::Watched,
                spool_dir: data_dir.join("audit-spool"),
                identity: Some(crate::serve::IdentityConfig::new(data_dir.join("identity"), "trellis.local")),
                replica_id: None,
                advertise_url: None,
                tls: None,
                control_plane_ca: None,
                prometheus_url: None,
                injector: Default::default(),
            })
            .await?,
        )
    };
    let ca = cp.ca().ok_or_else(|| anyhow::anyhow!("the demo's control plane has no CA"))?;
    let urls = cp.urls();

    let exe = std::env::current_exe()?;
    let proxy_exe = exe.with_file_name("trellis-proxy");
    anyhow::ensure!(proxy_exe.exists(), "{} not found: build it with `cargo build --bins`", proxy_exe.display());
    let mut children: Vec<Child> = Vec::new();
    let mut sidecars = Vec::new();
    // All at once: ports handed out earlier are not bound yet and would look free again.
    let ports = free_ports::<{ 4 * SERVICES.len() }>()?;
    for ((service, version), ports) in SERVICES.into_iter().zip(ports.chunks(4)) {
        let [app, outbound, inbound, admin] = [ports[0], ports[1], ports[2], ports[3]];
        children.push(spawn(
            Command::new(&exe).args(["demo-app", "--service", service, "--version", version]).args([
                "--listen",
                &app.to_string(),
                "--outbound",
                &outbound.to_string(),
            ]),
        )?);
        children.push(spawn(
            Command::new(&proxy_exe)
                .env("TRELLIS_SERVICE", service)
                .env("TRELLIS_VERSION", version)
                .env("TRELLIS_PROXY_ID", format!("{service}-{version}"))
                .env("TRELLIS_APP_ADDR", app.to_string())
                .env("TRELLIS_OUTBOUND_ADDR", outbound.to_string())
                .env("TRELLIS_INBOUND_ADDR", inbound.to_string())
                .env("TRELLIS_ADMIN_ADDR", admin.to_string())
                .env("TRELLIS_CONTROL_PLANE_URL", urls.join(","))
                .env("TRELLIS_JOIN_TOKEN", ca.join_token(service))
                .env("TRELLIS_LOG", "warn"),
        )?);
        sidecars.push((format!("{service}/{version}"), Sidecar { inbound, admin }));
    }
    let storefront = &sidecars[0].1;
    wait_ready(storefront.admin).await;
    let (stop_load, load_rx) = crate::sync::Shutdown::new();
    let load =
        tokio::spawn(load::run(ca, storefront.inbound, "storefront".into(), args.rps, fail_flag.clone(), load_rx));

    println!();
    println!("  Trellis demo is running.");
    println!("  Dashboard:          {}", urls[0]);
    println!("  Policy repository:  {}", repo.path().display());
    println!("  Change the mesh:    edit files there, check them with `trellis validate`, and git commit");
    println!("  Canary:  inventory v2 waits at 10 % for an operator: {}/rollouts, Promote", urls[0]);
    if let ControlPlane::Replicas(r) = &cp {
        for (url, child) in r.urls.iter().zip(&r.children) {
            println!("  Replica {url}  pid {}  (kill -9 it and watch the others carry on)", child.id().unwrap_or(0));
        }
        println!("  Which replica leads, and since when: {}/fleet", urls[0]);
    }
    for u in &users {
        println!("  Log in as {:<14} ({:?}) with token {}", u.name, u.role, u.token);
    }
    println!("  Make v2 fail (its canary aborts):  echo v2 > {}", fail_flag.display());
    for (service, s) in &sidecars {
        println!("  {service:<14} sidecar admin http://{}/metrics", s.admin);
    }
    println!("  Ctrl-C stops everything.");
    println!();

    stopped.await;
    tracing::info!("stopping the demo");
    let _ = stop_load.send(true);
    let _ = load.await;
    for child in &mut children {
        let _ = child.start_kill();
    }
    for child in &mut children {
        let _ = child.wait().await;
    }
    cp.stop().await;
    Ok(())
}

fn spawn(cmd: &mut Command) -> anyhow::Result<Child> {
    // kill_on_drop: if the demo itself dies, its children do not outlive it.
    cmd.kill_on_drop(true).stdin(Stdio::null());
    cmd.spawn().map_err(|e| anyhow::anyhow!("cannot start {:?}: {e}", cmd.as_std().get_program()))
}

/// Ports free now, from below the kernel's ephemeral range (32768 and up on Linux): there
/// the OS never hands them to outgoing connections, so only another listener could take one
/// before the child binds it.
fn free_ports<const N: usize>() -> std::io::Result<[SocketAddr; N]> {
    let mut addrs = [SocketAddr::from(([127, 0, 0, 1], 0)); N];
    let mut found = 0;
    let start = 20_000 + fastrand::u16(0..10_000);
    for port in (start..32_000).chain(20_000..start) {
        if found == N {
            break;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(addr).is_ok() {
            addrs[found] = addr;
            found += 1;
        }
    }
    if found < N {
        return Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, "no free ports between 20000 and 32000"));
    }
    Ok(addrs)
}

/// Waits until a control plane answers at `url` (a minute at most).
async fn wait_answering(url: &str) -> anyhow::Result<()> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("{url}/api/v1/fleet").parse()?;
    for _ in 0..600 {
        if client.get(uri.clone()).await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the replica at {url} did not start: see its serve.log")
}

/// Waits until the storefront's sidecar is ready and knows every proxy it calls (with
/// replicas, each learns of the proxies connected to the others within a second or two).
async fn wait_ready(admin: SocketAddr) {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let callees: Vec<String> =
        SERVICES.iter().filter(|(s, _)| *s != "storefront").map(|(s, v)| format!("\"{s}-{v}\"")).collect();
    for _ in 0..200 {
        if let Ok(uri) = format!("http://{admin}/config").parse::<http::Uri>()
            && let Ok(resp) = client.get(uri).await
            && resp.status().is_success()
            && let Ok(body) = resp.into_body().collect().await
        {
            let config = String::from_utf8_lossy(&body.to_bytes()).into_owned();
            if callees.iter().all(|id| config.contains(id.as_str())) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(%admin, "the storefront's sidecar does not know every service after 20 s; starting load anyway");
}
