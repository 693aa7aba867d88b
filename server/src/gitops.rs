//! Git → configuration. Follows a branch of a local repository, reads each new commit's tree
//! (never the working directory), judges it with the policy model, and hands the result to
//! the control plane. Local changes are noticed through `notify`, with a polling fallback and
//! `POST /api/v1/hooks/git` for anything else.

use git2::{Oid, Repository};
use std::path::{Path, PathBuf};
use std::time::Duration;
use trellis_model::MeshConfig;

/// The most commits judged in one pass; older ones in a huge push are skipped, not queued.
const MAX_COMMITS_PER_PASS: usize = 100;
/// How far back to look for a valid revision when the branch head is invalid at start.
const MAX_LOOKBACK: usize = 200;

#[derive(Clone, Debug)]
pub struct PolicySource {
    /// The repository read: the local repository itself, or the mirror of a remote one.
    pub repo: PathBuf,
    /// For a remote repository (https://, ssh://, file://): its URL, mirrored into `repo`.
    pub remote: Option<String>,
    pub branch: String,
    /// How often to look at the branch (and fetch a remote) when nothing else wakes us.
    pub poll_interval: Duration,
    /// When set, only commits signed by one of these keys are applied.
    pub signers: Option<std::sync::Arc<signing::Signers>>,
}

impl PolicySource {
    /// `location` is a local path or a URL; remote repositories are mirrored under `cache_dir`.
    pub fn new(location: &str, branch: &str, cache_dir: &Path) -> Self {
        let remote = location.contains("://") || location.starts_with("git@");
        if remote {
            PolicySource {
                repo: cache_dir.join(remote::mirror_name(location)),
                remote: Some(location.to_string()),
                branch: branch.to_string(),
                poll_interval: Duration::from_secs(30),
                signers: None,
            }
        } else {
            PolicySource::local(Path::new(location), branch)
        }
    }

    pub fn local(path: &Path, branch: &str) -> Self {
        PolicySource {
            repo: path.to_path_buf(),
            remote: None,
            branch: branch.to_string(),
            poll_interval: Duration::from_secs(1),
            signers: None,
        }
    }

    /// What people recognise: the URL or the path.
    pub fn describe(&self) -> String {
        self.remote.clone().unwrap_or_else(|| self.repo.display().to_string())
    }
}

/// A commit, as git describes it.
#[derive(Clone, Debug)]
pub struct Commit {
    pub sha: String,
    /// `Name <email>`.
    pub author: String,
    pub message: String,
    /// Unix milliseconds.
    pub committed_at: i64,
}

/// One commit judged: its configuration when valid, every error when not.
#[derive(Clone, Debug)]
pub struct Judged {
    pub commit: Commit,
    pub config: Option<MeshConfig>,
    pub errors: Vec<trellis_model::Diagnostic>,
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("branch `{0}` does not exist")]
    NoBranch(String),
}

/// Reads the policy files of a commit and judges them; with `signers`, its signature first.
pub fn judge(repo: &Repository, oid: Oid, signers: Option<&signing::Signers>) -> Result<Judged, GitError> {
    let commit = repo.find_commit(oid)?;
    let sha = oid.to_string();
    let unsigned = signers.and_then(|s| s.verify(repo, oid).err()).map(|why| {
        let pos = trellis_model::diagnostic::Pos::default();
        vec![trellis_model::Diagnostic::new(trellis_model::Code::UnsignedCommit, "(commit)", pos, why)]
    });
    let result = match unsigned {
        Some(errors) => Err(errors),
        None => crate::source::load_here(crate::source::read_commit(repo, oid)?, &sha),
    };
    let author = commit.author();
    let (config, errors) = match result {
        Ok(config) => (Some(config), Vec::new()),
        Err(errors) => (None, errors),
    };
    let commit = Commit {
        sha,
        author: format!("{} <{}>", author.name().unwrap_or("?"), author.email().unwrap_or("?")),
        message: commit.message().unwrap_or_default().trim().to_string(),
        committed_at: commit.time().seconds() * 1000,
    };
    Ok(Judged { commit, config, errors })
}

fn branch_head(repo: &Repository, branch: &str) -> Result<Oid, GitError> {
    let reference =
        repo.find_branch(branch, git2::BranchType::Local).map_err(|_| GitError::NoBranch(branch.to_string()))?;
    reference.get().target().ok_or_else(|| GitError::NoBranch(branch.to_string()))
}

/// Commits on the branch after `since`, oldest first, following first parents.
fn new_commits(repo: &Repository, head: Oid, since: Option<Oid>) -> Result<Vec<Oid>, GitError> {
    let mut walk = repo.revwalk()?;
    walk.simplify_first_parent()?;
    walk.push(head)?;
    if let Some(since) = since {
        // A force-push may have dropped `since`; hiding what no longer exists would fail.
        if repo.find_commit(since).is_ok() {
            walk.hide(since)?;
        }
    }
    let mut oids: Vec<Oid> = walk.take(MAX_COMMITS_PER_PASS).collect::<Result<_, _>>()?;
    if since.is_none() {
        oids.truncate(1);
    }
    oids.reverse();
    Ok(oids)
}

/// The newest valid commit at or before `head`, judged, for a control plane starting on an
/// invalid head: the last good revision stays in force.
fn last_good(repo: &Repository, head: Oid, signers: Option<&signing::Signers>) -> Result<Option<Judged>, GitError> {
    let mut walk = repo.revwalk()?;
    walk.simplify_first_parent()?;
    walk.push(head)?;
    for oid in walk.take(MAX_LOOKBACK) {
        let judged = judge(repo, oid?, signers)?;
        if judged.config.is_some() {
            return Ok(Some(judged));
        }
    }
    Ok(None)
}

/// What one pass over the branch found.
struct Pass {
    head: Oid,
    judged: Vec<Judged>,
    /// On the first pass with an invalid head: the revision to run meanwhile.
    fallback: Option<Judged>,
    /// The previous head, when the new one does not descend from it (a force push).
    rewritten_from: Option<Oid>,
}

fn scan(
    path: &Path,
    branch: &str,
    since: Option<Oid>,
    signers: Option<&signing::Signers>,
) -> Result<Option<Pass>, GitError> {
    let repo = Repository::open(path)?;
    let head = branch_head(&repo, branch)?;
    if Some(head) == since {
        return Ok(None);
    }
    let judged: Vec<Judged> =
        new_commits(&repo, head, since)?.into_iter().map(|oid| judge(&repo, oid, signers)).collect::<Result<_, _>>()?;
    let fallback = match (since, judged.iter().any(|j| j.config.is_some())) {
        (None, false) => last_good(&repo, head, signers)?,
        _ => None,
    };
    let rewritten_from = since.filter(|&old| !repo.graph_descendant_of(head, old).unwrap_or(false));
    Ok(Some(Pass { head, judged, fallback, rewritten_from }))
}

/// What the follower tells the control plane it serves, and what wakes it early.
pub trait Follower: Send + Sync + 'static {
    /// A commit was judged: recorded, and applied when valid.
    fn judged(&self, judged: Judged) -> impl std::future::Future<Output = ()> + Send;
    /// The branch was looked at: fine, or why not.
    fn looked(&self, error: Option<String>);
    /// The branch moved to a commit that does not descend from the one in force.
    fn rewritten(&self, branch: &str, old: &str, new: &str);
    /// Completes when the branch should be looked at now (the git webhook).
    fn poked(&self) -> impl std::future::Future<Output = ()> + Send + '_;
}

/// Follows the branch until shutdown, telling `state` what it finds.
pub async fn run(state: impl Follower, source: PolicySource, mut shutdown: crate::sync::Shutdown) {
    let (wake_tx, mut wake_rx) = tokio::sync::mpsc::channel::<()>(1);
    // Held for the life of the loop: dropping the watcher stops the events. A mirror changes
    // only when we fetch, so only local repositories are watched.
    let _watcher = if source.remote.is_none() { watch_files(&source.repo, wake_tx.clone()) } else { None };
    let mut since: Option<Oid> = None;
    loop {
        let mut fetch_error = None;
        if let Some(url) = &source.remote
            && let Err(e) = remote::sync(url, &source.repo).await
        {
            tracing::warn!(remote = %url, error = %e, "cannot fetch the policy repository; the applied revision stays");
            fetch_error = Some(format!("cannot fetch {url}: {e}"));
        }
        let (path, branch, signers) = (source.repo.clone(), source.branch.clone(), source.signers.clone());
        match tokio::task::spawn_blocking(move || scan(&path, &branch, since, signers.as_deref())).await {
            Ok(Ok(Some(pass))) => {
                since = Some(pass.head);
                if let Some(old) = pass.rewritten_from {
                    state.rewritten(&source.branch, &old.to_string(), &pass.head.to_string());
                }
                if let Some(fallback) = pass.fallback {
                    state.judged(fallback).await;
                }
                for judged in pass.judged {
                    state.judged(judged).await;
                }
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(repo = %source.describe(), error = %e, "cannot read the policy branch");
                fetch_error.get_or_insert(format!("cannot read {} ({}): {e}", source.describe(), source.branch));
            }
            Err(e) => tracing::error!(error = %e, "git scan panicked"),
        }
        state.looked(fetch_error);
        tokio::select! {
            _ = wake_rx.recv() => {}
            _ = state.poked() => {}
            _ = tokio::time::sleep(source.poll_interval) => {}
            () = shutdown.recv() => return,
        }
    }
}

/// Wakes the loop on any change under the repository's git directory (refs move there).
fn watch_files(repo: &Path, wake: tokio::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let git_dir = Repository::open(repo).ok()?.path().to_path_buf();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Our own reads of the repository show up as access events: waking on them would
        // make every scan trigger the next one.
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a wake-up: dropping this one loses nothing.
            let _ = wake.try_send(());
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "file watching unavailable; polling only"))
    .ok()?;
    watcher
        .watch(&git_dir, notify::RecursiveMode::Recursive)
        .map_err(|e| tracing::warn!(error = %e, "file watching unavailable; polling only"))
        .ok()?;
    Some(watcher)
}

pub mod compare;
pub mod outcome;
pub mod remote;
pub mod revert;
pub mod signing;
#[cfg(test)]
mod tests;
