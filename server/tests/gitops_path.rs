//! The walking skeleton end to end: a commit to a real git repository changes the split of
//! real requests through real proxies; a broken commit changes nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use trellis_server::demo::app::{self, AppArgs};
use trellis_server::gitops::PolicySource;
use trellis_server::serve::{Running, ServeConfig};
use trellis_server::testing::{PolicyRepo, http_get, http_request};

struct Mesh {
    repo: PolicyRepo,
    cp: Running,
    caller: trellis_proxy::Running,
    _proxies: Vec<trellis_proxy::Running>,
    _db: tempfile::TempDir,
}

async fn start_app(service: &str, version: &str) -> SocketAddr {
    let args = AppArgs {
        service: service.into(),
        version: version.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        outbound: None,
    };
    app::start(args).await.unwrap().0
}

async fn start_proxy(service: &str, version: &str, app: SocketAddr, cp: &Running) -> trellis_proxy::Running {
    trellis_proxy::start(trellis_proxy::Settings::new(service, version, app, &cp.url())).await.unwrap()
}

async fn mesh() -> Mesh {
    let repo = PolicyRepo::demo();
    let db = tempfile::tempdir().unwrap();
    let cp = trellis_server::serve::start(ServeConfig::local(
        PolicySource { poll_interval: Duration::from_millis(500), ..PolicySource::local(repo.path(), "main") },
        db.path(),
    ))
    .await
    .unwrap();
    let mut proxies = Vec::new();
    for version in ["v1", "v2"] {
        let app = start_app("inventory", version).await;
        proxies.push(start_proxy("inventory", version, app, &cp).await);
    }
    let caller_app = start_app("storefront", "v1").await;
    let caller = start_proxy("storefront", "v1", caller_app, &cp).await;
    let mesh = Mesh { repo, cp, caller, _proxies: proxies, _db: db };
    // Ready when the caller knows both inventory versions at the head revision.
    let head = mesh.repo.head().to_string();
    wait_for("the caller to know both inventory versions", || {
        let c = mesh.caller.shared.config.load();
        c.revision == head && c.endpoints.get("inventory").is_some_and(|e| e.len() == 2)
    })
    .await;
    mesh
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(15), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// Sends `n` requests for inventory through the caller's outbound listener and counts the
/// versions that answered.
async fn split(mesh: &Mesh, n: usize) -> (usize, usize) {
    let (mut v1, mut v2) = (0, 0);
    for _ in 0..n {
        let (status, body) = http_get(mesh.caller.outbound, "inventory", "/stock").await.unwrap();
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        match v["version"].as_str() {
            Some("v1") => v1 += 1,
            Some("v2") => v2 += 1,
            other => panic!("unexpected version {other:?}"),
        }
    }
    (v1, v2)
}

/// What the caller proxy counted for inventory/v2, from its Prometheus endpoint.
async fn counted_v2(mesh: &Mesh) -> u64 {
    let (_, text) = http_get(mesh.caller.admin, "admin", "/metrics").await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("trellis_proxy_requests_total{"))
        .filter(|l| {
            l.contains("direction=\"outbound\"")
                && l.contains("dst_service=\"inventory\"")
                && l.contains("dst_version=\"v2\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_changes_the_split_of_real_traffic_and_a_broken_one_changes_nothing() {
    let mesh = mesh().await;
    // The seed's canary of v2 waits at its first gate, 10 %: Binomial(300, 0.1) is 30 ± 5.2.
    let (_, seeded) = split(&mesh, 300).await;
    let seeded = seeded as u64;
    assert!((10..=55).contains(&seeded), "the canary's 10 % reaches v2: {seeded} of 300");
    assert_eq!(counted_v2(&mesh).await, seeded);

    // 50/50: noticed, validated, compiled, pushed, and visible in traffic.
    let committed = Instant::now();
    let half = mesh.repo.set_inventory_split(50, 50, "Send half of inventory to v2");
    let sha = half.to_string();
    wait_for("the caller to apply the 50/50 revision", || mesh.caller.shared.config.load().revision == sha).await;
    println!("commit to applied at the caller proxy: {:?}", committed.elapsed());
    let (v1, v2) = split(&mesh, 400).await;
    assert!((120..=280).contains(&v2), "expected about half on v2, got v1={v1} v2={v2}");
    assert_eq!(counted_v2(&mesh).await, seeded + v2 as u64, "the proxy counts what the apps saw");

    // Broken YAML: rejected with a located error; the proxies keep the 50/50 config.
    let version_before = mesh.caller.shared.config.load().version.clone();
    let broken =
        mesh.repo.commit("routes/inventory.yaml", "kind: Route\nname: inventory\nrules: [\n", "Oops").to_string();
    let api = mesh.cp.addr;
    let mut rejected = None;
    for _ in 0..150 {
        let (status, body) = http_get(api, "trellis", &format!("/api/v1/revisions/{broken}")).await.unwrap();
        if status == 200 {
            rejected = Some(serde_json::from_str::<serde_json::Value>(&body).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rejected = rejected.expect("the broken commit is recorded");
    assert_eq!(rejected["outcome"], "rejected");
    let error = &rejected["errors"][0];
    assert_eq!(error["code"], "TR0001");
    assert_eq!(error["file"], "routes/inventory.yaml");
    assert!(error["line"].as_u64().unwrap() >= 3, "{error}");
    assert_eq!(mesh.caller.shared.config.load().version, version_before, "nothing reached the proxies");
    let (_, v2) = split(&mesh, 200).await;
    assert!((50..=150).contains(&v2), "the 50/50 split stays in force, got v2={v2}");

    // The overview shows the applied revision, the rejection and the new weights.
    let (_, body) = http_get(api, "trellis", "/api/v1/overview").await.unwrap();
    let overview: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(overview["applied"]["sha"], sha);
    assert_eq!(overview["latest"]["sha"], broken);
    let inventory = overview["services"].as_array().unwrap().iter().find(|s| s["name"] == "inventory").unwrap();
    assert_eq!(inventory["versions"][1]["weight"], 50);
    // The audit log has the sync outcome of the applied revision.
    let started = Instant::now();
    loop {
        let (_, body) =
            http_get(api, "trellis", &format!("/api/v1/audit?kind=revision.synced&revision={sha}")).await.unwrap();
        let audit: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(e) = audit["items"].as_array().unwrap().first() {
            assert!(e["summary"].as_str().unwrap().contains("3 of 3 proxies run it"), "{e}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no revision.synced event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    mesh.cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_keep_serving_their_last_config_without_the_control_plane() {
    let Mesh { cp, caller, _proxies, repo: _repo, _db } = mesh().await;
    let before = caller.shared.config.load().version.clone();
    // Stop the control plane; the data path must not notice.
    let cp_addr = cp.addr;
    cp.shutdown().await;
    assert!(http_get(cp_addr, "trellis", "/api/v1/overview").await.is_err(), "control plane is down");
    let (status, _) = http_get(caller.outbound, "inventory", "/stock").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(caller.shared.config.load().version, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_telemetry_matches_what_the_client_sent() {
    let mesh = mesh().await;
    // A name no service has is the caller's mistake, not traffic: it must not cost the proxy
    // its reports (the control plane refuses a report with a series naming no service).
    assert_eq!(http_get(mesh.caller.outbound, "nosuch", "/").await.unwrap().0, 404);
    for _ in 0..40 {
        assert_eq!(http_get(mesh.caller.outbound, "inventory", "/stock").await.unwrap().0, 200);
    }
    for _ in 0..10 {
        assert_eq!(http_get(mesh.caller.outbound, "inventory", "/fail").await.unwrap().0, 500);
    }
    // Proxies push every two seconds; wait for both sides of the edge to arrive.
    let start = Instant::now();
    let topology = loop {
        let (_, body) = http_get(mesh.cp.addr, "trellis", "/api/v1/topology?window=10m").await.unwrap();
        let t: serde_json::Value = serde_json::from_str(&body).unwrap();
        let edge_requests = t["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["from"] == "storefront" && e["to"] == "inventory")
            .map(|e| e["golden"]["requests"].as_u64().unwrap());
        let node_requests = t["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["service"] == "inventory")
            .map(|n| n["golden"]["requests"].as_u64().unwrap());
        if edge_requests == Some(50) && node_requests == Some(50) {
            break t;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "telemetry never added up: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let edge = topology["edges"].as_array().unwrap().iter().find(|e| e["to"] == "inventory").unwrap();
    assert_eq!(edge["golden"]["success_rate"].as_f64(), Some(0.8), "40 of 50 succeeded");
    assert!((edge["golden"]["rps"].as_f64().unwrap() - 50.0 / 600.0).abs() < 1e-9);
    assert!(edge["golden"]["p99_ms"].as_f64().is_some());
    // The traffic page's series add up to the same requests, once the thirty-second steps
    // that hold them have ended (a step still filling is not drawn); its figures in numbers are
    // the last complete minute's, and agree with the topology's over that minute.
    let start = Instant::now();
    let inventory = loop {
        let (_, body) = http_get(mesh.cp.addr, "trellis", "/api/v1/traffic").await.unwrap();
        let traffic: serde_json::Value = serde_json::from_str(&body).unwrap();
        let inventory =
            traffic["services"].as_array().unwrap().iter().find(|s| s["service"] == "inventory").unwrap().clone();
        // Summed over versions: the seed's canary sends some of them to v2.
        let total: u64 = inventory["versions"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|v| v["points"].as_array().unwrap())
            .map(|p| p["golden"]["requests"].as_u64().unwrap())
            .sum();
        if total == 50 {
            break inventory;
        }
        assert!(total < 50 && start.elapsed() < Duration::from_secs(45), "{total} charted: {inventory}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (_, body) = http_get(mesh.cp.addr, "trellis", "/api/v1/topology?window=1m").await.unwrap();
    let minute: serde_json::Value = serde_json::from_str(&body).unwrap();
    let node = minute["nodes"].as_array().unwrap().iter().find(|n| n["service"] == "inventory").unwrap();
    assert_eq!(inventory["golden"], node["golden"], "the traffic page's figure is the topology's over the same minute");
    let route = &inventory["routes"][0];
    assert_eq!(route["route"], "(all requests)", "{inventory}");
    assert_eq!(route["golden"]["requests"], 50);
    assert_eq!(route["golden"]["success_rate"].as_f64(), Some(0.8));
    let charted: u64 =
        route["points"].as_array().unwrap().iter().map(|p| p["golden"]["requests"].as_u64().unwrap()).sum();
    assert_eq!(charted, 50, "the route's fifteen-minute chart holds the same requests");
    // Garbage is refused with a reason and counted, never aggregated.
    let bad = r#"{"proxy_id":"nobody","seq":1,"series":[]}"#;
    let (status, body) = http_request(
        http::Method::POST,
        mesh.cp.addr,
        "/fleet/v1/telemetry",
        &[("content-type", "application/json")],
        bad.into(),
    )
    .await
    .unwrap();
    assert_eq!(status, 404, "{body}");
    let (status, _) =
        http_request(http::Method::POST, mesh.cp.addr, "/fleet/v1/telemetry", &[], "{".into()).await.unwrap();
    assert_eq!(status, 400);
    let (_, metrics) = http_get(mesh.cp.addr, "trellis", "/metrics").await.unwrap();
    assert!(metrics.contains("trellis_telemetry_rejected_total{reason=\"unknown_proxy\"} 1"), "{metrics}");
    assert!(metrics.contains("trellis_telemetry_rejected_total{reason=\"unreadable\"} 1"), "{metrics}");
    assert!(metrics.contains("trellis_fleet_proxies 3"), "{metrics}");
    assert!(!metrics.contains("reason=\"invalid\""), "no proxy's report was refused: {metrics}");
    mesh.cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_restart_under_load_fails_no_request() {
    let Mesh { repo, cp, caller, _proxies, _db } = mesh().await;
    let addr = cp.addr;
    let outbound = caller.outbound;
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let stop = stop.clone();
        async move {
            let (mut sent, mut failed) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                match http_get(outbound, "inventory", "/stock").await {
                    Ok((status, _)) if status == 200 => {}
                    _ => failed += 1,
                }
                sent += 1;
            }
            (sent, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = caller.shared.config.load().version.clone();
    cp.shutdown().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let cp = trellis_server::serve::start(ServeConfig {
        listen: addr,
        ..ServeConfig::local(
            PolicySource { poll_interval: Duration::from_millis(500), ..PolicySource::local(repo.path(), "main") },
            _db.path(),
        )
    })
    .await
    .unwrap();
    // Resynchronised: every proxy reconnected and ACKed the new control plane's config.
    let start = Instant::now();
    loop {
        let (_, body) = http_get(cp.addr, "trellis", "/api/v1/fleet").await.unwrap();
        let fleet: serde_json::Value = serde_json::from_str(&body).unwrap();
        if fleet["total"] == 3 && fleet["synced"] == 3 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "fleet never resynced: {fleet}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same revision and endpoints: the same version, so nothing changed for the proxies.
    assert_eq!(caller.shared.config.load().version, before, "a restart is no config change");
    let inventory = caller.shared.config.load().endpoints.get("inventory").map_or(0, Vec::len);
    assert_eq!(inventory, 2, "the resynced config lists every inventory endpoint");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = load.await.unwrap();
    assert!(sent > 100, "only {sent} requests sent");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed across the restart");
    cp.shutdown().await;
}

/// Runs `trellis check` against `server`; returns exit code and stdout.
async fn trellis_check(server: &str, json: bool) -> (i32, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
    cmd.args(["check", "--server", server]);
    if json {
        cmd.args(["--output", "json"]);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trellis_check_passes_on_a_healthy_mesh_and_says_what_is_wrong_otherwise() {
    let mesh = mesh().await;
    let url = mesh.cp.url();
    // Right after start the proxies may still be acknowledging: that is a warning, then √.
    let started = Instant::now();
    let out = loop {
        let (code, out) = trellis_check(&url, false).await;
        assert_eq!(code, 0, "{out}");
        if out.contains("√ every proxy runs the applied revision") || started.elapsed() > Duration::from_secs(10) {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for line in [
        "√ a revision is applied",
        "√ git is reachable",
        "√ every proxy runs the applied revision: 3 of 3",
        "√ the database takes writes",
        "√ audit events are stored",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // A broken commit is a warning (the last good revision stays); JSON says the same.
    mesh.repo.commit("routes/inventory.yaml", "kind: Route\nname: [", "Break it");
    let started = Instant::now();
    let report = loop {
        let (code, out) = trellis_check(&url, true).await;
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let newest =
            report["checks"].as_array().unwrap().iter().find(|c| c["name"] == "the newest commit is valid").cloned();
        if newest.as_ref().is_some_and(|c| c["status"] == "warn") {
            assert_eq!(code, 0, "warnings do not fail: {out}");
            break report;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(report["ok"], true);
    mesh.cp.shutdown().await;

    let (code, out) = trellis_check(&url, false).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("× the API answers: cannot reach"), "{out}");
}

/// Waits until the control plane has judged `sha`; its revision as the API shows it.
async fn judged(cp: &Running, sha: &str) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, body) = http_get(cp.addr, "trellis", &format!("/api/v1/revisions/{sha}")).await.unwrap();
        if status == 200 {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{sha} never judged: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `trellis revert REV` against the control plane with `token`: exit code, stdout, stderr.
async fn trellis_revert(cp: &Running, rev: &str, token: &str) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
    cmd.args(["revert", rev]).env("TRELLIS_SERVER", cp.url()).env("TRELLIS_TOKEN", token);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reverts_to_an_earlier_revision_and_traffic_follows_the_commit() {
    const ANN: &str = "ann-operator-token-0001";
    const VIC: &str = "vic-viewer-token-00001";
    let repo = PolicyRepo::demo();
    let db = tempfile::tempdir().unwrap();
    let cp = trellis_server::serve::start(ServeConfig {
        users: trellis_server::auth::User::parse_list(&format!("ann:operator:{ANN},vic:viewer:{VIC}")).unwrap(),
        record_to: trellis_server::gitops::outcome::RecordTo::Watched,
        ..ServeConfig::local(
            PolicySource { poll_interval: Duration::from_millis(300), ..PolicySource::local(repo.path(), "main") },
            db.path(),
        )
    })
    .await
    .unwrap();
    let mut proxies = Vec::new();
    for version in ["v1", "v2"] {
        proxies.push(start_proxy("inventory", version, start_app("inventory", version).await, &cp).await);
    }
    let caller = start_proxy("storefront", "v1", start_app("storefront", "v1").await, &cp).await;
    let mesh = Mesh { repo, cp, caller, _proxies: proxies, _db: db };

    // History: half to v2, then nearly all back to v1, then a broken commit.
    let half = mesh.repo.set_inventory_split(50, 50, "Send half of inventory to v2").to_string();
    judged(&mesh.cp, &half).await;
    let tenth = mesh.repo.set_inventory_split(90, 10, "Only a tenth to v2").to_string();
    judged(&mesh.cp, &tenth).await;
    let broken = mesh.repo.commit("routes/inventory.yaml", "kind: Route\nname: [", "Oops").to_string();
    assert_eq!(judged(&mesh.cp, &broken).await["outcome"], "rejected");

    // Any two compare: trellis diff's words and the file side by side, by SHA prefix too.
    let path = format!("/api/v1/revisions/{}/compare/{}", &tenth[..7], &half[..10]);
    let (status, body) = http_get(mesh.cp.addr, "trellis", &path).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let compared: serde_json::Value = serde_json::from_str(&body).unwrap();
    let words = compared["changes"].to_string();
    assert!(words.contains("inventory (all requests): 40% moves from v1 to v2"), "{words}");
    let file = &compared["files"][0];
    assert_eq!((file["path"].as_str(), file["status"].as_str()), (Some("routes/inventory.yaml"), Some("modified")));
    let changed: Vec<&serde_json::Value> =
        file["rows"].as_array().unwrap().iter().filter(|r| r["kind"] == "changed").collect();
    assert_eq!(changed.len(), 2, "both weights changed: {file}");
    assert_eq!(
        (changed[0]["old_text"].as_str(), changed[0]["new_text"].as_str()),
        (Some("        weight: 90"), Some("        weight: 50"))
    );
    let (status, _) =
        http_get(mesh.cp.addr, "trellis", &format!("/api/v1/revisions/{half}/compare/{broken}")).await.unwrap();
    assert_eq!(status, 200, "a rejected revision's files compare too");
    let (status, body) = http_get(mesh.cp.addr, "trellis", "/api/v1/revisions/zz/compare/ab12").await.unwrap();
    assert_eq!(status, 400, "{body}");

    // A viewer may not revert; nor may anyone to a rejected revision. Both say why.
    let (code, _, err) = trellis_revert(&mesh.cp, &half[..8], VIC).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("403") && err.contains("viewer"), "{err}");
    let (code, _, err) = trellis_revert(&mesh.cp, &broken, ANN).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("409") && err.contains("was rejected"), "{err}");
    assert_eq!(mesh.repo.head().to_string(), broken, "refusals commit nothing");

    // The operator's revert is a commit on the watched branch holding the old tree; the
    // control plane applies it like any commit, and real traffic follows.
    let (code, out, err) = trellis_revert(&mesh.cp, &half[..8], ANN).await;
    assert_eq!(code, 0, "{err}");
    let head = mesh.repo.head();
    assert!(out.contains(&format!("commit {} on main", &head.to_string()[..8])), "{out}");
    let git = git2::Repository::open(mesh.repo.path()).unwrap();
    let commit = git.find_commit(head).unwrap();
    assert_eq!(commit.author().name().ok(), Some("ann (via Trellis)"));
    assert_eq!(commit.parent_id(0).unwrap().to_string(), broken);
    assert_eq!(commit.tree_id(), git.find_commit(git2::Oid::from_str(&half).unwrap()).unwrap().tree_id());
    let sha = head.to_string();
    wait_for("the caller to apply the revert", || mesh.caller.shared.config.load().revision == sha).await;
    let (_, v2) = split(&mesh, 400).await;
    assert!((120..=280).contains(&v2), "half to v2 again: {v2} of 400");

    // Audited with the actor; the viewer's refusal too.
    let (_, body) = http_get(mesh.cp.addr, "trellis", "/api/v1/audit?kind=revision.reverted").await.unwrap();
    let audit: serde_json::Value = serde_json::from_str(&body).unwrap();
    let event = &audit["items"][0];
    assert_eq!((event["actor"].as_str(), event["revision"].as_str()), (Some("ann"), Some(half.as_str())), "{audit}");
    assert_eq!(event["detail"]["commit"], sha);
    let (_, body) = http_get(mesh.cp.addr, "trellis", "/api/v1/audit?kind=auth.denied").await.unwrap();
    assert!(body.contains("vic is a viewer"), "{body}");
    mesh.cp.shutdown().await;
}
