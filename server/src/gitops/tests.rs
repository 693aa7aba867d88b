use super::*;
use crate::testing::PolicyRepo;

#[test]
fn judges_the_commit_tree_not_the_working_directory() {
    let repo = PolicyRepo::demo();
    let first = repo.head();
    // An uncommitted broken file must not matter.
    std::fs::write(repo.path().join("broken.yaml"), "kind: [").unwrap();
    let r = Repository::open(repo.path()).unwrap();
    let judged = judge(&r, first, None).unwrap();
    assert!(judged.config.is_some(), "{:?}", judged.errors);
    assert_eq!(judged.config.unwrap().services.len(), 3);
}

#[test]
fn invalid_head_falls_back_to_the_last_good_commit() {
    let repo = PolicyRepo::demo();
    let good = repo.head();
    repo.commit("routes/inventory.yaml", "kind: Route\nname: [", "break it");
    let pass = scan(repo.path(), "main", None, None).unwrap().unwrap();
    assert_eq!(pass.judged.len(), 1);
    assert!(pass.judged[0].config.is_none(), "rejected");
    let e = &pass.judged[0].errors[0];
    assert_eq!((e.code.as_str(), e.file.as_str(), e.line), ("TR0001", "routes/inventory.yaml", 2));
    assert_eq!(pass.fallback.unwrap().commit.sha, good.to_string());
}

#[test]
fn later_passes_judge_every_new_commit_in_order() {
    let repo = PolicyRepo::demo();
    let start = repo.head();
    let a = repo.set_inventory_split(50, 50, "half");
    let b = repo.set_inventory_split(0, 100, "all in");
    let pass = scan(repo.path(), "main", Some(start), None).unwrap().unwrap();
    let shas: Vec<String> = pass.judged.iter().map(|j| j.commit.sha.clone()).collect();
    assert_eq!(shas, vec![a.to_string(), b.to_string()]);
    assert!(scan(repo.path(), "main", Some(b), None).unwrap().is_none());
}

#[tokio::test]
async fn outcomes_are_committed_to_a_branch_or_the_watched_one_with_the_checkout_following() {
    use outcome::{RecordTo, record};
    use trellis_model::config::RolloutOutcome;
    let repo = PolicyRepo::demo();
    let source = PolicySource::local(repo.path(), "main");
    let base = repo.head();
    let on_branch = record(&source, RecordTo::Branch, "inventory-v2", RolloutOutcome::Aborted, "ann", "aborted by ann")
        .await
        .unwrap();
    assert_eq!(on_branch.branch, "trellis/inventory-v2-aborted");
    assert_eq!(repo.head(), base, "the watched branch waits for the pull request");

    let watched =
        record(&source, RecordTo::Watched, "inventory-v2", RolloutOutcome::Completed, "ann", "by ann").await.unwrap();
    assert_eq!((watched.branch.as_str(), watched.sha.clone()), ("main", repo.head().to_string()));
    let on_disk = std::fs::read_to_string(repo.path().join(crate::testing::INVENTORY_ROLLOUT)).unwrap();
    assert!(on_disk.contains("status: completed"), "the checkout follows the branch: {on_disk}");
    let r = Repository::open(repo.path()).unwrap();
    assert!(r.statuses(None).unwrap().iter().all(|s| s.status() == git2::Status::CURRENT || s.status().is_wt_new()));
    let judged = judge(&r, repo.head(), None).unwrap();
    assert!(judged.config.is_some(), "{:?}", judged.errors);
}

#[tokio::test]
async fn for_a_remote_repository_the_outcome_branch_is_pushed() {
    use outcome::{RecordTo, record};
    let upstream = PolicyRepo::demo();
    let cache = tempfile::tempdir().unwrap();
    let source = PolicySource::new(&format!("file://{}", upstream.path().display()), "main", cache.path());
    remote::sync(source.remote.as_deref().unwrap(), &source.repo).await.unwrap();
    let outcome = trellis_model::config::RolloutOutcome::Aborted;
    let recorded = record(&source, RecordTo::Branch, "inventory-v2", outcome, "ann", "aborted by ann").await.unwrap();
    let theirs = Repository::open(upstream.path()).unwrap();
    let pushed = theirs.find_branch("trellis/inventory-v2-aborted", git2::BranchType::Local).unwrap();
    assert_eq!(pushed.get().target().unwrap().to_string(), recorded.sha);
}
