//! The duplex config stream (`Upgrade: trellis-fleet/1`) from the control plane's side, spoken
//! by a test client as a third-party proxy would: one connection carries the config and its
//! deltas out and the proxy's ACKs, NACKs and reports in; each report is answered in order,
//! lines the control plane cannot take are refused with a status and the stream goes on, a
//! line past the limit ends it, and closing the connection disconnects the proxy.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use trellis_model::fleet::{StreamMessage, UPGRADE};
use trellis_server::gitops::PolicySource;
use trellis_server::serve::{Running, ServeConfig};
use trellis_server::testing::{PolicyRepo, http_get};

async fn control_plane(repo: &PolicyRepo, dir: &std::path::Path) -> Running {
    let source = PolicySource { poll_interval: Duration::from_millis(200), ..PolicySource::local(repo.path(), "main") };
    trellis_server::serve::start(ServeConfig::local(source, dir)).await.unwrap()
}

/// An upgraded stream: lines read one at a time, lines written whole.
struct Duplex {
    read: tokio::io::Lines<BufReader<tokio::io::ReadHalf<TokioIo<hyper::upgrade::Upgraded>>>>,
    write: tokio::io::WriteHalf<TokioIo<hyper::upgrade::Upgraded>>,
}

impl Duplex {
    /// Registers inventory proxy `id`, asking for the upgrade; the answer's status and
    /// `x-trellis-ping-every` are checked.
    async fn open(cp: &Running, id: &str) -> Duplex {
        let tcp = tokio::net::TcpStream::connect(cp.addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn.with_upgrades());
        let reg = serde_json::json!({
            "proxy_id": id, "service": "inventory", "version": "v1", "inbound_addr": "127.0.0.1:4143",
            "admin_addr": "127.0.0.1:4191", "proxy_version": "test", "incremental": true,
        });
        let req = http::Request::post("/fleet/v1/stream")
            .header("host", "trellis")
            // A list, in another case: protocol names are compared without it.
            .header("upgrade", format!("h2c, {}", UPGRADE.to_uppercase()))
            .header("connection", "upgrade")
            .body(Full::new(Bytes::from(reg.to_string())))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 101);
        assert_eq!(resp.headers()["upgrade"], UPGRADE);
        assert_eq!(resp.headers()[trellis_model::fleet::PING_EVERY_HEADER], "2");
        let io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
        let (read, write) = tokio::io::split(io);
        Duplex { read: BufReader::new(read).lines(), write }
    }

    async fn send(&mut self, line: &str) {
        self.write.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    }

    /// The next line but pings within 10 s; `None` when the stream ended.
    async fn next(&mut self) -> Option<StreamMessage> {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.read.next_line()).await.expect("a line");
            match serde_json::from_str(&line.ok()??).unwrap() {
                StreamMessage::Ping => continue,
                message => return Some(message),
            }
        }
    }
}

/// The fleet's `(total, synced)` and the first proxy's NACK once `done` holds (within 10 s).
async fn fleet_until(cp: &Running, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let fleet: serde_json::Value =
            serde_json::from_str(&http_get(cp.addr, "trellis", "/api/v1/fleet").await.unwrap().1).unwrap();
        if done(&fleet) {
            return fleet;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the fleet never came to it: {fleet}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_configs_out_and_acks_and_reports_in() {
    let (repo, dir) = (PolicyRepo::demo(), tempfile::tempdir().unwrap());
    let cp = control_plane(&repo, dir.path()).await;
    let mut stream = Duplex::open(&cp, "duplex-1").await;
    let Some(StreamMessage::Config(config)) = stream.next().await else { panic!("a full config first") };

    // A NACK, then an ACK, on the stream: neither is answered, both are counted.
    let ack = |error: &str| {
        format!(r#"{{"type":"ack","proxy_id":"duplex-1","version":"{}","error":{error}}}"#, config.version)
    };
    stream.send(&ack(r#""regex too big""#)).await;
    fleet_until(&cp, |f| f["proxies"][0]["nack"] == "regex too big").await;
    stream.send(&ack("null")).await;
    fleet_until(&cp, |f| f["synced"] == 1).await;

    // Reports are answered in order: taken, a repeat taken as it was, then refused ones.
    let report = |id: &str, seq: u64| format!(r#"{{"type":"report","proxy_id":"{id}","seq":{seq},"series":[]}}"#);
    stream.send(&report("duplex-1", 1)).await;
    stream.send(&report("duplex-1", 1)).await;
    stream.send(&report("someone-else", 2)).await;
    stream.send("not json").await;
    assert_eq!(stream.next().await, Some(StreamMessage::Reported { report_every: 2 }));
    assert_eq!(stream.next().await, Some(StreamMessage::Reported { report_every: 2 }));
    let Some(StreamMessage::Refused { of, status, error }) = stream.next().await else { panic!("refused") };
    assert_eq!((of.as_str(), status), ("report", 403), "{error}");
    assert!(error.contains("may not speak for someone-else"), "{error}");
    let Some(StreamMessage::Refused { of, status, .. }) = stream.next().await else { panic!("refused") };
    assert_eq!((of.as_str(), status), ("line", 400), "an unreadable line");
    // Speaking for another proxy is audited, once for the stream however often it is tried.
    stream.send(&report("someone-else", 3)).await;
    let Some(StreamMessage::Refused { status: 403, .. }) = stream.next().await else { panic!("refused again") };
    // The audit log is written behind a queue: wait for the event, then for any second one.
    let denied = || async {
        let (_, body) = http_get(cp.addr, "trellis", "/api/v1/audit?kind=identity.denied").await.unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    for _ in 0..50 {
        if denied().await["items"].as_array().is_some_and(|items| !items.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audit = denied().await;
    let items = audit["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{audit}");
    assert_eq!(items[0]["detail"]["claimed_proxy_id"], "someone-else");
    assert_eq!(
        (items[0]["service"].as_str(), items[0]["detail"]["proxy_id"].as_str()),
        (Some("inventory"), Some("duplex-1"))
    );

    // The stream goes on: a commit comes as a delta on the same connection.
    repo.set_inventory_split(50, 50, "even split");
    let Some(StreamMessage::Delta(delta)) = stream.next().await else { panic!("a delta after the commit") };
    assert_eq!(delta.base, config.version);

    // Closing the connection disconnects the proxy.
    drop(stream);
    fleet_until(&cp, |f| f["total"] == 0).await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_past_the_limit_ends_the_stream_with_a_reason() {
    let (repo, dir) = (PolicyRepo::demo(), tempfile::tempdir().unwrap());
    let cp = control_plane(&repo, dir.path()).await;
    let mut stream = Duplex::open(&cp, "duplex-2").await;
    assert!(matches!(stream.next().await, Some(StreamMessage::Config(_))));
    let endless = vec![b'x'; 3 << 20];
    // The control plane may stop reading before all of it went out.
    let _ = stream.write.write_all(&endless).await;
    let Some(StreamMessage::Refused { of, status, .. }) = stream.next().await else { panic!("refused") };
    assert_eq!((of.as_str(), status), ("line", 413));
    assert_eq!(stream.next().await, None, "and the stream ends");
    cp.shutdown().await;
}
