//! Canary rollouts end to end: a Rollout committed to git moves real traffic through real
//! proxies; an operator's promotion changes the measured split (a viewer's is refused); a
//! failing canary is aborted by its analyses and traffic returns to stable; the state
//! survives a control-plane restart; the analyses count each request to the canary once.

use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use trellis_server::auth::User;
use trellis_server::gitops::PolicySource;
use trellis_server::gitops::outcome::RecordTo;
use trellis_server::serve::{Running, ServeConfig};
use trellis_server::testing::{INVENTORY_ROLLOUT, PolicyRepo, fixed_app, http_get, http_request};

const ANN: &str = "ann-operator-token-0001";
const VIC: &str = "vic-viewer-token-00001";

/// Gates at 10 % and 60 %, then 100 %; analyses every 3 s (proxies report every 2 s).
const ROLLOUT: &str = "kind: Rollout
name: inventory-v2
service: inventory
stable: v1
canary: v2
steps:
  - { weight: 10, manual: true }
  - { weight: 60, manual: true }
  - { weight: 100 }
analysis: { interval: 3s, successRate: 90, p99: 2s, minRequests: 3, maxFailures: 2, maxInconclusive: 50 }
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_promotes_step_by_step_a_viewer_cannot_and_the_state_survives_a_restart() {
    let repo = PolicyRepo::demo();
    let db = tempfile::tempdir().unwrap();
    let cp = control_plane(&repo, db.path(), None).await;
    let mesh = Mesh::start(&cp, 200).await;
    commit_rollout(&repo, ROLLOUT);
    let v2 = mesh.measure(&cp, 300, |r| r["step"] == 0 && r["phase"] == "awaiting-promotion").await;
    assert!((10..=55).contains(&v2), "step 1 sends 10 % to v2: {v2} of 300");

    // Only an operator may promote; the refusals say why.
    let (status, body) = act(&cp, "promote", Some(VIC)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("vic is a viewer"), "{body}");
    assert_eq!(act(&cp, "promote", None).await.0, 401);
    assert_eq!(act(&cp, "resume", Some(ANN)).await.0, 409, "only a paused rollout resumes");
    let (status, body) = act(&cp, "promote", Some(ANN)).await;
    assert_eq!(status, 200, "{body}");
    let v2 = mesh.measure(&cp, 300, |r| r["step"] == 1 && r["canary_weight"] == 60).await;
    assert!((140..=220).contains(&v2), "step 2 sends 60 % to v2: {v2} of 300");
    let audit = get_json(&cp, "/api/v1/audit").await;
    let promoted = audit["items"].as_array().unwrap().iter().find(|e| e["kind"] == "rollout.action.promote");
    assert_eq!(promoted.expect("the promotion is audited")["actor"], "ann");

    // Restart: the rollout is still at its second gate, and the proxies never left 60 %.
    cp.shutdown().await;
    let cp = control_plane(&repo, db.path(), Some(mesh.addr_of_cp)).await;
    let rollout = wait_rollout(&cp, |r| r["phase"] == "awaiting-promotion").await;
    assert_eq!((rollout["step"].as_u64(), rollout["canary_weight"].as_u64()), (Some(1), Some(60)), "{rollout}");
    let v2 = mesh.measure(&cp, 200, |_| true).await;
    assert!((80..=160).contains(&v2), "still 60 % after the restart: {v2} of 200");

    // The CLI speaks the same API: a viewer is refused with exit 1, an operator completes it.
    let (code, _, err) = cli(&cp, &["rollout", "promote-full", "inventory-v2"], VIC).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("403") && err.contains("viewer"), "{err}");
    let (code, out, err) = cli(&cp, &["rollout", "promote-full", "inventory-v2"], ANN).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("inventory-v2: inventory completed") && out.contains("v2 100%"), "{out}");
    let v2 = mesh.measure(&cp, 100, |r| r["phase"] == "completed").await;
    assert_eq!(v2, 100, "a completed rollout sends everything to the canary");
    assert_eq!(act(&cp, "abort", Some(ANN)).await.0, 409, "an ended rollout takes no more actions");

    // Git stays the truth: the outcome is committed to the watched branch by ann via Trellis,
    // the checkout follows, the commit validates and is applied, and traffic does not move.
    let recorded = wait_rollout(&cp, |r| r["recorded"] == "completed").await;
    let head = repo.head();
    let git = git2::Repository::open(repo.path()).unwrap();
    let commit = git.find_commit(head).unwrap();
    assert_eq!(commit.author().name().ok(), Some("ann (via Trellis)"));
    assert!(commit.message().unwrap().starts_with("Rollout inventory-v2 completed"), "{:?}", commit.message());
    let file = std::fs::read_to_string(repo.path().join(INVENTORY_ROLLOUT)).unwrap();
    assert!(file.contains("status: completed"), "{file}");
    let (status, out) = trellis_in(repo.path(), &["validate", "--rev", "HEAD"]).await;
    assert_eq!(status, 0, "{out}");
    assert_eq!(recorded["phase"], "completed", "{recorded}");
    let overview = get_json(&cp, "/api/v1/overview").await;
    assert_eq!(overview["applied"]["sha"], head.to_string());
    assert_eq!(mesh.measure(&cp, 100, |_| true).await, 100, "no drift: the recorded outcome keeps v2");
    let audit = get_json(&cp, "/api/v1/audit").await;
    let event = audit["items"].as_array().unwrap().iter().find(|e| e["kind"] == "rollout.recorded").cloned();
    assert_eq!(event.expect("the commit is audited")["revision"], head.to_string());
    let ended = wait_rollout(&cp, |r| r["recorded"] == "completed").await;
    assert_eq!(ended["reason"], "completed by ann (recorded in git)", "{ended}");
    // The finished run stays in the history, read back from the audit log.
    let history = get_json(&cp, "/api/v1/rollouts/history").await;
    let run = &history["items"][0];
    assert_eq!(
        (run["name"].as_str(), run["outcome"].as_str(), run["by"].as_str()),
        (Some("inventory-v2"), Some("completed"), Some("ann")),
        "{history}"
    );
    assert_eq!(run["commit"], head.to_string(), "{history}");
    assert_eq!(run["operators"], serde_json::json!(["ann"]), "{history}");
    let weights: Vec<u64> = run["weights"].as_array().unwrap().iter().map(|w| w[1].as_u64().unwrap()).collect();
    assert_eq!(weights, [10, 60, 100], "the canary's weight over the run: {history}");

    // Taking the status out again is how a team re-runs the same canary.
    repo.commit(INVENTORY_ROLLOUT, &file.replace("status: completed\n", ""), "Run the canary again");
    let again = wait_rollout(&cp, |r| r["phase"] == "awaiting-promotion").await;
    assert_eq!((again["step"].as_u64(), again["canary_weight"].as_u64()), (Some(0), Some(10)), "{again}");
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_aborted_by_its_analyses_and_traffic_returns_to_stable() {
    let repo = PolicyRepo::demo();
    let db = tempfile::tempdir().unwrap();
    let cp = control_plane_recording(&repo, db.path(), None, RecordTo::Branch).await;
    let mesh = Mesh::start(&cp, 500).await;
    commit_rollout(&repo, &ROLLOUT.replace("weight: 10,", "weight: 50,"));
    wait_rollout(&cp, |r| r["canary_weight"] == 50).await;
    // Traffic keeps flowing while the analyses judge v2's 500s.
    let load = {
        let caller = mesh.caller.outbound;
        tokio::spawn(async move {
            loop {
                let _ = http_get(caller, "inventory", "/").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let aborted = wait_rollout(&cp, |r| r["phase"] == "aborted").await;
    load.abort();
    let reason = aborted["reason"].as_str().unwrap();
    assert!(reason.contains("success rate") && reason.contains("below 90%"), "{reason}");
    assert!(aborted["analyses"].as_array().unwrap().iter().any(|a| a["verdict"] == "fail"), "{aborted}");
    let v2 = mesh.measure(&cp, 200, |r| r["canary_weight"] == 0).await;
    assert_eq!(v2, 0, "after the abort every request goes to stable");
    let audit = get_json(&cp, "/api/v1/audit").await;
    assert!(audit["items"].as_array().unwrap().iter().any(|e| e["kind"] == "rollout.aborted"), "{audit}");

    // Recorded on a branch for a pull request; the watched branch is untouched until it merges.
    let before = repo.head();
    let started = Instant::now();
    let git = git2::Repository::open(repo.path()).unwrap();
    let branch = loop {
        if let Ok(b) = git.find_branch("trellis/inventory-v2-aborted", git2::BranchType::Local) {
            break b;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no outcome branch");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let commit = branch.get().peel_to_commit().unwrap();
    assert_eq!(commit.author().name().ok(), Some("trellis (via Trellis)"), "the analyses aborted it, not a person");
    assert!(commit.message().unwrap().contains("success rate"), "{:?}", commit.message());
    assert_eq!(commit.parent_id(0).unwrap(), before);
    assert_eq!(repo.head(), before);
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_canary_sends_marked_requests_to_the_canary_whatever_the_weight() {
    let repo = PolicyRepo::demo();
    let db = tempfile::tempdir().unwrap();
    let cp = control_plane(&repo, db.path(), None).await;
    let mesh = Mesh::start(&cp, 200).await;
    let header = "strategy: header\nheader: { name: x-canary, value: \"yes\" }\nsteps:";
    commit_rollout(&repo, &ROLLOUT.replace("steps:", header));
    let marked = mesh.measure_with(&cp, 100, &[("x-canary", "yes")], |r| r["header_routed"] == true).await;
    assert_eq!(marked, 100, "every marked request reaches the canary");
    let v2 = mesh.measure(&cp, 300, |_| true).await;
    assert!((10..=55).contains(&v2), "the rest follow the 10 % weight: {v2} of 300");

    // The Rollouts page's analyses count what reached the canary, each request once (they
    // tile time over complete seconds), and read as the topology's v2 does.
    let sent = (100 + v2) as u64;
    let started = Instant::now();
    loop {
        let rollout = get_json(&cp, "/api/v1/rollouts/inventory-v2").await;
        let analysed: u64 =
            rollout["analyses"].as_array().unwrap().iter().map(|a| a["requests"].as_u64().unwrap()).sum();
        assert!(analysed <= sent, "{analysed} analysed of {sent} sent: a second was judged twice");
        if analysed == sent {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{analysed} analysed of {sent} sent");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let topology = get_json(&cp, "/api/v1/topology?window=10m").await;
    let node = topology["nodes"].as_array().unwrap().iter().find(|n| n["service"] == "inventory").unwrap();
    let v2_seen = node["versions"].as_array().unwrap().iter().find(|v| v[0] == "v2").unwrap()[1]["requests"].clone();
    assert_eq!(v2_seen.as_u64(), Some(sent), "{topology}");

    // After an abort the header no longer leads anywhere but stable.
    assert_eq!(act(&cp, "abort", Some(ANN)).await.0, 200);
    let marked = mesh.measure_with(&cp, 50, &[("x-canary", "yes")], |r| r["header_routed"] == false).await;
    assert_eq!(marked, 0);

    // Guessing tokens at the login is limited per address, and every refusal is audited.
    let login = |token: &str| {
        let body = Bytes::from(serde_json::json!({ "token": token }).to_string());
        let headers = [("content-type", "application/json")];
        async move { http_request(http::Method::POST, cp.addr, "/api/v1/session", &headers, body).await.unwrap() }
    };
    for _ in 0..5 {
        assert_eq!(login("guess-guess-guess-guess").await.0, 401);
    }
    let (status, body) = login(ANN).await;
    assert_eq!(status, 429, "{body}");
    let started = Instant::now();
    let denied = loop {
        let denied = get_json(&cp, "/api/v1/audit?kind=auth.denied").await;
        if denied["items"].as_array().unwrap().len() >= 6 {
            break denied;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{denied}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(denied.to_string().contains("too many failed logins"), "{denied}");
    assert!(!denied.to_string().contains("guess-guess"), "tokens never reach the audit log");
    cp.shutdown().await;
}

// ---- harness -----------------------------------------------------------------------------

async fn control_plane(repo: &PolicyRepo, db: &Path, listen: Option<SocketAddr>) -> Running {
    control_plane_recording(repo, db, listen, RecordTo::Watched).await
}

async fn control_plane_recording(
    repo: &PolicyRepo,
    db: &Path,
    listen: Option<SocketAddr>,
    record_to: RecordTo,
) -> Running {
    trellis_server::serve::start(ServeConfig {
        listen: listen.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
        users: User::parse_list(&format!("ann:operator:{ANN},vic:viewer:{VIC}")).unwrap(),
        record_to,
        ..ServeConfig::local(
            PolicySource { poll_interval: Duration::from_millis(300), ..PolicySource::local(repo.path(), "main") },
            db,
        )
    })
    .await
    .unwrap()
}

fn commit_rollout(repo: &PolicyRepo, text: &str) {
    repo.commit(INVENTORY_ROLLOUT, text, "Canary inventory v2");
}

struct Mesh {
    caller: trellis_proxy::Running,
    addr_of_cp: SocketAddr,
    _proxies: Vec<trellis_proxy::Running>,
}

impl Mesh {
    /// inventory v1 (answers 200) and v2 (answers `v2_status`), and a caller, behind proxies.
    async fn start(cp: &Running, v2_status: u16) -> Mesh {
        let mut proxies = Vec::new();
        for (version, status) in [("v1", 200), ("v2", v2_status)] {
            let app = fixed_app(version, status).await;
            let settings = trellis_proxy::Settings::new("inventory", version, app, &cp.url());
            proxies.push(trellis_proxy::start(settings).await.unwrap());
        }
        let settings = trellis_proxy::Settings::new("storefront", "v1", fixed_app("storefront", 200).await, &cp.url());
        let caller = trellis_proxy::start(settings).await.unwrap();
        let started = Instant::now();
        while caller.shared.config.load().endpoints.get("inventory").is_none_or(|e| e.len() < 2) {
            assert!(started.elapsed() < Duration::from_secs(15), "the caller never learned both versions");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Mesh { caller, addr_of_cp: cp.addr, _proxies: proxies }
    }

    /// Waits until the rollout satisfies `ready` and the caller runs the control plane's
    /// newest config, then counts how many of `n` requests v2 answered.
    async fn measure(&self, cp: &Running, n: usize, ready: impl Fn(&serde_json::Value) -> bool) -> usize {
        self.measure_with(cp, n, &[], ready).await
    }

    /// As `measure`, sending `headers` with every request.
    async fn measure_with(
        &self,
        cp: &Running,
        n: usize,
        headers: &[(&str, &str)],
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> usize {
        wait_rollout(cp, ready).await;
        let started = Instant::now();
        loop {
            let pushed = cp.state.fleet.snapshot().version_for("storefront").unwrap_or_default().to_string();
            if self.caller.shared.config.load().version == pushed {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "the caller never applied {pushed}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut v2 = 0;
        let headers: Vec<(&str, &str)> = [("host", "inventory")].into_iter().chain(headers.iter().copied()).collect();
        for _ in 0..n {
            let (_, body) =
                http_request(http::Method::GET, self.caller.outbound, "/", &headers, Bytes::new()).await.unwrap();
            v2 += usize::from(body == "v2");
        }
        v2
    }
}

async fn wait_rollout(cp: &Running, ready: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, body) = http_get(cp.addr, "trellis", "/api/v1/rollouts/inventory-v2").await.unwrap();
        if status == 200 {
            let rollout: serde_json::Value = serde_json::from_str(&body).unwrap();
            if ready(&rollout) {
                return rollout;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "rollout never got there: {rollout}");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no rollout: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn act(cp: &Running, action: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let path = format!("/api/v1/rollouts/inventory-v2/{action}");
    let (status, body) = http_request(http::Method::POST, cp.addr, &path, &headers, Bytes::new()).await.unwrap();
    (status.as_u16(), body)
}

/// Runs the `trellis` binary in `dir`; returns exit code and stdout.
async fn trellis_in(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
    cmd.args(args).current_dir(dir);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the `trellis` binary against the control plane; returns exit code, stdout, stderr.
async fn cli(cp: &Running, args: &[&str], token: &str) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
    cmd.args(args).env("TRELLIS_SERVER", cp.url()).env("TRELLIS_TOKEN", token);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

async fn get_json(cp: &Running, path: &str) -> serde_json::Value {
    let (_, body) = http_get(cp.addr, "trellis", path).await.unwrap();
    serde_json::from_str(&body).unwrap()
}
