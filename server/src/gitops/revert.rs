//! Going back to an earlier revision as git users do: a new commit on top of the watched
//! branch whose tree is that revision's (what `git revert OLD..HEAD` squashed into one commit
//! makes), authored by the operator via Trellis. History keeps every step, the revert can be
//! reverted, and it reaches the proxies the way every change does: judged from git.

use super::PolicySource;
use super::outcome::{RecordTo, Recorded};
use git2::{Oid, Repository};

/// Commits listed by name in the message; more are counted.
const LISTED: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    /// The request makes no sense for this history: the operator is told why.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl From<git2::Error> for RevertError {
    fn from(e: git2::Error) -> Self {
        RevertError::Failed(format!("git: {}", e.message()))
    }
}

/// Commits the revert to `target` (a full SHA) and, for a remote repository, pushes it.
pub async fn revert(source: &PolicySource, to: RecordTo, target: &str, actor: &str) -> Result<Recorded, RevertError> {
    if let Some(url) = &source.remote {
        // Revert from what the remote has now, or the push would be refused as out of date.
        super::remote::sync(url, &source.repo).await.map_err(|e| RevertError::Failed(e.to_string()))?;
    }
    let (repo, branch) = (source.repo.clone(), source.branch.clone());
    let (target_, actor_) = (target.to_string(), actor.to_string());
    let local = source.remote.is_none();
    let recorded = tokio::task::spawn_blocking(move || commit(&repo, &branch, to, &target_, &actor_, local))
        .await
        .map_err(|e| RevertError::Failed(e.to_string()))??;
    super::remote::publish(source, &recorded.branch).await.map_err(|e| RevertError::Failed(e.to_string()))?;
    Ok(recorded)
}

fn commit(
    path: &std::path::Path,
    watched: &str,
    to: RecordTo,
    target: &str,
    actor: &str,
    local: bool,
) -> Result<Recorded, RevertError> {
    let repo = Repository::open(path)?;
    let head = repo.find_branch(watched, git2::BranchType::Local)?.get().peel_to_commit()?;
    let short = trellis_api::short_sha(target);
    let target = Oid::from_str(target)
        .and_then(|oid| repo.find_commit(oid))
        .map_err(|_| RevertError::Refused(format!("no commit {short} in the policy repository")))?;
    if target.id() == head.id() {
        return Err(RevertError::Refused(format!("{short} is the head of {watched}: there is nothing to revert")));
    }
    if !repo.graph_descendant_of(head.id(), target.id())? {
        return Err(RevertError::Refused(format!(
            "{short} is not in the history of {watched}: Trellis reverts only to a revision the branch went through"
        )));
    }
    if target.tree_id() == head.tree_id() {
        return Err(RevertError::Refused(format!(
            "{watched} already holds {short}'s policy: there is nothing to revert"
        )));
    }
    let undone = undone(&repo, head.id(), target.id())?;
    let subject = target.summary().ok().flatten().unwrap_or_default().to_string();
    let mut message =
        format!("Revert to {short}: {subject}\n\nRestores the policy of {} ({subject}), undoing:\n", target.id());
    for (sha, line) in undone.iter().take(LISTED) {
        message.push_str(&format!("  {sha} {line}\n"));
    }
    if undone.len() > LISTED {
        message.push_str(&format!("  and {} earlier commits\n", undone.len() - LISTED));
    }
    message.push_str(&format!("\nTrellis-Revert-To: {}\nTrellis-Actor: {actor}\n", target.id()));
    let branch = match to {
        RecordTo::Watched => watched.to_string(),
        RecordTo::Branch => format!("trellis/revert-{short}"),
    };
    let sha = super::outcome::write(&repo, watched, &branch, &head, &target.tree()?, actor, &message, local)?;
    Ok(Recorded { sha, branch })
}

/// The commits after `target` up to `head` along first parents, newest first: short SHA and
/// subject.
fn undone(repo: &Repository, head: Oid, target: Oid) -> Result<Vec<(String, String)>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.simplify_first_parent()?;
    walk.push(head)?;
    walk.hide(target)?;
    walk.map(|oid| {
        let commit = repo.find_commit(oid?)?;
        Ok((
            trellis_api::short_sha(&commit.id().to_string()),
            commit.summary().ok().flatten().unwrap_or_default().to_string(),
        ))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::PolicyRepo;

    #[test]
    fn a_revert_commits_the_old_tree_on_top_and_names_what_it_undoes() {
        let repo = PolicyRepo::demo();
        let good = repo.head();
        repo.set_inventory_split(50, 50, "Half to v2");
        let bad = repo.set_inventory_split(0, 100, "All to v2");
        let path = repo.path();
        let made = commit(path, "main", RecordTo::Watched, &good.to_string(), "ann", true).unwrap();
        assert_eq!(made.branch, "main");
        let git = Repository::open(path).unwrap();
        let new = git.find_commit(Oid::from_str(&made.sha).unwrap()).unwrap();
        assert_eq!(new.parent_id(0).unwrap(), bad);
        assert_eq!(new.tree_id(), git.find_commit(good).unwrap().tree_id());
        assert_eq!(new.author().name().ok(), Some("ann (via Trellis)"));
        let message = new.message().unwrap();
        assert!(message.starts_with(&format!("Revert to {}", &good.to_string()[..8])), "{message}");
        assert!(message.contains("All to v2") && message.contains("Half to v2"), "{message}");
        assert!(message.contains(&format!("Trellis-Revert-To: {good}")), "{message}");
        // The checkout follows, as after a pull.
        let split = std::fs::read_to_string(path.join("routes/inventory.yaml")).unwrap();
        assert!(split.contains("weight: 0"), "{split}");
        assert!(path.join(crate::testing::INVENTORY_ROLLOUT).exists(), "the canary set aside comes back");

        // Nothing to do, and not from this history, are refused with the reason.
        let again = commit(path, "main", RecordTo::Watched, &good.to_string(), "ann", true).unwrap_err();
        assert!(again.to_string().contains("already holds"), "{again}");
        let head = commit(path, "main", RecordTo::Watched, &made.sha, "ann", true).unwrap_err();
        assert!(head.to_string().contains("is the head of main"), "{head}");
        let stray = commit(path, "main", RecordTo::Watched, &"ab".repeat(20), "ann", true).unwrap_err();
        assert!(matches!(stray, RevertError::Refused(_)), "{stray}");
    }

    #[test]
    fn for_a_pull_request_the_revert_goes_to_a_branch_of_its_own() {
        let repo = PolicyRepo::demo();
        let good = repo.head();
        let bad = repo.set_inventory_split(0, 100, "All to v2");
        let made = commit(repo.path(), "main", RecordTo::Branch, &good.to_string(), "ann", true).unwrap();
        assert_eq!(made.branch, format!("trellis/revert-{}", &good.to_string()[..8]));
        assert_eq!(repo.head(), bad, "the watched branch waits for the pull request");
    }
}
