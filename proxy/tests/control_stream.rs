//! The config stream from the proxy's side, against a stand-in control plane speaking the real
//! protocol (NDJSON configs and deltas; ACKs and reports on the upgraded stream, or POSTed
//! beside a plain one): a config the proxy cannot apply is NACKed with its reason and the
//! previous config keeps serving traffic; a duplex stream carries everything the proxy sends.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use trellis_model::fleet::{Ack, Delta, EndpointChanges, ProxyMessage, StreamMessage};
use trellis_model::{Backend, Endpoint, ProxyConfig, RuleConfig, ServiceConfig};

#[tokio::test]
async fn a_config_the_proxy_cannot_apply_is_nacked_and_the_last_good_one_keeps_serving() {
    let upstream = upstream().await;
    let cp = ControlPlane::start(true).await;
    let proxy = cp.follower().await;

    cp.push(config("r1.a-1", &upstream.to_string())).await;
    let first = cp.next_ack().await;
    assert_eq!(
        (first.proxy_id, first.version.as_str(), first.error),
        (proxy.shared.settings.proxy_id.clone(), "r1.a-1", None)
    );
    assert_eq!(get(proxy.outbound).await, 200, "the applied config routes to the upstream");

    // The same version again (a reconnect, another replica) is ACKed and changes nothing.
    let applied = proxy.shared.config.load_full();
    cp.push(config("r1.a-1", &upstream.to_string())).await;
    let again = cp.next_ack().await;
    assert_eq!((again.version.as_str(), again.error), ("r1.a-1", None));
    assert!(std::sync::Arc::ptr_eq(&applied, &proxy.shared.config.load_full()), "the config in force stays");

    cp.push(config("r2.a-2", "not-an-address")).await;
    let second = cp.next_ack().await;
    assert_eq!(second.version, "r2.a-2");
    let reason = second.error.expect("the unusable config is NACKed");
    assert!(reason.contains("not-an-address"), "the NACK says why: {reason}");

    let admin = admin_json(proxy.admin, "/config").await;
    assert_eq!(admin["version"], "r1.a-1", "the proxy still reports the last good config");
    assert_eq!(get(proxy.outbound).await, 200, "and still routes with it");
    proxy.shutdown().await;
}

#[tokio::test]
async fn lines_that_arrive_together_are_applied_in_order_and_answered_once_for_the_last() {
    let upstream = upstream().await;
    let cp = ControlPlane::start(true).await;
    let proxy = cp.follower().await;
    cp.push(config("r1.a", "127.0.0.1:1")).await;
    assert_eq!(cp.next_ack().await.version, "r1.a");

    // A backlog: a delta moving the endpoint to the upstream, a ping, a delta on top of it.
    let delta = |base: &str, version: &str| Delta {
        base: base.into(),
        version: version.into(),
        revision: version.split('.').next().unwrap().into(),
        ..Default::default()
    };
    let moved = config("r2.b", &upstream.to_string()).endpoints["svc"].clone();
    let to_upstream = Delta {
        endpoints: [("svc".to_string(), EndpointChanges { set: moved, removed: vec![] })].into(),
        ..delta("r1.a", "r2.b")
    };
    let backlog =
        vec![StreamMessage::Delta(to_upstream), StreamMessage::Ping, StreamMessage::Delta(delta("r2.b", "r3.c"))];
    cp.push_together(backlog).await;
    let ack = cp.next_ack().await;
    assert_eq!((ack.version.as_str(), ack.error), ("r3.c", None), "one ACK, for the config the lines end with");
    assert_eq!(admin_json(proxy.admin, "/config").await["version"], "r3.c");
    assert_eq!(get(proxy.outbound).await, 200, "the first delta's endpoint is in force");

    cp.push(config("r4.d", &upstream.to_string())).await;
    assert_eq!(cp.next_ack().await.version, "r4.d", "nothing was answered for the lines in between");
    proxy.shutdown().await;
}

#[tokio::test]
async fn on_a_duplex_stream_acks_and_reports_go_on_the_same_connection() {
    let cp = ControlPlane::start(true).await;
    let proxy = cp.follower().await;
    cp.push(config("r1.a", "127.0.0.1:1")).await;
    assert_eq!(cp.next_ack().await.version, "r1.a");
    // The first report comes within two seconds of the proxy's identity (none here).
    let started = std::time::Instant::now();
    while cp.reports.load(Ordering::Relaxed) < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "two reports in 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cp.posts.load(Ordering::Relaxed), 0, "nothing POSTed beside the stream");
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_control_plane_without_the_upgrade_gets_the_plain_stream_and_posted_acks() {
    let cp = ControlPlane::start(false).await;
    let proxy = cp.follower().await;
    cp.push(config("r1.a", "127.0.0.1:1")).await;
    let ack = cp.next_ack().await;
    assert_eq!((ack.version.as_str(), ack.error), ("r1.a", None));
    assert!(cp.posts.load(Ordering::Relaxed) >= 1, "the ACK was POSTed");
    assert_eq!(cp.reports.load(Ordering::Relaxed), 0);
    proxy.shutdown().await;
}

// ---- harness -----------------------------------------------------------------------------

/// A control plane that streams whatever the test pushes and records the ACKs it receives:
/// with `duplex`, on the stream's upgraded connection (and it answers reports there), else
/// POSTed beside a plain stream, as a control plane without the upgrade takes them.
struct ControlPlane {
    addr: SocketAddr,
    /// Each item goes out as one frame.
    frames: mpsc::Sender<Bytes>,
    acks: tokio::sync::Mutex<mpsc::Receiver<Ack>>,
    /// Reports taken on the duplex stream, and requests POSTed (ACKs, reports).
    reports: Arc<AtomicUsize>,
    posts: Arc<AtomicUsize>,
}

impl ControlPlane {
    async fn start(duplex: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frame_tx, frame_rx) = mpsc::channel::<Bytes>(4);
        let (ack_tx, ack_rx) = mpsc::channel::<Ack>(4);
        let (reports, posts) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // One proxy, one stream: the receiver moves into the first stream request.
        let frames = Arc::new(Mutex::new(Some(frame_rx)));
        let counters = (reports.clone(), posts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (frames, ack_tx, counters) = (frames.clone(), ack_tx.clone(), counters.clone());
                let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                    let (frames, ack_tx, (reports, posts)) = (frames.clone(), ack_tx.clone(), counters.clone());
                    async move {
                        let path = req.uri().path().to_string();
                        let mut resp = match path.as_str() {
                            "/fleet/v1/stream" => {
                                let rx = frames.lock().unwrap().take().expect("one stream per test");
                                if duplex {
                                    assert_eq!(req.headers()["upgrade"], trellis_model::fleet::UPGRADE);
                                    let upgrade = hyper::upgrade::on(&mut req);
                                    tokio::spawn(async move {
                                        let io = TokioIo::new(upgrade.await.unwrap());
                                        serve_duplex(io, rx, ack_tx, reports).await;
                                    });
                                    let mut resp = http::Response::new(Full::new(Bytes::new()).boxed());
                                    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                                    resp.headers_mut()
                                        .insert("upgrade", trellis_model::fleet::UPGRADE.parse().unwrap());
                                    resp.headers_mut().insert("connection", "upgrade".parse().unwrap());
                                    return Ok::<_, Infallible>(resp);
                                }
                                let lines = futures::stream::unfold(rx, |mut rx| async move {
                                    let frame = rx.recv().await?;
                                    Some((Ok::<_, Infallible>(Frame::data(frame)), rx))
                                });
                                http::Response::new(StreamBody::new(lines).boxed())
                            }
                            path => {
                                posts.fetch_add(1, Ordering::Relaxed);
                                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                                if path == "/fleet/v1/ack" {
                                    ack_tx.send(serde_json::from_slice(&bytes).unwrap()).await.unwrap();
                                }
                                http::Response::new(Full::new(Bytes::new()).boxed())
                            }
                        };
                        *resp.status_mut() = http::StatusCode::OK;
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
                });
            }
        });
        ControlPlane { addr, frames: frame_tx, acks: tokio::sync::Mutex::new(ack_rx), reports, posts }
    }

    /// A proxy of `caller` following this control plane (its application is nowhere).
    async fn follower(&self) -> trellis_proxy::Running {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let settings = trellis_proxy::Settings::new("caller", "v1", closed, &format!("http://{}", self.addr));
        trellis_proxy::start(settings).await.unwrap()
    }

    async fn push(&self, config: ProxyConfig) {
        self.push_together(vec![StreamMessage::Config(config)]).await;
    }

    /// Sends `messages` as lines of one frame, as a stream that fell behind delivers them.
    async fn push_together(&self, messages: Vec<StreamMessage>) {
        let mut frame = Vec::new();
        for message in messages {
            frame.extend(serde_json::to_vec(&message).unwrap());
            frame.push(b'\n');
        }
        self.frames.send(frame.into()).await.unwrap();
    }

    async fn next_ack(&self) -> Ack {
        let mut acks = self.acks.lock().await;
        tokio::time::timeout(Duration::from_secs(10), acks.recv()).await.expect("an ACK within 10 s").unwrap()
    }
}

/// The control plane's end of an upgraded stream: pushed frames out; ACK lines recorded,
/// report lines counted and answered.
async fn serve_duplex(
    io: TokioIo<hyper::upgrade::Upgraded>,
    mut frames: mpsc::Receiver<Bytes>,
    acks: mpsc::Sender<Ack>,
    reports: Arc<AtomicUsize>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (read, write) = tokio::io::split(io);
    let write = Arc::new(tokio::sync::Mutex::new(write));
    let out = write.clone();
    tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            out.lock().await.write_all(&frame).await.unwrap();
        }
    });
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<ProxyMessage>(&line).unwrap() {
            ProxyMessage::Ack(ack) => acks.send(ack).await.unwrap(),
            ProxyMessage::Report(_) => {
                reports.fetch_add(1, Ordering::Relaxed);
                let answer = trellis_model::fleet::line(&StreamMessage::Reported { report_every: 2 });
                write.lock().await.write_all(&answer).await.unwrap();
            }
        }
    }
}

fn config(version: &str, endpoint: &str) -> ProxyConfig {
    let rule = RuleConfig::catch_all(vec![Backend { version: "v1".into(), weight: 100 }]);
    let endpoints =
        vec![Endpoint { version: "v1".into(), addr: endpoint.into(), proxy_id: "up".into(), identity: None }];
    ProxyConfig {
        version: version.into(),
        revision: version.split('.').next().unwrap().into(),
        mesh: Default::default(),
        services: [("svc".to_string(), ServiceConfig::new("svc", &["v1"], vec![rule]))].into(),
        endpoints: [("svc".to_string(), endpoints)].into(),
    }
}

async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let svc = hyper::service::service_fn(|_req: http::Request<Incoming>| async {
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    addr
}

async fn get(outbound: SocketAddr) -> u16 {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::get(format!("http://{outbound}/")).header("host", "svc").body(Full::default()).unwrap();
    client.request(req).await.unwrap().status().as_u16()
}

async fn admin_json(admin: SocketAddr, path: &str) -> serde_json::Value {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.request(http::Request::get(format!("http://{admin}{path}")).body(Full::default()).unwrap());
    let body = resp.await.unwrap().into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}
