//! Verified commits with real SSH signatures (ssh-keygen keys, `git commit -S`): when
//! signatures are required, an unsigned commit and one signed by an unknown key are rejected
//! like invalid policy, and a commit signed by an allowed key applies.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trellis_server::gitops::PolicySource;
use trellis_server::gitops::signing::Signers;
use trellis_server::serve::{Running, ServeConfig};
use trellis_server::testing::{PolicyRepo, http_get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_commits_signed_by_an_allowed_key_apply() {
    let keys = tempfile::tempdir().unwrap();
    let (ann, mallory) = (keygen(keys.path(), "ann"), keygen(keys.path(), "mallory"));
    let allowed = format!("ann@example.com {}", std::fs::read_to_string(format!("{ann}.pub")).unwrap());
    let repo = PolicyRepo::demo();
    let data = tempfile::tempdir().unwrap();
    let mut policy =
        PolicySource { poll_interval: Duration::from_millis(200), ..PolicySource::local(repo.path(), "main") };
    policy.signers = Some(Arc::new(Signers::parse(&allowed).unwrap()));
    let cp = trellis_server::serve::start(ServeConfig::local(policy, data.path())).await.unwrap();

    // The seed commit is unsigned: nothing applies, and the reason is on record.
    let seed = repo.head().to_string();
    let rejected = revision(&cp, &seed).await;
    assert_eq!(rejected["outcome"], "rejected");
    assert_eq!(rejected["errors"][0]["code"], "TR0010");
    assert!(rejected["errors"][0]["message"].as_str().unwrap().contains("not signed"), "{rejected}");
    assert!(overview(&cp).await["applied"].is_null());

    let forged = signed_commit(repo.path(), &mallory, "Signed by someone else");
    let why = revision(&cp, &forged).await["errors"][0]["message"].as_str().unwrap().to_string();
    assert!(why.contains("not an allowed signer") && why.contains("SHA256:"), "{why}");

    let good = signed_commit(repo.path(), &ann, "Signed by ann");
    let applied = revision(&cp, &good).await;
    assert_eq!(applied["outcome"], "applied", "{applied}");
    let started = Instant::now();
    while overview(&cp).await["applied"]["sha"] != good.as_str() {
        assert!(started.elapsed() < Duration::from_secs(10), "the signed commit never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cp.shutdown().await;
}

/// An ed25519 key pair at `dir/name`; returns the private key's path.
fn keygen(dir: &Path, name: &str) -> String {
    let path = dir.join(name).to_string_lossy().into_owned();
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", &path])
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    path
}

/// An empty commit signed with `key` through git's own SSH signing.
fn signed_commit(repo: &Path, key: &str, message: &str) -> String {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=Ann", "-c", "user.email=ann@example.com", "-c", "gpg.format=ssh"])
            .args(["-c", &format!("user.signingkey={key}")])
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["commit", "-q", "-S", "--allow-empty", "-m", message]);
    git(&["rev-parse", "HEAD"])
}

async fn revision(cp: &Running, sha: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, body) = http_get(cp.addr, "trellis", &format!("/api/v1/revisions/{sha}")).await.unwrap();
        if status == 200 {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "revision {sha} never judged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn overview(cp: &Running) -> serde_json::Value {
    let (_, body) = http_get(cp.addr, "trellis", "/api/v1/overview").await.unwrap();
    serde_json::from_str(&body).unwrap()
}
