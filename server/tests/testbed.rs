//! The control plane and the mesh across hosts: Linux network namespaces on a bridge
//! (`scripts/testbed.sh`), addressed from 198.18.0.0/15, with three replicas on hosts of their
//! own, a Postgres cluster on the bridge, and an application with its `trellis-proxy` on each
//! other host. One bed for the whole file; every scenario runs with load going through it:
//! a commit everywhere, an application host and a replica's host cut off and back, the leader
//! killed (kill -9), and every replica restarted in turn.
//! Where namespaces cannot be made the test fails and says why: it never skips.

mod support {
    pub mod traffic;
}

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::traffic::{Load, wait_for};
use trellis_server::testing::{PgCluster, PolicyRepo, http_request};

const TOKENS: &str = "ann:operator:ann-token-0123456789";
const REPLICAS: [&str; 3] = ["cp0", "cp1", "cp2"];
/// The hosts of the mesh: h0 calls inventory, which runs on h1 and h2.
const HOSTS: [(&str, &str, &str); 3] =
    [("h0", "storefront", "v1"), ("h1", "inventory", "v1"), ("h2", "inventory", "v1")];
/// Inventory with a tight per-try timeout and retries: a request that meets a host cut off
/// is tried again elsewhere within the request's time.
const ROUTE: &str = "kind: Route\nname: inventory\nservice: inventory\nrules:\n  - backends: [{ version: v1, weight: 100 }]\n    timeouts: { request: 5s, perTry: 400ms }\n    retries: { attempts: 3, on: [gateway-error, connect-failure, reset] }\n";

struct Bed {
    name: String,
    net: String,
    hosts: Vec<&'static str>,
    children: Vec<Process>,
    logs: PathBuf,
}

/// A program the bed runs on one of its hosts, kept so that it can be stopped and run again.
struct Process {
    name: String,
    command: Vec<String>,
    env: Vec<(String, String)>,
    child: Child,
}

impl Bed {
    fn script(args: &[&str]) -> Result<(), String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/testbed.sh");
        let out = Command::new(&script).args(args).output().map_err(|e| format!("{}: {e}", script.display()))?;
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }

    fn up(logs: PathBuf) -> Bed {
        let n = 20 + fastrand::u8(0..200);
        let (name, net) = (format!("tb{n}"), format!("198.18.{n}"));
        let hosts: Vec<&'static str> = REPLICAS.iter().copied().chain(HOSTS.iter().map(|h| h.0)).collect();
        let mut args = vec!["up", name.as_str(), net.as_str()];
        args.extend(hosts.iter().copied());
        if let Err(why) = Bed::script(&args) {
            let mut down = vec!["down", name.as_str()];
            down.extend(hosts.iter().copied());
            let _ = Bed::script(&down);
            panic!("cannot make the test bed of network namespaces (this test needs root and iproute2): {why}");
        }
        Bed { name, net, hosts, children: Vec::new(), logs }
    }

    /// The address of host `host` (in the order the bed was made).
    fn ip(&self, host: &str) -> Ipv4Addr {
        let i = self.hosts.iter().position(|h| *h == host).expect("a host of the bed");
        format!("{}.{}", self.net, 10 + i).parse().unwrap()
    }

    fn bridge_ip(&self) -> Ipv4Addr {
        format!("{}.1", self.net).parse().unwrap()
    }

    /// Runs `program` on `host`, its output in `<logs>/<name>.log`.
    fn run(&mut self, host: &str, name: &str, program: &Path, args: &[&str], env: &[(&str, String)]) {
        let netns = format!("{}-{host}", self.name);
        let mut command = vec!["netns".to_string(), "exec".into(), netns, program.display().to_string()];
        command.extend(args.iter().map(|a| a.to_string()));
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let child = self.spawn(name, &command, &env);
        self.children.push(Process { name: name.to_string(), command, env, child });
    }

    /// `ip netns exec` replaces itself with the program: the child is the program.
    fn spawn(&self, name: &str, command: &[String], env: &[(String, String)]) -> Child {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.logs.join(format!("{name}.log"))).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(command).envs(env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap()
    }

    /// Sends `signal` (KILL, TERM) to the program `name` and waits for it to end.
    fn stop(&mut self, name: &str, signal: &str) {
        let p = self.children.iter_mut().find(|p| p.name == name).expect("a program of the bed");
        let pid = p.child.id().to_string();
        assert!(Command::new("kill").args(["-s", signal, &pid]).status().unwrap().success());
        p.child.wait().unwrap();
    }

    /// Runs the program `name` again, as it was run first.
    fn restart(&mut self, name: &str) {
        let i = self.children.iter().position(|p| p.name == name).expect("a program of the bed");
        let child = self.spawn(name, &self.children[i].command, &self.children[i].env);
        self.children[i].child = child;
    }

    fn cut(&self, host: &str) {
        Bed::script(&["cut", &self.name, host]).unwrap();
    }

    fn mend(&self, host: &str) {
        Bed::script(&["mend", &self.name, host]).unwrap();
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for p in &mut self.children {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        let mut down = vec!["down", self.name.as_str()];
        down.extend(self.hosts.iter().copied());
        let _ = Bed::script(&down);
    }
}

async fn get_json(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    let (status, body) = http_request(http::Method::GET, addr, path, &[], Default::default()).await.ok()?;
    if status != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_across_hosts_follows_commits_and_survives_hosts_cut_off() {
    let trellis = PathBuf::from(env!("CARGO_BIN_EXE_trellis"));
    let proxy = trellis.with_file_name("trellis-proxy");
    assert!(proxy.exists(), "{} is missing: build it first (cargo build --bins)", proxy.display());
    let logs = tempfile::tempdir().unwrap();
    let mut bed = Bed::up(logs.path().to_path_buf());
    let pg_dir = tempfile::tempdir().unwrap();
    let pg = PgCluster::start(pg_dir.path(), bed.bridge_ip().into()).unwrap();
    let repo = PolicyRepo::demo();
    let data = tempfile::tempdir().unwrap();
    let repo_path = repo.path().display().to_string();

    for cp in REPLICAS {
        let dir = data.path().join(cp).display().to_string();
        let (listen, fleet) = (api(&bed, cp).to_string(), SocketAddr::from((bed.ip(cp), 8443)).to_string());
        let args = ["serve", "--repo", &repo_path, "--data-dir", &dir, "--listen", &listen, "--fleet-listen", &fleet];
        let env =
            [("DATABASE_URL", pg.url()), ("TRELLIS_TOKENS", TOKENS.to_string()), ("TRELLIS_LOG", "info".to_string())];
        bed.run(cp, cp, &trellis, &args, &env);
    }
    for cp in REPLICAS {
        let addr = api(&bed, cp);
        let answered = tokio::time::timeout(Duration::from_secs(60), async {
            while get_json(addr, "/api/v1/fleet").await.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        assert!(answered.await.is_ok(), "replica {cp} does not answer:\n{}", bed.log(cp));
    }
    let urls = REPLICAS.map(|cp| format!("http://{}", api(&bed, cp))).join(",");
    for (host, service, version) in HOSTS {
        let token = Command::new(&trellis)
            .args(["join-token", service, "--data-dir"])
            .arg(data.path().join("cp0"))
            .output()
            .unwrap();
        let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
        let app_args = ["demo-app", "--service", service, "--version", version, "--listen", "127.0.0.1:9000"];
        bed.run(host, &format!("{host}-app"), &trellis, &app_args, &[]);
        let ip = bed.ip(host);
        let outbound = if host == "h0" { format!("{ip}:4140") } else { "127.0.0.1:4140".into() };
        let env = [
            ("TRELLIS_SERVICE", service.to_string()),
            ("TRELLIS_VERSION", version.to_string()),
            ("TRELLIS_PROXY_ID", host.to_string()),
            ("TRELLIS_APP_ADDR", "127.0.0.1:9000".to_string()),
            ("TRELLIS_OUTBOUND_ADDR", outbound),
            ("TRELLIS_INBOUND_ADDR", format!("{ip}:4143")),
            ("TRELLIS_ADMIN_ADDR", format!("{ip}:4191")),
            ("TRELLIS_CONTROL_PLANE_URL", urls.clone()),
            ("TRELLIS_JOIN_TOKEN", token),
            ("TRELLIS_LOG", "info".to_string()),
        ];
        bed.run(host, host, &proxy, &[], &env);
    }
    let caller = SocketAddr::from((bed.ip("h0"), 4140));
    let admin = |bed: &Bed, host: &str| SocketAddr::from((bed.ip(host), 4191));
    let h0_admin = admin(&bed, "h0");
    wait_for("the caller knows both inventory hosts", Duration::from_secs(60), || async {
        let config = get_json(h0_admin, "/config").await?;
        (config["endpoints"]["inventory"].as_array()?.len() == 2).then_some(())
    })
    .await;

    // The demo's canary of inventory v2 goes (no host runs v2); retries come.
    let _ = std::fs::remove_file(repo.path().join(trellis_server::testing::INVENTORY_ROLLOUT));
    let sha = repo.commit("routes/inventory.yaml", ROUTE, "Inventory: per-try timeout and retries").to_string();
    wait_for("the caller runs the route with retries", Duration::from_secs(30), || async {
        (get_json(h0_admin, "/config").await?["revision"] == sha.as_str()).then_some(())
    })
    .await;

    let traffic = Load::start(caller);

    // A commit is applied by every replica and every proxy within 2 s.
    let committed_at = Instant::now();
    let tighter = ROUTE.replace("perTry: 400ms", "perTry: 300ms");
    let sha = repo.commit("routes/inventory.yaml", &tighter, "Inventory: a tighter per-try timeout").to_string();
    let everywhere = wait_for("the commit applied everywhere", Duration::from_secs(30), || async {
        for cp in REPLICAS {
            let fleet = get_json(api(&bed, cp), "/api/v1/fleet").await?;
            (fleet["revision"] == sha.as_str()).then_some(())?;
        }
        for (host, _, _) in HOSTS {
            let config = get_json(admin(&bed, host), "/config").await?;
            (config["revision"] == sha.as_str()).then_some(())?;
        }
        Some(committed_at.elapsed())
    })
    .await;
    eprintln!("commit applied by 3 replicas and 3 proxies across hosts after {everywhere:?}");
    assert!(everywhere < Duration::from_secs(2), "a commit took {everywhere:?} to reach every replica and proxy");

    // Cut h1 off: callers stop sending to it, and success stays at 99.9 % or more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    bed.cut("h1");
    wait_for(
        "the control plane drops the silent host from the caller's endpoints",
        Duration::from_secs(40),
        || async {
            let config = get_json(h0_admin, "/config").await?;
            let inventory = config["endpoints"]["inventory"].as_array()?;
            (inventory.len() == 1 && inventory[0]["proxy_id"] == "h2").then_some(())
        },
    )
    .await;
    // Bring it back: it rejoins and syncs.
    bed.mend("h1");
    wait_for("h1 rejoins and syncs", Duration::from_secs(60), || async {
        let config = get_json(h0_admin, "/config").await?;
        (config["endpoints"]["inventory"].as_array()?.len() == 2).then_some(())?;
        let fleet = get_json(api(&bed, "cp0"), "/api/v1/fleet").await?;
        let h1 = fleet["proxies"].as_array()?.iter().find(|p| p["id"] == "h1")?.clone();
        (h1["synced"] == true).then_some(())
    })
    .await;

    // Cut off the host of the replica that holds the most proxies: they stop hearing its pings
    // and move to the others; traffic never notices. Back, it rejoins as one of three.
    let placement = |fleet: serde_json::Value| -> Option<Vec<String>> {
        let me = fleet["control_plane"]["replica"].as_str()?.to_string();
        let proxies = fleet["proxies"].as_array()?;
        Some(proxies.iter().map(|p| p["replica"].as_str().unwrap_or(&me).to_string()).collect())
    };
    let (busiest, id) = {
        let fleet = get_json(api(&bed, "cp0"), "/api/v1/fleet").await.unwrap();
        let on = placement(fleet).unwrap();
        let mut best = ("", String::new(), 0);
        for cp in REPLICAS {
            let id = get_json(api(&bed, cp), "/api/v1/fleet").await.unwrap()["control_plane"]["replica"]
                .as_str()
                .unwrap()
                .to_string();
            let n = on.iter().filter(|r| **r == id).count();
            if n > best.2 {
                best = (cp, id, n);
            }
        }
        (best.0, best.1)
    };
    let witness = REPLICAS.into_iter().find(|cp| *cp != busiest).unwrap();
    let cut_at = Instant::now();
    bed.cut(busiest);
    let moved =
        wait_for("the proxies of a replica cut off are connected elsewhere", Duration::from_secs(30), || async {
            let on = placement(get_json(api(&bed, witness), "/api/v1/fleet").await?)?;
            (on.len() == HOSTS.len() && on.iter().all(|r| *r != id)).then(|| cut_at.elapsed())
        })
        .await;
    eprintln!("proxies of a replica whose host was cut off were connected elsewhere after {moved:?}");
    bed.mend(busiest);
    wait_for("the replica cut off is back among three", Duration::from_secs(30), || async {
        let fleet = get_json(api(&bed, busiest), "/api/v1/fleet").await?;
        let up = fleet["control_plane"]["replicas"].as_array()?.iter().filter(|r| r["up"] == true).count();
        (up == 3 && fleet["total"] == HOSTS.len() && fleet["synced"] == HOSTS.len()).then_some(())
    })
    .await;

    tokio::time::sleep(Duration::from_secs(2)).await;
    let outcome = traffic.stop().await;
    let success = outcome.success_percent();
    let (sent, failed, why) = (outcome.sent, outcome.failed, outcome.why);
    eprintln!(
        "{sent} requests while hosts were cut off and came back: {failed} failed ({success:.3} % succeeded): {why:?}"
    );
    assert!(sent > 500, "the load ran: {sent}\n{}", bed.log("h0"));
    assert!(success >= 99.9, "{success:.3} % succeeded: {why:?}\n{}", bed.log("h0"));

    // With fresh load: kill -9 the leader, then restart every replica in turn. Not one request
    // fails; a new leader within 5 s; the audit log keeps every event and verifies.
    let traffic = Load::start(caller);
    let audit_before = audit_rows(&pg.url()).await;
    let (leader_cp, leader) = leader_of(&bed).await;
    let killed_at = Instant::now();
    bed.stop(leader_cp, "KILL");
    let survivors: Vec<&str> = REPLICAS.into_iter().filter(|cp| *cp != leader_cp).collect();
    let new_leader = wait_for("a new leader", Duration::from_secs(15), || async {
        let view = get_json(api(&bed, survivors[0]), "/api/v1/fleet").await?;
        let now = view["control_plane"]["leader"].as_str()?;
        (now != leader).then(|| now.to_string())
    })
    .await;
    let takeover = killed_at.elapsed();
    eprintln!("leader killed (kill -9) on {leader_cp}: {new_leader} leads after {takeover:?}");
    assert!(takeover < Duration::from_secs(5), "a new leader after {takeover:?}");
    bed.restart(leader_cp);
    all_up_and_synced(&bed, "the killed leader's host is back").await;
    for cp in REPLICAS {
        bed.stop(cp, "TERM");
        bed.restart(cp);
        all_up_and_synced(&bed, &format!("{cp} is back from its restart")).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcome = traffic.stop().await;
    let (sent, failed, why) = (outcome.sent, outcome.failed, outcome.why);
    eprintln!("{sent} requests while the leader was killed and every replica restarted: {failed} failed: {why:?}");
    assert!(sent > 200, "the load ran: {sent}\n{}", bed.log("h0"));
    assert_eq!(failed, 0, "no request fails: {why:?}\n{}", bed.log("h0"));
    let audit_after = audit_rows(&pg.url()).await;
    let kept = audit_before.iter().filter(|row| audit_after.contains(row)).count();
    assert_eq!(kept, audit_before.len(), "every audit event written before the kill is still there");
    assert!(audit_after.len() > audit_before.len(), "the replicas went on writing the audit log");
    // Stopped as an operator would, each replica flushes its audit spool; then one chain.
    for cp in REPLICAS {
        bed.stop(cp, "TERM");
    }
    let verify = Command::new(&trellis).args(["audit", "verify"]).env("DATABASE_URL", pg.url()).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success(), "trellis audit verify: {said}");
    drop(bed);
    pg.stop();
}

fn api(bed: &Bed, host: &str) -> SocketAddr {
    SocketAddr::from((bed.ip(host), 8080))
}

/// The replica (host, id) every replica names as the leader, once they agree.
async fn leader_of(bed: &Bed) -> (&'static str, String) {
    wait_for("the replicas agree on a leader", Duration::from_secs(30), || async {
        let mut named = Vec::new();
        let mut leader_cp = None;
        for cp in REPLICAS {
            let view = get_json(api(bed, cp), "/api/v1/fleet").await?;
            let leader = view["control_plane"]["leader"].as_str()?.to_string();
            if view["control_plane"]["replica"] == leader.as_str() {
                leader_cp = Some(cp);
            }
            named.push(leader);
        }
        (named.windows(2).all(|w| w[0] == w[1])).then_some((leader_cp?, named.pop()?))
    })
    .await
}

/// Waits until every replica answers, counts three up, and sees every proxy synced; says
/// what each replica last showed when they do not.
async fn all_up_and_synced(bed: &Bed, what: &str) {
    let started = Instant::now();
    loop {
        let mut seen = Vec::new();
        for cp in REPLICAS {
            let Some(fleet) = get_json(api(bed, cp), "/api/v1/fleet").await else {
                seen.push(format!("{cp}: no answer"));
                continue;
            };
            let replicas = fleet["control_plane"]["replicas"].as_array().cloned().unwrap_or_default();
            let up = replicas.iter().filter(|r| r["up"] == true).count();
            let ok = up == 3 && fleet["total"] == HOSTS.len() && fleet["synced"] == HOSTS.len();
            let proxies: Vec<String> = fleet["proxies"]
                .as_array()
                .map(|ps| ps.iter().map(|p| format!("{}@{} synced={}", p["id"], p["replica"], p["synced"])).collect())
                .unwrap_or_default();
            seen.push(format!("{cp}: ok={ok} up={up} total={} synced={} {proxies:?}", fleet["total"], fleet["synced"]));
        }
        if seen.iter().all(|s| s.contains("ok=true")) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{what}: not within 60 s:\n{}", seen.join("\n"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every audit event as (id, hash), in order.
async fn audit_rows(url: &str) -> Vec<(i64, Option<String>)> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let rows = sqlx::query_as("SELECT id, hash FROM audit_events ORDER BY id").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}
