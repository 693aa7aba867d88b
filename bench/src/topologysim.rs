//! `topologysim`: the dashboard's topology at scale. Writes a policy of N services in layers
//! (each calling two or three of the next layer; every tenth with a v2 taking a tenth of its
//! traffic), starts a control plane on it in this process, and P simulated proxies spread over
//! the services that register in plaintext (no identities: this measures the page, not the
//! handshakes `fleetsim` measures) and report every 2 s what their service received and sent.
//! Once the topology holds every service, it runs the browser measurement (`bench/topology.js`
//! in Debian's Chromium) and, when that says it is watching, makes one service start failing.
//! Prints one JSON object: the sizes, the browser's figures and the control plane's memory.

use bytes::{Bytes, BytesMut};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use trellis_model::telemetry::{BUCKETS, Direction, Report, Series};

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 200)]
    services: usize,
    #[arg(long, default_value_t = 1000)]
    proxies: usize,
    /// The dashboard's bundle (`target/site`).
    #[arg(long)]
    site_root: std::path::PathBuf,
    /// The browser measurement: a Node script given the URL, the failing service and the seconds to watch.
    #[arg(long)]
    measure: std::path::PathBuf,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.services >= 2 && args.proxies >= args.services, "at least 2 services and a proxy each");
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(args))
}

/// Service `i`'s name, layer and callees: five layers, each service calling two or three of
/// the next one.
struct Mesh {
    names: Vec<String>,
    calls: Vec<Vec<usize>>,
}

impl Mesh {
    fn new(n: usize) -> Mesh {
        let layers = 5.min(n);
        let layer = |i: usize| i * layers / n;
        let names = (0..n).map(|i| format!("svc-{}-{i:03}", layer(i))).collect();
        let calls = (0..n)
            .map(|i| {
                let next: Vec<usize> = (0..n).filter(|&j| layer(j) == layer(i) + 1).collect();
                let mut callees: Vec<usize> =
                    (0..2 + i % 2).filter_map(|k| next.get((i * 7 + k * 13) % next.len().max(1)).copied()).collect();
                callees.sort_unstable();
                callees.dedup();
                callees
            })
            .collect();
        Mesh { names, calls }
    }

    fn canary(i: usize) -> bool {
        i % 10 == 3
    }

    fn policy(&self) -> String {
        let mut text = String::from("kind: Mesh\nname: bench\nmtls: disabled\naccess: allow-all\n");
        for (i, name) in self.names.iter().enumerate() {
            let versions = if Self::canary(i) { "[v1, v2]" } else { "[v1]" };
            text += &format!("---\nkind: Service\nname: {name}\nport: 8080\nprotocol: http\nversions: {versions}\n");
        }
        text
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mesh = Arc::new(Mesh::new(args.services));
    let dir = tempfile::tempdir()?;
    let repo =
        trellis_server::testing::PolicyRepo::create(&dir.path().join("policy"), &[("mesh.yaml", &mesh.policy())])?;
    let cp = trellis_server::serve::start(trellis_server::serve::ServeConfig {
        site_root: args.site_root.clone(),
        ..trellis_server::serve::ServeConfig::local(
            trellis_server::gitops::PolicySource::local(repo.path(), "main"),
            &dir.path().join("data"),
        )
    })
    .await?;
    let url = cp.url();
    let failing = Arc::new(AtomicBool::new(false));
    let target = args.services / 2;
    for p in 0..args.proxies {
        let service = p % args.services;
        // Every canary service's last proxy runs v2.
        let version = if Mesh::canary(service) && p + args.services >= args.proxies { "v2" } else { "v1" };
        let sim =
            Sim { id: format!("sim-{p}"), service, version, mesh: mesh.clone(), failing: failing.clone(), target };
        let url = url.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = sim.run(&url).await
                    && sim.service == 0
                {
                    eprintln!("topologysim: {}: {e}", sim.id);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
    // Every service drawn with traffic, over settled seconds: the page has its full size.
    let started = Instant::now();
    let edges = loop {
        let joined = cp.state.fleet.proxies().len();
        let topology = trellis_server::api::build_topology(&cp.state, 60);
        let busy = topology.nodes.iter().filter(|n| n.golden.requests > 0).count();
        if joined == args.proxies && busy == args.services {
            break topology.edges.len();
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(120), "{joined} proxies joined, {busy} services busy");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let measure = args.measure.clone();
    let (url2, name, seconds) = (url.clone(), mesh.names[target].clone(), args.seconds.to_string());
    let flag = failing.clone();
    let browser = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut child = std::process::Command::new("node")
            .arg(&measure)
            .args([&url2, &name, &seconds])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut figures = String::new();
        for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line?;
            if line == "watching" {
                flag.store(true, Ordering::Relaxed);
            } else if line.starts_with('{') {
                figures = line;
            }
        }
        anyhow::ensure!(child.wait()?.success(), "the browser measurement failed");
        Ok(figures)
    })
    .await??;
    let browser: serde_json::Value = serde_json::from_str(&browser)?;
    let rss_mb = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    let report = serde_json::json!({
        "services": args.services, "proxies": args.proxies, "edges": edges,
        "browser": browser, "process_rss_mb": rss_mb,
    });
    println!("{report}");
    cp.shutdown().await;
    Ok(())
}

/// One simulated proxy: registers, ACKs every config, and reports every 2 s.
struct Sim {
    id: String,
    service: usize,
    version: &'static str,
    mesh: Arc<Mesh>,
    failing: Arc<AtomicBool>,
    target: usize,
}

impl Sim {
    async fn run(&self, url: &str) -> anyhow::Result<()> {
        let tcp = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await?;
        let (client, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let reg = serde_json::json!({
            "proxy_id": self.id, "service": self.mesh.names[self.service], "version": self.version,
            "inbound_addr": "127.0.0.1:9", "admin_addr": "127.0.0.1:9", "proxy_version": "sim",
        });
        let post = |path: &str, body: String| {
            http::Request::post(format!("{url}{path}")).body(Full::new(Bytes::from(body))).expect("a valid request")
        };
        let mut stream = client.clone().send_request(post("/fleet/v1/stream", reg.to_string())).await?.into_body();
        let acks = {
            let (client, id) = (client.clone(), self.id.clone());
            async move {
                let mut buf = BytesMut::new();
                while let Some(frame) = stream.frame().await {
                    let Ok(data) = frame?.into_data() else { continue };
                    buf.extend_from_slice(&data);
                    while let Some(n) = buf.iter().position(|b| *b == b'\n') {
                        let line = buf.split_to(n + 1);
                        let msg: serde_json::Value = serde_json::from_slice(&line[..n])?;
                        if msg["type"] == "config" {
                            let ack = serde_json::json!({ "proxy_id": id, "version": msg["version"], "error": null });
                            client.clone().send_request(post("/fleet/v1/ack", ack.to_string())).await?;
                        }
                    }
                }
                anyhow::Ok(())
            }
        };
        let reports = async {
            // Spread over the 2 s, as a real fleet's reports are.
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..2000))).await;
            for seq in 1.. {
                let report = Report {
                    proxy_id: self.id.clone(),
                    seq,
                    series: self.series(),
                    denied: Vec::new(),
                    limited: Vec::new(),
                    tcp: Vec::new(),
                };
                let resp =
                    client.clone().send_request(post("/fleet/v1/telemetry", serde_json::to_string(&report)?)).await?;
                anyhow::ensure!(resp.status().is_success(), "telemetry: {}", resp.status());
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            anyhow::Ok(())
        };
        tokio::select! {
            r = acks => r,
            r = reports => r,
        }
    }

    /// Two seconds of what this proxy's service received and sent: 10 requests in, 10 out to
    /// each callee (a tenth to a canary's v2), some failing once the target service fails.
    fn series(&self) -> Vec<Series> {
        let failing = self.failing.load(Ordering::Relaxed);
        let series = |direction, callee: usize, version: &str, requests: u64| {
            let failures = if failing && callee == self.target { requests / 2 } else { 0 };
            let mut buckets = vec![0; BUCKETS];
            buckets[3] = requests;
            Series {
                direction,
                service: self.mesh.names[callee].clone(),
                version: version.into(),
                route: String::new(),
                requests,
                failures,
                buckets,
            }
        };
        let mut out = vec![series(Direction::Inbound, self.service, self.version, 10)];
        for &callee in &self.mesh.calls[self.service] {
            if Mesh::canary(callee) {
                out.push(series(Direction::Outbound, callee, "v1", 9));
                out.push(series(Direction::Outbound, callee, "v2", 1));
            } else {
                out.push(series(Direction::Outbound, callee, "v1", 10));
            }
        }
        out
    }
}
