//! The config stream from the proxy's side, against a stand-in control plane speaking the real
//! protocol (h2c, NDJSON snapshots, ACKs posted back): a config the proxy cannot apply is NACKed
//! with its reason and the previous config keeps serving traffic.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use trellis_model::fleet::{Ack, StreamMessage};
use trellis_model::{Backend, Endpoint, ProxyConfig, RuleConfig, ServiceConfig};

#[tokio::test]
async fn a_config_the_proxy_cannot_apply_is_nacked_and_the_last_good_one_keeps_serving() {
    let upstream = upstream().await;
    let cp = ControlPlane::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let settings = trellis_proxy::Settings::new("caller", "v1", closed, &format!("http://{}", cp.addr));
    let proxy = trellis_proxy::start(settings).await.unwrap();

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

// ---- harness -----------------------------------------------------------------------------

/// A control plane that streams whatever the test pushes and records the ACKs it receives.
struct ControlPlane {
    addr: SocketAddr,
    configs: mpsc::Sender<ProxyConfig>,
    acks: tokio::sync::Mutex<mpsc::Receiver<Ack>>,
}

impl ControlPlane {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (config_tx, config_rx) = mpsc::channel::<ProxyConfig>(4);
        let (ack_tx, ack_rx) = mpsc::channel::<Ack>(4);
        // One proxy, one stream: the receiver moves into the first stream request.
        let configs = Arc::new(Mutex::new(Some(config_rx)));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (configs, ack_tx) = (configs.clone(), ack_tx.clone());
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let (configs, ack_tx) = (configs.clone(), ack_tx.clone());
                    async move {
                        let body = match req.uri().path() {
                            "/fleet/v1/stream" => {
                                let rx = configs.lock().unwrap().take().expect("one stream per test");
                                let lines = futures::stream::unfold(rx, |mut rx| async move {
                                    let config = rx.recv().await?;
                                    let mut line = serde_json::to_vec(&StreamMessage::Config(config)).unwrap();
                                    line.push(b'\n');
                                    Some((Ok::<_, Infallible>(Frame::data(Bytes::from(line))), rx))
                                });
                                StreamBody::new(lines).boxed()
                            }
                            _ => {
                                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                                ack_tx.send(serde_json::from_slice(&bytes).unwrap()).await.unwrap();
                                Full::new(Bytes::new()).boxed()
                            }
                        };
                        Ok::<_, Infallible>(http::Response::new(body))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        ControlPlane { addr, configs: config_tx, acks: tokio::sync::Mutex::new(ack_rx) }
    }

    async fn push(&self, config: ProxyConfig) {
        self.configs.send(config).await.unwrap();
    }

    async fn next_ack(&self) -> Ack {
        let mut acks = self.acks.lock().await;
        tokio::time::timeout(Duration::from_secs(10), acks.recv()).await.expect("an ACK within 10 s").unwrap()
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
