//! One simulated proxy. It joins as `trellis-proxy` does (a key made here, a CSR with the join
//! token, the certificate that comes back) and holds one mTLS config stream, upgraded to the
//! duplex stream (`trellis-fleet/1`): it ACKs every config and sends its reports on the same
//! connection. With several replicas it fails over as the real one does:
//! on losing its stream it tries the next replica at once, and backs off (jittered) only after
//! a full round of them failed.

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trellis_model::fleet::{self, ProxyMessage};

/// What one simulated proxy has seen.
#[derive(Clone, Default)]
pub struct Slot {
    /// The revision it last ACKed, and when.
    pub acked: Option<(String, Instant)>,
    /// The replica its stream is on, and when that stream opened.
    pub on: Option<(usize, Instant)>,
    /// Streams it opened, all told: more than one means it had to register again.
    pub streams: u64,
    /// The config bytes it was sent, all told, and how many full configs (not deltas).
    pub received: u64,
    pub fulls: u64,
    /// Telemetry reports accepted, and those the control plane asked it to send later.
    pub reports: u64,
    pub deferred: u64,
}

/// How the simulated proxies join: which service each serves (with its join token), and
/// whether they take deltas.
pub struct Plan {
    pub tokens: std::collections::BTreeMap<String, String>,
    pub incremental: bool,
}

/// Half the proxies run v1, half v2.
fn version_of(i: usize) -> &'static str {
    if i.is_multiple_of(2) { "v1" } else { "v2" }
}

/// The demo mesh's shape: one proxy in ten is a storefront (it calls inventory and catalog,
/// so its config lists their endpoints); the rest serve inventory and catalog, half each.
pub fn service_of(i: usize) -> &'static str {
    match i % 10 {
        0 => "storefront",
        n if n % 2 == 1 => "inventory",
        _ => "catalog",
    }
}

pub type Fleet = Arc<Mutex<Vec<Slot>>>;

/// Runs proxy `i` for ever, starting on replica `i % replicas`.
pub async fn run(i: usize, replicas: Arc<Vec<String>>, plan: Arc<Plan>, fleet: Fleet) {
    let mut at = i % replicas.len();
    let mut identity = None;
    let mut misses = 0;
    // The version it runs, named when it reconnects.
    let mut running = None;
    let token = plan.tokens.get(service_of(i)).cloned().unwrap_or_default();
    loop {
        let mut delivered = false;
        let outcome = match &identity {
            None => match certify(i, &replicas[at], &token).await {
                Ok(certified) => {
                    identity = Some(certified);
                    continue; // open the stream on the same replica
                }
                Err(e) => Err(e),
            },
            Some(id) => {
                let on = Stream { i, at, cp: &replicas[at], incremental: plan.incremental };
                on.run(id, &fleet, &mut running, &mut delivered).await
            }
        };
        if let Err(e) = outcome
            && i == 0
        {
            eprintln!("fleetsim: proxy 0 on {}: {e}", replicas[at]);
        }
        misses = if delivered { 1 } else { misses + 1 };
        at = (at + 1) % replicas.len();
        if misses % replicas.len() == 0 {
            tokio::time::sleep(Duration::from_millis(200 + fastrand::u64(0..300))).await;
        }
    }
}

/// The fields of a stream message the simulation reads; the rest is skipped unparsed.
#[derive(Clone, serde::Deserialize)]
struct Message {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    revision: String,
    /// Answers to its reports.
    report_every: Option<u64>,
    retry_after: Option<u64>,
}

/// A simulated proxy's certificate: how it reaches a replica's fleet (mTLS) port.
pub struct Identity {
    tls: Arc<rustls::ClientConfig>,
    /// The control plane's name in the certificate it shows.
    server: rustls::pki_types::ServerName<'static>,
    /// Every replica serves the fleet on the same port.
    fleet_port: u16,
}

async fn certify(i: usize, cp: &str, token: &str) -> anyhow::Result<Identity> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?.serialize_request(&key)?.pem()?;
    let request = trellis_model::fleet::CertifyRequest {
        proxy_id: format!("sim-{i}"),
        service: service_of(i).into(),
        token: token.into(),
        csr,
    };
    let req = http::Request::post(format!("{cp}{}", trellis_model::fleet::CERTIFY))
        .body(Full::new(Bytes::from(serde_json::to_vec(&request)?)))?;
    let (status, body) = h2c(cp, req).await?;
    anyhow::ensure!(status.is_success(), "certify: {status} {}", String::from_utf8_lossy(&body));
    let issued: trellis_model::fleet::Issued = serde_json::from_slice(&body)?;
    let chain = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(issued.anchor_pem.as_bytes())?)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (domain, _) = issued.identity.trim_start_matches("spiffe://").split_once('/').unwrap_or_default();
    let name = trellis_model::config::identity_dns_name(&format!("spiffe://{domain}/svc/trellis"))
        .ok_or_else(|| anyhow::anyhow!("{} names no trust domain", issued.identity))?;
    Ok(Identity {
        tls: Arc::new(tls),
        server: rustls::pki_types::ServerName::try_from(name)?,
        fleet_port: issued.fleet_port.ok_or_else(|| anyhow::anyhow!("the control plane told no fleet port"))?,
    })
}

/// One request on a plaintext HTTP/2 connection of its own: (status, body).
pub async fn h2c(cp: &str, req: http::Request<Full<Bytes>>) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let tcp = tokio::net::TcpStream::connect(cp.trim_start_matches("http://")).await?;
    let (mut client, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let resp = client.send_request(req).await?;
    let status = resp.status();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// One config stream of proxy `i`, on replica `at`.
struct Stream<'a> {
    i: usize,
    at: usize,
    cp: &'a str,
    incremental: bool,
}

impl Stream<'_> {
    /// Registers (naming the version it runs), then ACKs every config and delta and reports
    /// as often as the control plane asks, until the stream ends.
    async fn run(
        &self,
        identity: &Identity,
        fleet: &Fleet,
        running: &mut Option<String>,
        delivered: &mut bool,
    ) -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (i, cp) = (self.i, self.cp);
        let host: std::net::SocketAddr = cp.trim_start_matches("http://").parse()?;
        let tcp = tokio::net::TcpStream::connect((host.ip(), identity.fleet_port)).await?;
        let tls = tokio_rustls::TlsConnector::from(identity.tls.clone()).connect(identity.server.clone(), tcp).await?;
        let (mut client, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn.with_upgrades());
        let id = format!("sim-{i}");
        let reg = serde_json::json!({
            "proxy_id": id, "service": service_of(i), "version": version_of(i),
            "inbound_addr": format!("127.1.{}.{}:4143", i / 250, i % 250 + 1), "admin_addr": "127.0.0.1:1",
            "proxy_version": "sim", "incremental": self.incremental, "resume": running,
            "max_ping_every_s": 10,
        });
        let req = http::Request::post(format!("{cp}/fleet/v1/stream"))
            .header(http::header::HOST, "trellis")
            .header(http::header::UPGRADE, trellis_model::fleet::UPGRADE)
            .header(http::header::CONNECTION, "upgrade")
            .body(Full::new(Bytes::from(reg.to_string())))?;
        let resp = client.send_request(req).await?;
        anyhow::ensure!(resp.status() == http::StatusCode::SWITCHING_PROTOCOLS, "stream: {}", resp.status());
        let mut io = TokioIo::new(hyper::upgrade::on(resp).await?);
        // Connected here: a proxy that resumes with the version this replica has is sent nothing.
        {
            let slot = &mut fleet.lock().unwrap_or_else(|e| e.into_inner())[i];
            slot.on = Some((self.at, Instant::now()));
            slot.streams += 1;
        }
        *delivered = true;
        let mut reports = Reports::new(i);
        let mut buf = BytesMut::new();
        loop {
            let line = tokio::select! {
                read = io.read_buf(&mut buf) => {
                    if read? == 0 {
                        return Ok(());
                    }
                    self.take_lines(&mut buf, fleet, running, &mut reports)
                }
                () = tokio::time::sleep_until(reports.due) => Some(reports.next()),
            };
            if let Some(line) = line {
                io.write_all(&line).await?;
                io.flush().await?;
            }
        }
    }

    /// Reads the whole lines in `buf`: the answers to its reports, and configs and deltas, of
    /// which, as trellis-proxy does, only the newest is answered: its ACK line.
    fn take_lines(
        &self,
        buf: &mut BytesMut,
        fleet: &Fleet,
        running: &mut Option<String>,
        reports: &mut Reports,
    ) -> Option<Vec<u8>> {
        let mut last: Option<Message> = None;
        let (mut bytes, mut fulls) = (0, 0);
        let mut slots = fleet.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(n) = buf.iter().position(|b| *b == b'\n') {
            let line = buf.split_to(n + 1);
            let Ok(msg) = serde_json::from_slice::<Message>(&line[..n]) else { continue };
            match msg.kind.as_str() {
                "config" | "delta" => {
                    bytes += line.len() as u64;
                    fulls += u64::from(msg.kind == "config");
                    last = Some(msg);
                }
                "reported" => {
                    slots[self.i].reports += 1;
                    reports.taken(msg.report_every);
                }
                "deferred" => {
                    slots[self.i].deferred += 1;
                    reports.deferred(msg.retry_after);
                }
                "refused" => reports.deferred(None),
                _ => {}
            }
        }
        let msg = last?;
        *running = Some(msg.version.clone());
        let slot = &mut slots[self.i];
        slot.received += bytes;
        slot.fulls += fulls;
        // Stamped as written: the control plane answers no ACK (its side is checked on its
        // metrics, see `harness::synced`).
        slot.acked = Some((msg.revision, Instant::now()));
        let ack = trellis_model::fleet::Ack { proxy_id: format!("sim-{}", self.i), version: msg.version, error: None };
        Some(fleet::line(&ProxyMessage::Ack(ack)))
    }
}

/// Its reports: every two seconds (first at a random point of the first two, so a fleet's
/// reports spread out), or as often as the control plane asks, waiting as long as a deferred
/// report's `retry_after`; the counts of a deferred report go with the next one, as
/// trellis-proxy's do.
struct Reports {
    id: String,
    service: &'static str,
    version: &'static str,
    seq: u64,
    pending: u64,
    due: tokio::time::Instant,
}

impl Reports {
    fn new(i: usize) -> Self {
        let due = tokio::time::Instant::now() + Duration::from_millis(fastrand::u64(0..2000));
        Reports { id: format!("sim-{i}"), service: service_of(i), version: version_of(i), seq: 0, pending: 0, due }
    }

    /// The next report's line; until it is answered, none is due.
    fn next(&mut self) -> Vec<u8> {
        use trellis_model::telemetry::{BUCKETS, Direction, Report, Series};
        self.seq += 1;
        self.pending += 40;
        self.due = tokio::time::Instant::now() + Duration::from_secs(3600);
        let mut buckets = vec![0; BUCKETS];
        buckets[3] = self.pending;
        let series = Series {
            direction: Direction::Inbound,
            service: self.service.into(),
            version: self.version.into(),
            route: String::new(),
            requests: self.pending,
            failures: 0,
            buckets,
        };
        let report = Report {
            proxy_id: self.id.clone(),
            seq: self.seq,
            series: vec![series],
            denied: vec![],
            limited: vec![],
            tcp: vec![],
        };
        fleet::line(&ProxyMessage::Report(report))
    }

    fn taken(&mut self, every: Option<u64>) {
        self.pending = 0;
        self.due = tokio::time::Instant::now() + Duration::from_secs(every.unwrap_or(2));
    }

    fn deferred(&mut self, retry: Option<u64>) {
        self.due = tokio::time::Instant::now() + Duration::from_secs(retry.unwrap_or(4));
    }
}
