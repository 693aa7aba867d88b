//! Remote policy repositories: mirrored with the `git` command, as Argo CD does, so https and
//! ssh work with the machine's own credentials and configuration; read with git2 like any
//! local repository.

use std::path::Path;
use std::time::Duration;

/// A fetch taking longer than this is abandoned; the next poll tries again.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot run git: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("git {action} failed: {stderr}")]
    Failed { action: &'static str, stderr: String },
    #[error("git {0} took longer than {FETCH_TIMEOUT:?}")]
    Timeout(&'static str),
}

/// A directory name for a URL's mirror: readable, and distinct for distinct URLs.
pub fn mirror_name(url: &str) -> String {
    let readable: String = url
        .rsplit(['/', ':'])
        .find(|s| !s.is_empty())
        .unwrap_or("repo")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    // FNV-1a: stable across runs and Rust versions, unlike the std hasher.
    let hash = url.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100000001b3));
    format!("{readable}-{hash:016x}")
}

/// Clones the mirror on first use, then fetches, pruning branches that were deleted.
pub async fn sync(url: &str, mirror: &Path) -> Result<(), RemoteError> {
    if mirror.join("HEAD").exists() {
        git("fetch", &["--git-dir", &mirror.to_string_lossy(), "fetch", "--prune", "--quiet", "origin"]).await
    } else {
        if let Some(parent) = mirror.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        git("clone", &["clone", "--mirror", "--quiet", url, &mirror.to_string_lossy()]).await
    }
}

/// Pushes a branch of the mirror back to the remote (Trellis's own commits: a rollout's
/// outcome, a revert); nothing to do for a local repository.
pub async fn publish(source: &super::PolicySource, branch: &str) -> Result<(), RemoteError> {
    let Some(url) = &source.remote else { return Ok(()) };
    let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
    git("push", &["--git-dir", &source.repo.to_string_lossy(), "push", "--quiet", url, &refspec]).await
}

async fn git(action: &'static str, args: &[&str]) -> Result<(), RemoteError> {
    let child = tokio::process::Command::new("git")
        .args(args)
        // Never wait for a password prompt: a control plane has nobody to answer it.
        .env("GIT_TERMINAL_PROMPT", "0")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(FETCH_TIMEOUT, child).await.map_err(|_| RemoteError::Timeout(action))??;
    if out.status.success() {
        Ok(())
    } else {
        Err(RemoteError::Failed { action, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mirror_names_are_readable_and_distinct() {
        let a = super::mirror_name("https://github.com/acme/mesh-policy.git");
        let b = super::mirror_name("https://gitlab.com/acme/mesh-policy.git");
        assert!(a.starts_with("mesh-policy-git-"), "{a}");
        assert_ne!(a, b);
        assert!(super::mirror_name("git@github.com:acme/policy").starts_with("policy-"));
    }
}
