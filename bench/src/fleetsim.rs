//! `fleetsim`: N lightweight simulated proxies against one control plane. Each joins as
//! `trellis-proxy` does: a certificate for its join token, then its config stream over mTLS on
//! the fleet's port, ACKing every config it receives (so handshakes and certificates count
//! too). The harness commits to the policy repository and measures how long each proxy takes
//! to ACK the new revision.
//!
//! Prints one JSON object: proxies, commit-to-ACK p50/p99/max in ms, and the control plane's
//! resident memory and CPU seconds (read from /proc of `--cp-pid`).

use bytes::{Bytes, BytesMut};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

#[derive(Parser, Debug)]
struct Args {
    /// The control plane, e.g. http://127.0.0.1:18080.
    #[arg(long)]
    control_plane: String,
    /// Its process id, to read memory and CPU.
    #[arg(long)]
    cp_pid: u32,
    /// The policy repository to commit to.
    #[arg(long)]
    repo: String,
    #[arg(long, default_value_t = 1000)]
    proxies: usize,
    /// The inventory service's join token (`trellis join-token inventory`).
    #[arg(long, env = "TRELLIS_JOIN_TOKEN")]
    join_token: String,
}

/// What each simulated proxy has seen: the revision it last ACKed, and when.
type Seen = Arc<Mutex<Vec<Option<(String, Instant)>>>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let seen: Seen = Arc::new(Mutex::new(vec![None; args.proxies]));
    for i in 0..args.proxies {
        let (seen, cp, token) = (seen.clone(), args.control_plane.clone(), args.join_token.clone());
        tokio::spawn(async move {
            let mut identity = None;
            loop {
                if identity.is_none() {
                    match certify(i, &cp, &token).await {
                        Ok(certified) => identity = Some(certified),
                        Err(e) if i == 0 => eprintln!("fleetsim: no certificate yet: {e}"),
                        Err(_) => {}
                    }
                }
                if let Some(identity) = &identity
                    && let Err(e) = proxy(i, &cp, identity, &seen).await
                    && i == 0
                {
                    eprintln!("fleetsim: stream down: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200 + fastrand::u64(0..300))).await;
            }
        });
        // Stagger the joins a little, as a fleet rolling out would.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Every proxy has a config before the measured commit.
    let joined = Instant::now();
    while seen.lock().await.iter().any(Option::is_none) {
        anyhow::ensure!(joined.elapsed() < Duration::from_secs(120), "not every simulated proxy got a config");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let join_s = joined.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_before, cpu_before) = proc_stats(args.cp_pid);

    let committed = commit(&args.repo)?;
    let start = Instant::now();
    let times = loop {
        let s = seen.lock().await;
        let done: Vec<f64> = s
            .iter()
            .filter_map(|e| e.as_ref().filter(|(rev, _)| *rev == committed))
            .map(|(_, at)| at.duration_since(start).as_secs_f64() * 1000.0)
            .collect();
        if done.len() == args.proxies {
            break done;
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "only {} of {} ACKed", done.len(), args.proxies);
        drop(s);
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (rss_after, cpu_after) = proc_stats(args.cp_pid);
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{}",
        serde_json::json!({
            "proxies": args.proxies,
            "join_s": join_s,
            "commit_to_ack_ms": { "p50": q(0.5), "p99": q(0.99), "max": q(1.0) },
            "cp_rss_mb": { "fleet_joined": rss_before, "after_commit": rss_after },
            "cp_cpu_s_for_commit": cpu_after - cpu_before,
        })
    );
    Ok(())
}

/// The fields of a stream message the simulation reads; the rest is skipped unparsed.
#[derive(serde::Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    revision: String,
}

/// A simulated proxy's certificate: how it reaches the fleet's mTLS port.
struct Identity {
    tls: Arc<rustls::ClientConfig>,
    /// The control plane's name in the certificate it shows.
    server: rustls::pki_types::ServerName<'static>,
    fleet: std::net::SocketAddr,
}

/// A key made here, a CSR with the join token, and the certificate that comes back.
async fn certify(i: usize, cp: &str, token: &str) -> anyhow::Result<Identity> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?.pem()?;
    let request = trellis_model::fleet::CertifyRequest {
        proxy_id: format!("sim-{i}"),
        service: "inventory".into(),
        token: token.into(),
        csr,
    };
    let client = h2c(cp).await?;
    let req = http::Request::post(format!("{cp}{}", trellis_model::fleet::CERTIFY))
        .body(Full::new(Bytes::from(serde_json::to_vec(&request)?)))?;
    let resp = client.clone().send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status.is_success(), "certify: {status} {}", String::from_utf8_lossy(&body));
    let issued: trellis_model::fleet::Issued = serde_json::from_slice(&body)?;
    let chain = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(issued.anchor_pem.as_bytes())?)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?)?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let (domain, _) = issued.identity.trim_start_matches("spiffe://").split_once('/').unwrap_or_default();
    let name = trellis_model::config::identity_dns_name(&format!("spiffe://{domain}/svc/trellis"))
        .ok_or_else(|| anyhow::anyhow!("{} names no trust domain", issued.identity))?;
    let port = issued.fleet_port.ok_or_else(|| anyhow::anyhow!("the control plane told no fleet port"))?;
    let host: std::net::SocketAddr = cp.trim_start_matches("http://").parse()?;
    Ok(Identity {
        tls: Arc::new(tls),
        server: rustls::pki_types::ServerName::try_from(name)?,
        fleet: (host.ip(), port).into(),
    })
}

/// A plaintext HTTP/2 connection, for the certificate request.
async fn h2c(cp: &str) -> anyhow::Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(cp.trim_start_matches("http://")).await?;
    let (client, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// One simulated proxy: its own mTLS connection, as `trellis-proxy` has; register on the
/// stream, ACK every config line on the same connection.
async fn proxy(i: usize, cp: &str, identity: &Identity, seen: &Seen) -> anyhow::Result<()> {
    let tcp = tokio::net::TcpStream::connect(identity.fleet).await?;
    let tls = tokio_rustls::TlsConnector::from(identity.tls.clone()).connect(identity.server.clone(), tcp).await?;
    let (client, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let id = format!("sim-{i}");
    let reg = serde_json::json!({
        "proxy_id": id, "service": "inventory", "version": if i.is_multiple_of(2) { "v1" } else { "v2" },
        "inbound_addr": format!("127.1.{}.{}:4143", i / 250, i % 250 + 1), "admin_addr": "127.0.0.1:1", "proxy_version": "sim",
    });
    let req = http::Request::post(format!("{cp}/fleet/v1/stream")).body(Full::new(Bytes::from(reg.to_string())))?;
    let resp = client.clone().send_request(req).await?;
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some(n) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(n + 1);
            let msg: Message = serde_json::from_slice(&line[..n])?;
            if msg.kind != "config" {
                continue;
            }
            let (version, revision) = (msg.version.as_str(), msg.revision.as_str());
            let ack = serde_json::json!({ "proxy_id": id, "version": version, "error": null });
            let req =
                http::Request::post(format!("{cp}/fleet/v1/ack")).body(Full::new(Bytes::from(ack.to_string())))?;
            let _ = client.clone().send_request(req).await?.into_body().collect().await;
            seen.lock().await[i] = Some((revision.to_string(), Instant::now()));
        }
    }
    Ok(())
}

/// Commits a change to the inventory split and returns the new SHA.
fn commit(repo: &str) -> anyhow::Result<String> {
    let file = format!("{repo}/routes/inventory.yaml");
    let text = std::fs::read_to_string(&file)?;
    let next = if text.contains("weight: 90") {
        text.replace("weight: 90", "weight: 80").replace("weight: 10", "weight: 20")
    } else {
        text.replace("weight: 100", "weight: 90").replace("weight: 0", "weight: 10")
    };
    std::fs::write(&file, next)?;
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(["-C", repo, "-c", "user.name=bench", "-c", "user.email=bench@trellis.invalid"])
            .args(args)
            .output()
    };
    git(&["commit", "-qam", "fleet benchmark"])?;
    Ok(String::from_utf8(git(&["rev-parse", "HEAD"])?.stdout)?.trim().to_string())
}

/// (resident MB, CPU seconds) of a process.
fn proc_stats(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (rss, (ticks(11) + ticks(12)) / 100.0)
}
