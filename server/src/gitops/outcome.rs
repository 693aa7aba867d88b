//! Committing a rollout's outcome to the policy repository, authored by the operator who
//! ended it (or Trellis, for an automatic abort or completion). The commit goes straight to
//! the watched branch, or to a branch of its own for a pull request, as configured; for a
//! remote repository it is pushed.

use super::PolicySource;
use git2::{Oid, Repository, Signature};
use trellis_model::config::RolloutOutcome;

/// Where outcome commits go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordTo {
    /// A branch `trellis/<rollout>-<outcome>` that a pull request merges.
    #[default]
    Branch,
    /// The watched branch itself: the outcome is applied as soon as it is committed.
    Watched,
}

impl std::str::FromStr for RecordTo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "branch" => Ok(RecordTo::Branch),
            "watched" => Ok(RecordTo::Watched),
            other => Err(format!("{other:?}: use `branch` (for a pull request) or `watched`")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub sha: String,
    pub branch: String,
}

/// Commits the outcome and, for a remote repository, pushes it.
pub async fn record(
    source: &PolicySource,
    to: RecordTo,
    name: &str,
    outcome: RolloutOutcome,
    actor: &str,
    why: &str,
) -> Result<Recorded, String> {
    let (repo, branch) = (source.repo.clone(), source.branch.clone());
    let (name_, actor_, why_) = (name.to_string(), actor.to_string(), why.to_string());
    let local = source.remote.is_none();
    let recorded =
        tokio::task::spawn_blocking(move || commit(&repo, &branch, to, &name_, outcome, &actor_, &why_, local))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.message().to_string())?;
    super::remote::publish(source, &recorded.branch).await.map_err(|e| e.to_string())?;
    Ok(recorded)
}

#[allow(clippy::too_many_arguments)]
fn commit(
    path: &std::path::Path,
    watched: &str,
    to: RecordTo,
    name: &str,
    outcome: RolloutOutcome,
    actor: &str,
    why: &str,
    local: bool,
) -> Result<Recorded, git2::Error> {
    let repo = Repository::open(path)?;
    let head = repo.find_branch(watched, git2::BranchType::Local)?.get().peel_to_commit()?;
    let (files, _) = crate::source::read_commit(&repo, head.id())?;
    let (file, text) =
        trellis_model::rollout::record_outcome(&files, name, outcome).map_err(|e| git2::Error::from_str(&e))?;
    let blob = repo.blob(text.as_bytes())?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    update.upsert(&file, blob, git2::FileMode::Blob);
    let tree = repo.find_tree(update.create_updated(&repo, &head.tree()?)?)?;
    let word = if outcome == RolloutOutcome::Completed { "completed" } else { "aborted" };
    let message = format!(
        "Rollout {name} {word}\n\n{why}\n\nTrellis-Rollout: {name}\nTrellis-Outcome: {word}\nTrellis-Actor: {actor}\n"
    );
    let branch = match to {
        RecordTo::Watched => watched.to_string(),
        RecordTo::Branch => format!("trellis/{name}-{word}"),
    };
    let sha = write(&repo, watched, &branch, &head, &tree, actor, &message, local)?;
    Ok(Recorded { sha, branch })
}

/// Commits `tree` on top of `head` (the watched branch's head), authored by `actor` via
/// Trellis: on the watched branch itself when `branch` is it, else on `branch`, replaced.
#[allow(clippy::too_many_arguments)]
pub(super) fn write(
    repo: &Repository,
    watched: &str,
    branch: &str,
    head: &git2::Commit,
    tree: &git2::Tree,
    actor: &str,
    message: &str,
    local: bool,
) -> Result<String, git2::Error> {
    let author = Signature::now(&format!("{actor} (via Trellis)"), &format!("{actor}@trellis.invalid"))?;
    let committer = Signature::now("Trellis", "trellis@trellis.invalid")?;
    let to_watched = branch == watched;
    // A checkout of the watched branch (the demo's repository) follows, as after a pull: it is
    // updated while HEAD still names the old commit, so that a file someone edited meanwhile
    // is left alone rather than overwritten.
    let checked_out = repo.head().ok().and_then(|h| h.shorthand().ok().map(str::to_string)).as_deref() == Some(watched);
    if local && to_watched && !repo.is_bare() && checked_out {
        repo.checkout_tree(tree.as_object(), Some(git2::build::CheckoutBuilder::new().safe()))?;
    }
    let oid: Oid = if to_watched {
        // Fails rather than overwrite if the branch moved since it was read.
        repo.commit(Some(&format!("refs/heads/{branch}")), &author, &committer, message, tree, &[head])?
    } else {
        let oid = repo.commit(None, &author, &committer, message, tree, &[head])?;
        repo.reference(&format!("refs/heads/{branch}"), oid, true, "trellis: a commit for a pull request")?;
        oid
    };
    Ok(oid.to_string())
}
