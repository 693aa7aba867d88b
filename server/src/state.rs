//! The control plane's shared state: the revision in force, the fleet, the store, and a change
//! counter that the dashboard's event stream follows.

use crate::audit::Audit;
use crate::fleet::Fleet;
use crate::gitops::Judged;
use crate::store::Store;
use crate::sync::Locked;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};
use tracing::Instrument;
use trellis_api::RevisionView;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    pub fleet: Fleet,
    pub audit: Audit,
    pub revisions: Mutex<Revisions>,
    /// Bumped on every change the dashboard shows; SSE clients wake on it.
    pub changes: watch::Sender<u64>,
    /// Telemetry arrived since the dashboard was last told: it is told once a second (the
    /// figures move a settled second at a time), not on each of a fleet's reports.
    pub telemetry_fresh: std::sync::atomic::AtomicBool,
    /// Wakes the git follower (webhook).
    pub git_hook: Notify,
    /// Flips to true at shutdown; long-lived streams end on it so the server can drain.
    pub shutdown: crate::sync::Shutdown,
    /// When set, `POST /api/v1/hooks/git` must carry a GitHub-style HMAC signature.
    pub webhook_secret: Option<String>,
    /// Where revisions' files are read from, for the API and the Policy page.
    pub policy: crate::gitops::PolicySource,
    pub telemetry: crate::telemetry::Telemetry,
    pub rollouts: crate::rollouts::Rollouts,
    /// Who may do what: operator and viewer tokens, and login sessions.
    pub auth: crate::auth::Auth,
    pub record_to: crate::gitops::outcome::RecordTo,
    /// The git follower's last look: when it last succeeded, and the error since, if any.
    pub git: Mutex<GitHealth>,
    /// The issuing CA, when identities are on.
    pub ca: Option<Arc<crate::identity::Ca>>,
    /// The fleet's mTLS port, told to proxies with their certificate.
    pub fleet_port: Option<u16>,
    /// The other replicas, and whether this one leads.
    pub cluster: crate::cluster::Cluster,
    /// Whether the main listener speaks HTTPS: the session cookie is then `Secure`.
    pub https: bool,
    /// The client that passes requests on to the leader (over HTTPS when replicas serve it),
    /// and asks Prometheus.
    pub peers: crate::https::Client,
    /// A Prometheus that scrapes the proxies, for traffic history.
    pub prometheus: Option<String>,
    /// What the sidecar injector gives each pod's proxy.
    pub injector: crate::inject::Injector,
}

#[derive(Clone, Debug, Default)]
pub struct GitHealth {
    pub last_ok_ms: Option<i64>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Revisions {
    /// The revision in force.
    pub applied: Option<RevisionView>,
    /// The newest revision judged, if it was rejected after `applied`.
    pub rejected: Option<RevisionView>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        store: Store,
        shutdown: crate::sync::Shutdown,
        config: &crate::config::ServeConfig,
        replica: (String, String),
        ca: Option<Arc<crate::identity::Ca>>,
        fleet_port: Option<u16>,
        peers: crate::https::Client,
    ) -> std::io::Result<Self> {
        let (changes, _) = watch::channel(0);
        let changes_for_fleet = changes.clone();
        let audit = Audit::start(store.clone(), &config.spool_dir)?;
        let fleet =
            Fleet::new(replica.0.clone(), audit.clone(), Some(store.clone()), crate::fleet::DEBOUNCE, move || {
                changes_for_fleet.send_modify(|n| *n += 1)
            });
        let cluster = crate::cluster::Cluster::new(store.clone(), audit.clone(), replica.0, replica.1);
        Ok(AppState(Arc::new(Inner {
            auth: crate::auth::Auth::new(config.users.clone(), store.clone()),
            store,
            fleet,
            audit,
            revisions: Mutex::new(Revisions::default()),
            changes,
            telemetry_fresh: Default::default(),
            git_hook: Notify::new(),
            shutdown,
            webhook_secret: config.webhook_secret.clone(),
            policy: config.policy.clone(),
            telemetry: Default::default(),
            rollouts: Default::default(),
            record_to: config.record_to,
            git: Mutex::new(GitHealth::default()),
            ca,
            fleet_port,
            cluster,
            https: config.tls.is_some(),
            peers,
            prometheus: config.prometheus_url.clone(),
            injector: config.injector.clone(),
        })))
    }

    pub fn revisions(&self) -> Revisions {
        self.revisions.locked().clone()
    }

    /// The git follower looked at the branch: fine, or why not.
    pub fn git_looked(&self, error: Option<String>) {
        let mut git = self.git.locked();
        match error {
            None => *git = GitHealth { last_ok_ms: Some(crate::now_ms()), error: None },
            Some(e) => git.error = Some(e),
        }
    }

    pub fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Tells the dashboard of the telemetry that arrived since the last call, if any.
    pub fn tell_telemetry(&self) {
        if self.telemetry_fresh.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.changed();
        }
    }

    /// The branch moved to a commit that does not descend from the one in force.
    pub fn history_rewritten(&self, branch: &str, old: &str, new: &str) {
        tracing::warn!(%branch, %old, %new, "policy branch history was rewritten (force push)");
        self.audit.system(
            "revision.history_rewritten",
            None,
            format!(
                "branch {branch} was rewritten: {} is no longer an ancestor of {}",
                crate::audit::short(old),
                crate::audit::short(new)
            ),
            serde_json::json!({ "branch": branch, "old": old, "new": new }),
        );
    }

    /// Takes a judged commit: records it, and applies it when valid. Invalid commits change
    /// nothing in the fleet.
    pub async fn judged(&self, judged: Judged) {
        let span = tracing::info_span!("revision", revision = %crate::audit::short(&judged.commit.sha));
        self.judged_inner(judged).instrument(span).await
    }

    async fn judged_inner(&self, judged: Judged) {
        let Judged { commit, config, errors } = judged;
        let mut rev = RevisionView {
            sha: commit.sha,
            author: commit.author,
            message: commit.message,
            committed_at: commit.committed_at,
            outcome: if config.is_some() { "applied" } else { "rejected" }.to_string(),
            errors,
            changes: Vec::new(),
        };
        if let Some(config) = &config {
            let before = self.rollouts.base().await.unwrap_or_default();
            rev.changes = trellis_model::diff::diff(&before, config);
        }
        let fresh = match self.store.record_revision(&rev, crate::now_ms()).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the revision");
                true
            }
        };
        if fresh {
            self.audit.revision(&rev);
        }
        {
            let mut revisions = self.revisions.locked();
            match config {
                Some(_) => {
                    revisions.applied = Some(rev.clone());
                    revisions.rejected = None;
                }
                None => revisions.rejected = Some(rev.clone()),
            }
        }
        match config {
            Some(config) => {
                tracing::info!(message = %rev.message, "applying revision");
                self.rollouts.set_base(self, config).await;
            }
            None => tracing::warn!(errors = rev.errors.len(), "rejected revision; the previous one stays in force"),
        }
        self.changed();
    }
}

impl crate::gitops::Follower for AppState {
    async fn judged(&self, judged: Judged) {
        AppState::judged(self, judged).await
    }

    fn looked(&self, error: Option<String>) {
        self.git_looked(error)
    }

    fn rewritten(&self, branch: &str, old: &str, new: &str) {
        self.history_rewritten(branch, old, new)
    }

    async fn poked(&self) {
        self.git_hook.notified().await
    }
}

impl crate::rollouts::Env for AppState {
    fn store(&self) -> &Store {
        &self.store
    }

    fn audit(&self) -> &Audit {
        &self.audit
    }

    fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.telemetry
    }

    fn rollouts(&self) -> &crate::rollouts::Rollouts {
        &self.rollouts
    }

    fn policy(&self) -> &crate::gitops::PolicySource {
        &self.policy
    }

    fn record_to(&self) -> crate::gitops::outcome::RecordTo {
        self.record_to
    }

    fn changed(&self) {
        AppState::changed(self)
    }

    fn fence(&self) -> Option<crate::store::Fence> {
        self.cluster.fence()
    }
}
