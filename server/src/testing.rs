//! Builders shared by unit tests, integration tests and the demo: real git repositories in
//! directories of their own.

use git2::{Oid, Repository, Signature};
use std::path::{Path, PathBuf};

/// The example mesh under `policies/`, compiled in so the binary can seed a demo anywhere.
pub const DEMO_POLICIES: &[(&str, &str)] = &[
    ("mesh.yaml", include_str!("../../policies/mesh.yaml")),
    ("services/shop.yaml", include_str!("../../policies/services/shop.yaml")),
    ("routes/inventory.yaml", include_str!("../../policies/routes/inventory.yaml")),
    ("routes/catalog.yaml", include_str!("../../policies/routes/catalog.yaml")),
    ("policies/inventory.yaml", include_str!("../../policies/policies/inventory.yaml")),
    (INVENTORY_ROLLOUT, include_str!("../../policies/rollouts/inventory-v2.yaml")),
    ("rollouts/catalog-v2.yaml", include_str!("../../policies/rollouts/catalog-v2.yaml")),
    (DEMO_NOTIFICATIONS, include_str!("../../policies/notifications/rollouts.yaml")),
];

/// The demo's notifications: `trellis demo` provides the secrets they name; test meshes leave
/// them out, as they have none.
pub const DEMO_NOTIFICATIONS: &str = "notifications/rollouts.yaml";

/// The demo's canary of inventory v2.
pub const INVENTORY_ROLLOUT: &str = "rollouts/inventory-v2.yaml";

/// A policy repository on branch `main`.
pub struct PolicyRepo {
    path: PathBuf,
    // Removes the directory on drop when the repository is a throwaway.
    _temp: Option<tempfile::TempDir>,
}

impl PolicyRepo {
    /// A throwaway repository holding the demo policies in one commit, but its notifications.
    pub fn demo() -> Self {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let path = temp.path().join("policy");
        let files: Vec<(&str, &str)> =
            DEMO_POLICIES.iter().copied().filter(|(p, _)| *p != DEMO_NOTIFICATIONS).collect();
        let repo = Self::create(&path, &files).expect("creating a repository");
        PolicyRepo { _temp: Some(temp), ..repo }
    }

    /// Opens `path`, or creates it with `files` committed on `main` when it does not exist.
    pub fn create(path: &Path, files: &[(&str, &str)]) -> Result<Self, git2::Error> {
        let repo = PolicyRepo { path: path.to_path_buf(), _temp: None };
        if Repository::open(path).is_ok() {
            return Ok(repo);
        }
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        Repository::init_opts(path, &opts)?;
        for (name, text) in files {
            let file = path.join(name);
            std::fs::create_dir_all(file.parent().unwrap_or(path)).map_err(io)?;
            std::fs::write(&file, text).map_err(io)?;
        }
        repo.commit_all("Seed the mesh policy")?;
        Ok(repo)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn head(&self) -> Oid {
        let repo = Repository::open(&self.path).expect("repository");
        repo.head().and_then(|h| h.peel_to_commit()).map(|c| c.id()).expect("a head commit")
    }

    /// Writes one file and commits it, as a user's `git commit -a` would.
    pub fn commit(&self, name: &str, text: &str, message: &str) -> Oid {
        let file = self.path.join(name);
        std::fs::create_dir_all(file.parent().unwrap_or(&self.path)).expect("making the file's directory");
        std::fs::write(file, text).expect("writing a policy file");
        self.commit_all(message).expect("committing")
    }

    /// Commits a new split of the demo's inventory service. A split set by hand ends the
    /// demo's canary of inventory (its Rollout would otherwise own the split).
    pub fn set_inventory_split(&self, v1: u32, v2: u32, message: &str) -> Oid {
        let text = format!(
            "kind: Route\nname: inventory\nservice: inventory\nrules:\n  - backends:\n      - version: v1\n        weight: {v1}\n      - version: v2\n        weight: {v2}\n"
        );
        let _ = std::fs::remove_file(self.path.join(INVENTORY_ROLLOUT));
        self.commit("routes/inventory.yaml", &text, message)
    }

    /// Moves the branch back to `oid` and rewrites the working tree, as `git reset --hard`.
    pub fn reset_hard(&self, oid: Oid) {
        let repo = Repository::open(&self.path).expect("repository");
        let commit = repo.find_commit(oid).expect("commit");
        repo.reset(commit.as_object(), git2::ResetType::Hard, None).expect("reset");
    }

    fn commit_all(&self, message: &str) -> Result<Oid, git2::Error> {
        let repo = Repository::open(&self.path)?;
        let mut index = repo.index()?;
        index.add_all(["*"], git2::IndexAddOption::DEFAULT, None)?;
        index.update_all(["*"], None)?;
        index.write()?;
        let tree = repo.find_tree(index.write_tree()?)?;
        let sig = Signature::now("Trellis Demo", "demo@trellis.invalid")?;
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
    }
}

fn io(e: std::io::Error) -> git2::Error {
    git2::Error::from_str(&e.to_string())
}

/// An application answering every request with `body` and `status`, on a free local port.
pub async fn fixed_app(body: &'static str, status: u16) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
    let addr = listener.local_addr().expect("a bound listener has an address");
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let svc = hyper::service::service_fn(move |_req: http::Request<hyper::body::Incoming>| async move {
                let mut resp =
                    http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(body.as_bytes())));
                *resp.status_mut() = status;
                Ok::<_, std::convert::Infallible>(resp)
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(io, svc));
        }
    });
    addr
}

/// Waits (up to ten seconds) until the audit log of the control plane at `addr` holds an event
/// of `kind` whose text contains `needle`: events reach the database through the spool.
pub async fn wait_audited(addr: std::net::SocketAddr, kind: &str, needle: &str) {
    let started = std::time::Instant::now();
    loop {
        let (_, audit) = http_get(addr, "trellis", &format!("/api/v1/audit?kind={kind}")).await.unwrap_or_default();
        if audit.contains(needle) {
            return;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "no {kind} event with {needle:?}: {audit}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A plain HTTP/1.1 GET naming `host`, for tests that talk to proxies and the API.
pub async fn http_get(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> Result<(http::StatusCode, String), String> {
    http_request(http::Method::GET, addr, path, &[("host", host)], bytes::Bytes::new()).await
}

/// Any HTTP/1.1 request; returns the status and the body as text.
pub async fn http_request(
    method: http::Method,
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: bytes::Bytes,
) -> Result<(http::StatusCode, String), String> {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let mut req = http::Request::builder().method(method).uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(http_body_util::Full::new(body)).map_err(|e| e.to_string())?;
    // A test waits for an answer, not for ever: a hang becomes a failure that says where.
    let answer = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), answer)
        .await
        .map_err(|_| format!("{addr}{path}: no answer within 30 s"))?
}

/// An AdmissionReview of a Deployment's pod, as the API server sends one (the shape of the
/// Kubernetes API reference's example, `object` the pod).
pub fn admission_review(pod: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "requestKind": { "group": "", "version": "v1", "kind": "Pod" },
            "requestResource": { "group": "", "version": "v1", "resource": "pods" },
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "r",
                "groups": ["system:serviceaccounts"],
            },
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": { "apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" },
        },
    })
}

/// The JSON Patch (RFC 6902) an admission review's `response` carries, decoded; `None` when
/// it has none.
pub fn admission_patch(response: &serde_json::Value) -> Option<serde_json::Value> {
    use base64::Engine;
    let encoded = response["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).expect("the patch is base64");
    Some(serde_json::from_slice(&bytes).expect("the patch is JSON"))
}

/// The Postgres server tests use: `TRELLIS_TEST_POSTGRES_URL`, or the local one.
pub fn postgres_admin_url() -> String {
    std::env::var("TRELLIS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of a test's own on the Postgres server, dropped by `drop_it`. Postgres must be
/// reachable: tests fail, never skip, without it.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        use sqlx::Connection;
        let admin = postgres_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("Postgres is required at {admin} (set TRELLIS_TEST_POSTGRES_URL; scripts/test.sh starts one): {e}")
        });
        let name = format!("trellis_test_{:016x}", fastrand::u64(..));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        PgDatabase { url: format!("{base}/{name}"), name }
    }

    pub async fn drop_it(self) {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.unwrap();
        let sql = format!("DROP DATABASE {} WITH (FORCE)", self.name);
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
}

/// A Postgres cluster of its own (Debian's initdb and pg_ctl), for the demo's replicas and
/// for tests whose processes reach it across network namespaces: it listens on `listen`.
/// Its data stays in `dir` between runs.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    listen: std::net::IpAddr,
    port: u16,
}

impl PgCluster {
    pub fn start(dir: &Path, listen: std::net::IpAddr) -> anyhow::Result<PgCluster> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                let mut found: Vec<PathBuf> =
                    versions.flatten().map(|v| v.path().join("bin")).filter(|b| b.join("pg_ctl").exists()).collect();
                found.sort();
                found.pop()
            })
            .ok_or_else(|| {
                anyhow::anyhow!("no Postgres to start: install it (apt-get install -y postgresql), or set DATABASE_URL")
            })?;
        let port = std::net::TcpListener::bind((listen, 0))?.local_addr()?.port();
        let cluster = PgCluster { bin, dir: dir.to_path_buf(), listen, port };
        std::fs::create_dir_all(dir)?;
        if as_root() {
            let _ = std::process::Command::new("chown").args(["-R", "postgres"]).arg(dir).status();
        }
        if !dir.join("data").join("PG_VERSION").exists() {
            cluster.run("initdb", &["-D", &cluster.path("data"), "-U", "postgres", "-A", "trust"])?;
            // Clients on the networks it listens on (hosts of a test bed) may connect too.
            let hba = dir.join("data").join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba)?;
            text.push_str("host all all samenet trust\n");
            std::fs::write(&hba, text)?;
        }
        let options = format!("-p {port} -k {} -c listen_addresses={listen} -c fsync=off", dir.display());
        let log = cluster.path("log");
        cluster.run("pg_ctl", &["-D", &cluster.path("data"), "-l", &log, "-w", "-o", &options, "start"])?;
        Ok(cluster)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@{}/postgres", std::net::SocketAddr::new(self.listen, self.port))
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Runs a Postgres tool, as the postgres user when this is root (initdb refuses root).
    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(tool);
        let mut cmd = if as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let out = cmd.args(args).output()?;
        anyhow::ensure!(out.status.success(), "{tool} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    pub fn stop(self) {
        if let Err(e) = self.run("pg_ctl", &["-D", &self.path("data"), "-m", "fast", "stop"]) {
            tracing::warn!(error = %e, "cannot stop the demo's Postgres");
        }
    }
}

fn as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}
