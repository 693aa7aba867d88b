//! The `trellis` command line.

pub mod audit;
pub mod check;
pub mod client;
pub mod install;
pub mod policy;
pub mod revert;
pub mod rollout;

use crate::gitops::PolicySource;
use crate::serve::ServeConfig;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    Serve(Box<ServeArgs>),
    /// Check policy files as the control plane would: exit 0 valid, 1 invalid, 2 could not run.
    Validate(policy::ValidateArgs),
    /// What a change does to traffic, in plain words: `trellis diff main HEAD`, or two directories.
    Diff(policy::DiffArgs),
    /// Print the JSON Schema of policy documents, for editors.
    Schema,
    /// Print the REST API's OpenAPI 3.1 document (also served at /api/v1/openapi.json).
    Openapi,
    /// Exit 0 when the control plane at --listen is ready: a container's health check.
    Probe {
        /// Where the control plane listens (a wildcard address is asked on loopback).
        #[arg(long, env = "TRELLIS_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Watch and steer canary rollouts: `trellis rollout promote inventory-v2`.
    Rollout(rollout::RolloutArgs),
    /// Go back to an earlier revision's policy with a commit: `trellis revert 1a2b3c4d`.
    Revert(revert::RevertArgs),
    /// Read the audit log from the database: list, show, export, verify the hash chain.
    Audit(audit::AuditArgs),
    /// Is the mesh healthy? Control plane, policy, git, fleet, storage, rollouts.
    Check(check::CheckArgs),
    /// The join token a proxy of SERVICE presents once for its certificate (TRELLIS_JOIN_TOKEN).
    JoinToken(JoinTokenArgs),
    /// Issue SERVICE a certificate as files (cert.pem, key.pem, anchor.pem) in --out, for a
    /// proxy run with TRELLIS_IDENTITY_DIR instead of a join token.
    IssueCert {
        #[command(flatten)]
        ca: JoinTokenArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Files to install Trellis with: `trellis install systemd --out /etc/systemd/system`.
    Install(install::InstallArgs),
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
    /// The policy git repository: a local path, or a URL (https://, ssh://, file://) that is
    /// mirrored and fetched every 30 s and on `POST /api/v1/hooks/git`.
    #[arg(long, env = "TRELLIS_REPO")]
    pub repo: String,
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
    /// Secret shared with the git host's webhook; hooks without a valid
    /// `X-Hub-Signature-256` are refused when set.
    #[arg(long, env = "TRELLIS_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Who may change rollouts: comma-separated `name:role:token` (role operator or viewer).
    /// Everyone can read; without an operator nobody can promote or abort.
    #[arg(long, env = "TRELLIS_TOKENS", hide_env_values = true)]
    pub tokens: Option<String>,
    /// Where Trellis's own commits go (a finished rollout's outcome, an operator's revert):
    /// `branch` (trellis/<rollout>-<outcome>, trellis/revert-<sha>, for a pull request) or
    /// `watched` (straight to the watched branch). Signed commits required means `branch`.
    #[arg(long, env = "TRELLIS_RECORD_OUTCOME", default_value = "branch")]
    pub record_outcome: crate::gitops::outcome::RecordTo,
    /// Apply only commits signed (SSH, `git commit -S`) by a key in --allowed-signers.
    #[arg(long, env = "TRELLIS_REQUIRE_SIGNED_COMMITS")]
    pub require_signed_commits: bool,
    /// Allowed signing keys: git's allowed_signers format or authorized_keys lines.
    #[arg(long, env = "TRELLIS_ALLOWED_SIGNERS")]
    pub allowed_signers: Option<PathBuf>,
    /// The trust domain in proxies' identities (spiffe://<domain>/svc/<service>). An
    /// operator's own trust anchor goes in <data-dir>/identity/anchor.pem and anchor.key.
    #[arg(long, env = "TRELLIS_TRUST_DOMAIN", default_value = "trellis.local")]
    pub trust_domain: String,
    /// How long proxies' certificates last (they renew at two thirds), e.g. 24h or 90m.
    #[arg(long, env = "TRELLIS_CERT_LIFETIME", default_value = "24h", value_parser = lifetime)]
    pub cert_lifetime: std::time::Duration,
    /// Where certified proxies reach the control plane over mTLS (proxies learn the port with
    /// their certificate and dial the host of TRELLIS_CONTROL_PLANE_URL).
    #[arg(long, env = "TRELLIS_FLEET_LISTEN", default_value = "127.0.0.1:8443")]
    pub fleet_listen: std::net::SocketAddr,
    /// This replica's name among the control plane's replicas (default: made up once and kept
    /// in the data directory).
    #[arg(long, env = "TRELLIS_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Where the other replicas reach this one, e.g. http://10.0.0.5:8080 (default: the listen
    /// address, or the host's name when listening on every address).
    #[arg(long, env = "TRELLIS_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Serve the dashboard, the API and proxies' joins over HTTPS with this PEM certificate
    /// chain (with --tls-key); it is read again when the file changes.
    #[arg(long, env = "TRELLIS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "TRELLIS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A PEM file of the CA that signed the replicas' certificates, when it is not one the
    /// system trusts (replicas pass operators' actions on to the leader over HTTPS).
    #[arg(long, env = crate::https::CA_ENV)]
    pub control_plane_ca: Option<PathBuf>,
    /// A Prometheus that scrapes the proxies (http://prometheus:9090): the Traffic page and
    /// `/api/v1/traffic?range=` then reach back 1, 6 or 24 hours.
    #[arg(long, env = "TRELLIS_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Serve the sidecar injector (Kubernetes admission webhook) over TLS here, with a
    /// certificate from the mesh's CA for --admission-dns.
    #[arg(long, env = "TRELLIS_ADMISSION_LISTEN")]
    pub admission_listen: Option<SocketAddr>,
    /// The names the injector's certificate carries: its Service's DNS names, comma-separated.
    #[arg(long, env = "TRELLIS_ADMISSION_DNS", value_delimiter = ',', default_value = "trellis-injector.trellis.svc")]
    pub admission_dns: Vec<String>,
    /// The proxy image the sidecar injector adds to pods.
    #[arg(long, env = "TRELLIS_INJECT_IMAGE", default_value_t = crate::inject::Injector::default().image)]
    pub inject_image: String,
    /// How injected proxies reach the control plane (its Service's URL).
    #[arg(long, env = "TRELLIS_INJECT_CONTROL_PLANE_URL", default_value_t = crate::inject::Injector::default().control_plane)]
    pub inject_control_plane_url: String,
    /// The Secret holding each service's join token under the service's name, for injected proxies.
    #[arg(long, env = "TRELLIS_INJECT_JOIN_TOKENS", default_value_t = crate::inject::Injector::default().join_tokens)]
    pub inject_join_tokens: String,
}

fn lifetime(text: &str) -> Result<std::time::Duration, String> {
    let ms = trellis_model::duration::parse_ms(text)?;
    if ms < 60_000 {
        return Err("a certificate must last at least a minute (1m)".into());
    }
    Ok(std::time::Duration::from_millis(ms))
}

/// The allowed signers, when signatures are required; refuses a half-made configuration.
fn signers(
    required: bool,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<std::sync::Arc<crate::gitops::signing::Signers>>> {
    match (required, file) {
        (false, None) => Ok(None),
        (false, Some(_)) => {
            anyhow::bail!("--allowed-signers is set but --require-signed-commits is not: say which you mean")
        }
        (true, None) => {
            anyhow::bail!("--require-signed-commits needs --allowed-signers FILE (TRELLIS_ALLOWED_SIGNERS)")
        }
        (true, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let signers = crate::gitops::signing::Signers::parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok(Some(std::sync::Arc::new(signers)))
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct JoinTokenArgs {
    pub service: String,
    /// The control plane's data directory (its CA lives in <data-dir>/identity).
    #[arg(long, env = "TRELLIS_DATA_DIR", default_value = ".trellis")]
    pub data_dir: PathBuf,
    #[arg(long, env = "TRELLIS_TRUST_DOMAIN", default_value = "trellis.local")]
    pub trust_domain: String,
    /// With replicas on Postgres: the anchor and join secret they share come from there.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

impl JoinTokenArgs {
    /// The CA the control plane issues with: the replicas' shared one on Postgres, else the
    /// data directory's own.
    async fn authority(&self) -> anyhow::Result<crate::identity::Ca> {
        let dir = self.data_dir.join("identity");
        match &self.database_url {
            Some(url) if !url.starts_with("sqlite:") => {
                let store = crate::store::Store::connect(url).await?;
                let ca = crate::identity::load_shared(&store, &dir, &self.trust_domain).await;
                store.close().await;
                ca.map_err(anyhow::Error::msg)
            }
            _ => Ok(crate::identity::Ca::load_or_create(&dir, &self.trust_domain)?),
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    init_tracing()?;
    match cli.command {
        Command::Serve(args) => {
            std::fs::create_dir_all(&args.data_dir).map_err(|e| {
                anyhow::anyhow!("cannot use {} as the data directory (--data-dir): {e}", args.data_dir.display())
            })?;
            let database_url =
                args.database_url.unwrap_or_else(|| crate::store::Store::sqlite_url(&args.data_dir.join("trellis.db")));
            let mut policy = PolicySource::new(&args.repo, &args.branch, &args.data_dir.join("repos"));
            policy.signers = signers(args.require_signed_commits, args.allowed_signers.as_deref())?;
            let running = crate::serve::start(ServeConfig {
                listen: args.listen,
                policy,
                database_url,
                site_root: args.site_root.unwrap_or_else(crate::serve::default_site_root),
                webhook_secret: args.webhook_secret,
                users: crate::auth::User::parse_list(args.tokens.as_deref().unwrap_or_default())
                    .map_err(|e| anyhow::anyhow!("TRELLIS_TOKENS: {e}"))?,
                record_to: args.record_outcome,
                spool_dir: args.data_dir.join("audit-spool"),
                identity: Some(crate::serve::IdentityConfig {
                    cert_lifetime: args.cert_lifetime,
                    fleet_listen: args.fleet_listen,
                    admission: args.admission_listen.map(|at| (at, args.admission_dns.clone())),
                    ..crate::serve::IdentityConfig::new(args.data_dir.join("identity"), &args.trust_domain)
                }),
                replica_id: args.replica_id,
                advertise_url: args.advertise_url,
                tls: args.tls_cert.zip(args.tls_key).map(|(cert, key)| crate::https::TlsFiles { cert, key }),
                control_plane_ca: args.control_plane_ca,
                prometheus_url: args.prometheus_url,
                injector: crate::inject::Injector {
                    image: args.inject_image,
                    control_plane: args.inject_control_plane_url,
                    join_tokens: args.inject_join_tokens,
                },
            })
            .await?;
            notify_systemd("READY=1");
            crate::serve::shutdown_signal().await;
            notify_systemd("STOPPING=1");
            running.shutdown().await;
            Ok(0)
        }
        Command::Validate(args) => Ok(policy::validate(&args)),
        Command::Diff(args) => Ok(policy::diff(&args)),
        Command::Rollout(args) => rollout::run(args).await,
        Command::Revert(args) => Ok(revert::run(args).await),
        Command::Audit(args) => audit::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::JoinToken(args) => {
            println!("{}", args.authority().await?.join_token(&args.service));
            Ok(0)
        }
        Command::IssueCert { ca, out } => {
            let issued = ca.authority().await?.issue_files(&ca.service, &out)?;
            let days = (issued.not_after_ms - crate::now_ms()) as f64 / 86_400_000.0;
            println!("{} in {} (valid {days:.1} days)", issued.identity, out.display());
            Ok(0)
        }
        Command::Schema => {
            println!("{}", policy::schema());
            Ok(0)
        }
        Command::Probe { listen } => match trellis_host::probe(listen, "/ready") {
            Ok(()) => Ok(0),
            Err(e) => {
                eprintln!("trellis: not ready: {e}");
                Ok(1)
            }
        },
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&crate::api::openapi()).unwrap_or_default());
            Ok(0)
        }
        Command::Install(args) => install::run(args),
        Command::Demo(args) => crate::demo::run(args).await.map(|()| 0),
        Command::DemoApp(args) => crate::demo::app::run(args).await.map(|()| 0),
    }
}

/// Tells systemd how the control plane is doing, when a `Type=notify` unit started it.
fn notify_systemd(state: &str) {
    if let Err(e) = trellis_host::notify_systemd(state) {
        tracing::warn!(error = %e, "cannot tell systemd {state}");
    }
}

/// Logs to stdout, filtered by `TRELLIS_LOG`; `TRELLIS_LOG_FORMAT=json` makes them one JSON
/// object per line (an event's fields at the top level, with its span) for log shippers.
fn init_tracing() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("TRELLIS_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,leptos=warn"));
    let _ = match std::env::var("TRELLIS_LOG_FORMAT").as_deref() {
        Err(_) | Ok("" | "text") => tracing_subscriber::fmt().with_env_filter(filter).try_init(),
        Ok("json") => tracing_subscriber::fmt().json().flatten_event(true).with_env_filter(filter).try_init(),
        Ok(other) => anyhow::bail!("TRELLIS_LOG_FORMAT={other:?} must be text or json"),
    };
    Ok(())
}
