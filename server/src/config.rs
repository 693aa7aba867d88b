//! The control plane's settings, as `trellis serve`, the demo and tests build them.

use crate::gitops::PolicySource;
use crate::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// This replica's name among the control plane's replicas; by default one made up once
    /// and kept in the data directory, so a restart is the same replica.
    pub replica_id: Option<String>,
    /// Where the other replicas and the dashboard's users reach this one (`http://host:port`);
    /// by default its listen address (the host's name when it listens on every address).
    pub advertise_url: Option<String>,
    /// Serve the main listener over HTTPS with this certificate and key.
    pub tls: Option<crate::https::TlsFiles>,
    /// The CA that signed the other replicas' certificates, when it is not a system root.
    pub control_plane_ca: Option<PathBuf>,
    /// A Prometheus that scrapes the proxies: traffic history beyond fifteen minutes.
    pub prometheus_url: Option<String>,
    /// What the sidecar injector gives each pod's proxy.
    pub injector: crate::inject::Injector,
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
            replica_id: None,
            advertise_url: None,
            tls: None,
            control_plane_ca: None,
            prometheus_url: None,
            injector: Default::default(),
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
    /// Where the Kubernetes API server calls the sidecar injector over TLS, and the names its
    /// certificate (issued by this CA) carries; none, no such listener.
    pub admission: Option<(SocketAddr, Vec<String>)>,
}

impl IdentityConfig {
    /// Day-long certificates, the fleet's mTLS port on any free local port.
    pub fn new(dir: PathBuf, trust_domain: &str) -> IdentityConfig {
        IdentityConfig {
            dir,
            trust_domain: trust_domain.into(),
            cert_lifetime: crate::identity::CERT_TTL,
            fleet_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admission: None,
        }
    }
}
