//! Replicas of the control plane on one Postgres, as real `trellis serve` processes: one leads
//! at a time, a killed leader is replaced within 5 s, operators' actions sent to any replica
//! reach the leader (a session made on one replica works on another), rollout state carries
//! over to the new leader, and the audit log stays one unbroken chain.

mod support {
    pub mod traffic;
}

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use support::traffic::{Load, wait_for};
use trellis_server::testing::{PgDatabase, PolicyRepo, http_request};

const ANN: &str = "ann-token-0123456789";

struct Replica {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Replica {
    fn start(repo: &Path, db: &str, dir: PathBuf) -> Replica {
        Replica::start_at(repo, db, dir, free_addr(), "127.0.0.1:0".parse().unwrap())
    }

    /// A replica serving on `addr`, its fleet's mTLS port on `fleet`.
    fn start_at(repo: &Path, db: &str, dir: PathBuf, addr: SocketAddr, fleet: SocketAddr) -> Replica {
        std::fs::create_dir_all(&dir).unwrap();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["serve", "--repo"])
            .arg(repo)
            .arg("--data-dir")
            .arg(&dir)
            .args(["--listen", &addr.to_string(), "--fleet-listen", &fleet.to_string()])
            .env("DATABASE_URL", db)
            .env("TRELLIS_TOKENS", format!("ann:operator:{ANN}"))
            .env("TRELLIS_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Replica { child, addr, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// The control plane as this replica sees it, when it answers.
    async fn view(&self) -> Option<serde_json::Value> {
        let (status, body) =
            http_request(http::Method::GET, self.addr, "/api/v1/fleet", &[], Default::default()).await.ok()?;
        let fleet: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200).then(|| fleet["control_plane"].clone())
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        let (status, body) =
            http_request(http::Method::POST, self.addr, path, headers, body.to_string().into()).await.unwrap();
        (status.as_u16(), body)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The leader every answering replica names, once they all agree and see `up` replicas.
async fn agreed_leader(replicas: &[&Replica], up: usize) -> (String, i64) {
    wait_for("the replicas agree on one leader", Duration::from_secs(60), || async {
        let mut leaders = Vec::new();
        for r in replicas {
            let v = r.view().await?;
            let running = v["replicas"].as_array()?.iter().filter(|r| r["up"] == true).count();
            if running != up {
                return None;
            }
            leaders.push((v["leader"].as_str()?.to_string(), v["term"].as_i64()?));
        }
        leaders.windows(2).all(|w| w[0] == w[1]).then(|| leaders[0].clone())
    })
    .await
}

async fn rollout_phase(r: &Replica) -> Option<(String, u64)> {
    let (status, body) =
        http_request(http::Method::GET, r.addr, "/api/v1/rollouts/inventory-v2", &[], Default::default()).await.ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| (v["phase"].as_str().unwrap_or_default().to_string(), v["step"].as_u64().unwrap_or(0)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_leader_and_a_killed_leader_is_replaced_within_5s() {
    let db = PgDatabase::create().await;
    let repo = PolicyRepo::demo();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas: Vec<Replica> =
        (0..3).map(|i| Replica::start(repo.path(), &db.url, dir.path().join(format!("r{i}")))).collect();
    let (leader, term) = agreed_leader(&replicas.iter().collect::<Vec<_>>(), 3).await;
    let ids: Vec<String> = {
        let v = replicas[0].view().await.unwrap();
        v["replicas"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids.len(), 3, "three replicas, each with an id of its own: {ids:?}");
    // Which process leads: the replica whose own id is the leader's.
    let mut leader_ix = None;
    for (i, r) in replicas.iter().enumerate() {
        if r.view().await.unwrap()["replica"] == leader.as_str() {
            leader_ix = Some(i);
        }
    }
    let leader_ix = leader_ix.expect("the leader is one of the three");
    let follower = &replicas[(leader_ix + 1) % 3];
    let other = &replicas[(leader_ix + 2) % 3];

    // The demo's canary waits at its first step for an operator. One pauses it through a
    // follower: the follower passes the request to the leader.
    wait_for("the canary waits on every replica", Duration::from_secs(30), || async {
        for r in [follower, other] {
            rollout_phase(r).await.filter(|(phase, _)| phase == "awaiting-promotion")?;
        }
        Some(())
    })
    .await;
    let bearer = format!("Bearer {ANN}");
    let (status, body) = follower.post("/api/v1/rollouts/inventory-v2/pause", &[("authorization", &bearer)], "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"phase\":\"paused\""), "{body}");
    wait_for("every replica shows the pause", Duration::from_secs(5), || async {
        for r in &replicas {
            rollout_phase(r).await.filter(|(phase, _)| phase == "paused")?;
        }
        Some(())
    })
    .await;
    // Refusals come back from the leader as they are: pausing twice is a conflict.
    let (status, body) = other.post("/api/v1/rollouts/inventory-v2/pause", &[("authorization", &bearer)], "").await;
    assert_eq!(status, 409, "{body}");

    // A session made on one replica changes things through another.
    let (cookie, csrf) = login_cookie(follower).await;
    let session = [("cookie", cookie.as_str()), ("x-csrf-token", csrf.as_str())];
    let (status, body) = other.post("/api/v1/rollouts/inventory-v2/resume", &session, "").await;
    assert_eq!(status, 200, "a session from another replica: {body}");
    let before = wait_for("every replica shows the resume", Duration::from_secs(5), || async {
        let mut seen = Vec::new();
        for r in &replicas {
            seen.push(rollout_phase(r).await.filter(|(phase, _)| phase != "paused")?);
        }
        seen.windows(2).all(|w| w[0] == w[1]).then(|| seen[0].clone())
    })
    .await;

    // kill -9 the leader: another takes over within 5 s, with a new term.
    let killed_at = Instant::now();
    let mut dead = replicas.remove(leader_ix);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let survivors: Vec<&Replica> = replicas.iter().collect();
    let (new_leader, new_term) = wait_for("a new leader", Duration::from_secs(10), || async {
        let v = survivors[0].view().await?;
        let l = v["leader"].as_str()?.to_string();
        (l != leader).then(|| (l, v["term"].as_i64().unwrap_or(0)))
    })
    .await;
    let takeover = killed_at.elapsed();
    assert!(takeover < Duration::from_secs(5), "a new leader after {takeover:?}:\n{}", dead.log());
    assert!(new_term > term, "a new term: {term} then {new_term}");
    assert!(survivors.iter().any(|r| r.log().contains("this replica leads")), "the new leader says so in its log");
    eprintln!("leader takeover after kill -9: {takeover:?} ({leader} -> {new_leader})");

    // The new leader carries the rollout on where the old one left it, and takes actions.
    for r in &survivors {
        assert_eq!(rollout_phase(r).await.unwrap(), before, "the rollout goes on from where it was");
    }
    let (status, body) =
        survivors[0].post("/api/v1/rollouts/inventory-v2/pause", &[("authorization", &bearer)], "").await;
    assert_eq!(status, 200, "{body}");

    // The dead replica shows as down; the metrics say who leads.
    let (_, metrics) =
        http_request(http::Method::GET, survivors[0].addr, "/metrics", &[], Default::default()).await.unwrap();
    assert!(metrics.contains("trellis_control_plane_lease_age_seconds"), "{metrics}");
    wait_for("exactly one replica says it leads", Duration::from_secs(5), || async {
        let mut leading = 0;
        for r in &survivors {
            let (_, m) = http_request(http::Method::GET, r.addr, "/metrics", &[], Default::default()).await.ok()?;
            leading +=
                u32::from(m.lines().any(|l| l.starts_with("trellis_control_plane_leader{") && l.ends_with(" 1")));
        }
        (leading == 1).then_some(())
    })
    .await;
    let view = survivors[0].view().await.unwrap();
    let down: Vec<&serde_json::Value> =
        view["replicas"].as_array().unwrap().iter().filter(|r| r["up"] == false).collect();
    assert!(down.len() <= 1, "{view}");

    // One audit chain, written by every replica, verifies.
    drop(replicas);
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["audit", "verify"])
        .env("DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    db.drop_it().await;
}

/// Logs in on `r`: the session cookie (name=value) and its CSRF token.
async fn login_cookie(r: &Replica) -> (String, String) {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = http::Request::post(format!("http://{}/api/v1/session", r.addr))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(format!("{{\"token\":\"{ANN}\"}}"))))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()[http::header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_string();
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let csrf = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["csrf"].as_str().unwrap().to_string();
    (cookie, csrf)
}

/// Ports free on each of `hosts` (loopback addresses standing in for hosts).
fn ports_free_on(hosts: &[std::net::Ipv4Addr]) -> (u16, u16) {
    loop {
        let a = free_addr().port();
        let f = free_addr().port();
        let free = |p: u16| hosts.iter().all(|h| std::net::TcpListener::bind((*h, p)).is_ok());
        if a != f && free(a) && free(f) {
            return (a, f);
        }
    }
}

/// Which replica each proxy is connected to, as `r` sees the fleet.
async fn placement(r: &Replica) -> Option<Vec<(String, String)>> {
    let (status, body) =
        http_request(http::Method::GET, r.addr, "/api/v1/fleet", &[], Default::default()).await.ok()?;
    let fleet: serde_json::Value = serde_json::from_str(&body).ok()?;
    let me = fleet["control_plane"]["replica"].as_str()?.to_string();
    let proxies = fleet["proxies"].as_array()?;
    (status == 200).then(|| {
        proxies
            .iter()
            .map(|p| {
                (p["id"].as_str().unwrap_or_default().to_string(), p["replica"].as_str().unwrap_or(&me).to_string())
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_fail_over_between_replicas_and_traffic_never_stops() {
    let db = PgDatabase::create().await;
    let repo = PolicyRepo::demo();
    let dir = tempfile::tempdir().unwrap();
    // Three "hosts" on loopback addresses, each replica on the same ports, as on real hosts.
    let hosts = [2, 3, 4].map(|n| std::net::Ipv4Addr::new(127, 0, 0, n));
    let (api, fleet) = ports_free_on(&hosts);
    let start = |i: usize| {
        let at = |port| SocketAddr::from((hosts[i], port));
        Replica::start_at(repo.path(), &db.url, dir.path().join(format!("r{i}")), at(api), at(fleet))
    };
    let mut replicas: Vec<Option<Replica>> = (0..3).map(|i| Some(start(i))).collect();
    let all: Vec<&Replica> = replicas.iter().flatten().collect();
    agreed_leader(&all, 3).await;

    // Every proxy lists all three; each gets its certificate from whichever it follows.
    let urls = hosts.map(|h| format!("http://{h}:{api}")).join(",");
    let token = |service: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["join-token", service, "--data-dir"])
            .arg(dir.path().join("r0"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let mut proxies = Vec::new();
    for (service, version) in [("inventory", "v1"), ("inventory", "v2")] {
        let app = trellis_server::testing::fixed_app("inventory", 200).await;
        let mut settings = trellis_proxy::Settings::new(service, version, app, &urls);
        settings.join_token = Some(trellis_proxy::env::Secret(token(service)));
        proxies.push(trellis_proxy::start(settings).await.unwrap());
    }
    let app = trellis_server::testing::fixed_app("storefront", 200).await;
    let mut settings = trellis_proxy::Settings::new("storefront", "v1", app, &urls);
    settings.join_token = Some(trellis_proxy::env::Secret(token("storefront")));
    let caller = trellis_proxy::start(settings).await.unwrap();
    wait_for("the caller knows both inventory proxies, with identities", Duration::from_secs(30), || async {
        let config = caller.shared.config.load();
        let inventory = config.endpoints.get("inventory")?;
        (inventory.len() == 2 && inventory.iter().all(|e| e.identity.is_some())).then_some(())
    })
    .await;

    let (traffic, load_started) = (Load::start(caller.outbound), Instant::now());

    // kill -9 the replica that holds the most proxies: they move to the others.
    let before = wait_for("every replica sees the three proxies", Duration::from_secs(10), || async {
        let mut seen = Vec::new();
        for r in replicas.iter().flatten() {
            seen.push(placement(r).await.filter(|p| p.len() == 3)?);
        }
        Some(seen.swap_remove(0))
    })
    .await;
    let victim_id = {
        let mut count: std::collections::BTreeMap<&str, usize> = Default::default();
        for (_, r) in &before {
            *count.entry(r).or_default() += 1;
        }
        count.into_iter().max_by_key(|(_, n)| *n).unwrap().0.to_string()
    };
    let mut victim = None;
    for (i, r) in replicas.iter().enumerate() {
        let r = r.as_ref().unwrap();
        let view = r.view().await.unwrap_or_else(|| panic!("replica {i} does not answer:\n{}", r.log()));
        if view["replica"] == victim_id.as_str() {
            victim = Some(i);
        }
    }
    let victim = victim.unwrap();
    let moved: Vec<String> = before.iter().filter(|(_, r)| *r == victim_id).map(|(p, _)| p.clone()).collect();
    let killed_at = Instant::now();
    let mut dead = replicas[victim].take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let witness = replicas.iter().flatten().next().unwrap();
    wait_for("the dead replica's proxies are connected elsewhere", Duration::from_secs(15), || async {
        let now = placement(witness).await?;
        (now.len() == 3 && now.iter().all(|(_, r)| *r != victim_id)).then_some(())
    })
    .await;
    eprintln!("{} proxies of a killed replica connected elsewhere after {:?}", moved.len(), killed_at.elapsed());

    // A rolling restart of the other two, one at a time, then the killed one comes back.
    for i in 0..3 {
        if let Some(mut r) = replicas[i].take() {
            let pid = r.child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
            r.child.wait().unwrap();
        }
        replicas[i] = Some(start(i));
        let all: Vec<&Replica> = replicas.iter().flatten().collect();
        agreed_leader(&all, all.len()).await;
    }
    let all: Vec<&Replica> = replicas.iter().flatten().collect();
    let last = std::sync::Mutex::new(String::new());
    let synced = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut done = true;
            let mut bodies = Vec::new();
            for r in &all {
                let (_, body) =
                    http_request(http::Method::GET, r.addr, "/api/v1/fleet", &[], Default::default()).await.unwrap();
                let fleet: serde_json::Value = serde_json::from_str(&body).unwrap();
                done &= fleet["total"] == 3 && fleet["synced"] == 3;
                bodies.push(format!(
                    "{body}\n{}",
                    r.log()
                        .lines()
                        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
            *last.lock().unwrap() = bodies.join("\n\n");
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let versions: Vec<String> =
        proxies.iter().chain([&caller]).map(|p| p.shared.config.load().version.clone()).collect();
    assert!(synced.await.is_ok(), "every replica sees every proxy synced ({versions:?}): {}", last.lock().unwrap());

    let outcome = traffic.stop().await;
    let load_s = load_started.elapsed().as_secs_f64();
    let success = outcome.success_percent();
    let (sent, failed, why) = (outcome.sent, outcome.failed, outcome.why);
    eprintln!(
        "{sent} requests through a replica killed and a rolling restart, {failed} failed ({success:.3} % succeeded)"
    );
    assert!(sent > 100, "the load ran: {sent}");
    assert_eq!(failed, 0, "no request failed: {why:?}");

    // Every replica counts the whole fleet's traffic, whichever replica heard it reported.
    let all: Vec<&Replica> = replicas.iter().flatten().collect();
    let counted = wait_for("every replica counts the same traffic", Duration::from_secs(20), || async {
        let mut counts = Vec::new();
        for r in &all {
            let (_, body) =
                http_request(http::Method::GET, r.addr, "/api/v1/topology?window=10m", &[], Default::default())
                    .await
                    .ok()?;
            let topology: serde_json::Value = serde_json::from_str(&body).ok()?;
            let edges = topology["edges"].as_array()?;
            let edge = edges.iter().find(|e| e["from"] == "storefront" && e["to"] == "inventory")?;
            counts.push(edge["golden"]["requests"].as_u64()?);
        }
        // A replica killed with -9 takes the reports it had not handed on yet (at most the
        // last two or three seconds of its proxies') with it; everything else is counted, and
        // the same everywhere.
        let lost = sent.saturating_sub(counts[0]) as f64;
        (counts.windows(2).all(|w| w[0] == w[1]) && lost <= sent as f64 * 4.0 / load_s).then_some(counts[0])
    })
    .await;
    eprintln!("each replica counted {counted} of the {sent} requests");
    for p in proxies {
        p.shutdown().await;
    }
    caller.shutdown().await;
    drop(replicas);
    db.drop_it().await;
}
