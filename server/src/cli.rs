//! The `trellis` command line.

use crate::gitops::PolicySource;
use crate::serve::ServeConfig;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(name = "trellis", version, about = "Trellis: a GitOps service mesh")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane: follow a policy repository and configure the proxies.
    Serve(ServeArgs),
    /// Check a directory of policy files as the control plane would; exit 1 when invalid.
    Validate {
        /// The policy directory (a checkout of the policy repository).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Run a whole demo mesh on this machine: control plane, dashboard, services, sidecars, load.
    Demo(crate::demo::DemoArgs),
    /// One demo service (started by `trellis demo`).
    #[command(hide = true)]
    DemoApp(crate::demo::app::AppArgs),
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address of the API, the dashboard and the proxy streams.
    #[arg(long, env = "TRELLIS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The policy git repository (a local path).
    #[arg(long, env = "TRELLIS_REPO")]
    pub repo: PathBuf,
    /// The branch whose head is the mesh's desired state.
    #[arg(long, env = "TRELLIS_BRANCH", default_value = "main")]
    pub branch: String,
    /// postgres://... for production; an embedded SQLite file when unset.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the embedded database and other state live.
    #[arg(long, env = "TRELLIS_DATA_DIR", default_value = ".trellis")]
    pub data_dir: PathBuf,
    /// The dashboard's built browser bundle (defaults to `site` beside the target directory).
    #[arg(long, env = "TRELLIS_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    init_tracing();
    match cli.command {
        Command::Serve(args) => {
            std::fs::create_dir_all(&args.data_dir)?;
            let database_url =
                args.database_url.unwrap_or_else(|| crate::store::Store::sqlite_url(&args.data_dir.join("trellis.db")));
            let running = crate::serve::start(ServeConfig {
                listen: args.listen,
                policy: PolicySource { repo: args.repo, branch: args.branch, poll_interval: Duration::from_secs(1) },
                database_url,
                site_root: args.site_root.unwrap_or_else(default_site_root),
            })
            .await?;
            shutdown_signal().await;
            running.shutdown().await;
            Ok(0)
        }
        Command::Validate { dir } => validate(&dir),
        Command::Demo(args) => crate::demo::run(args).await.map(|()| 0),
        Command::DemoApp(args) => crate::demo::app::run(args).await.map(|()| 0),
    }
}

fn validate(dir: &std::path::Path) -> anyhow::Result<i32> {
    let files = read_policy_dir(dir)?;
    match trellis_model::load(&files, "working-tree") {
        Ok(mesh) => {
            println!("valid: {} file(s), {} service(s)", files.len(), mesh.services.len());
            Ok(0)
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            println!("invalid: {} error(s)", errors.len());
            Ok(1)
        }
    }
}

/// Every `*.yaml`/`*.yml` under `dir`, skipping dot-directories, as the control plane reads a
/// commit's tree.
fn read_policy_dir(dir: &std::path::Path) -> anyhow::Result<Vec<trellis_model::SourceFile>> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", d.display()))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                let rel = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
                files.push(trellis_model::SourceFile { path: rel, text: std::fs::read_to_string(&path)? });
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// `target/site`: the build script puts the bundle beside the binaries' profile directories.
pub fn default_site_root() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(|p| p.parent()).map(|t| t.join("site")))
        .unwrap_or_else(|| PathBuf::from("target/site"))
}

fn init_tracing() {
    let filter = EnvFilter::try_from_env("TRELLIS_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,leptos=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
