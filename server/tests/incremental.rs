//! Incremental config updates, spoken by a test client as a third-party proxy would: one full
//! config, then deltas of what changed for it (an endpoint joining, a route changing) that,
//! applied in order, give exactly the full config a new proxy is sent; a proxy reconnecting
//! with the version it runs is sent nothing until something changes, and then a delta.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;
use trellis_model::ProxyConfig;
use trellis_model::fleet::{Delta, StreamMessage};
use trellis_server::gitops::PolicySource;
use trellis_server::serve::{Running, ServeConfig};
use trellis_server::testing::PolicyRepo;

/// A config stream, read a message at a time.
struct Stream {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl Stream {
    async fn open(cp: &Running, id: &str, service: &str, incremental: bool, resume: Option<&str>) -> Stream {
        let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let n = id.bytes().map(u32::from).sum::<u32>() % 250 + 1;
        let reg = serde_json::json!({
            "proxy_id": id, "service": service, "version": "v1", "inbound_addr": format!("127.0.0.{n}:4143"),
            "admin_addr": "127.0.0.1:4191", "proxy_version": "test", "incremental": incremental, "resume": resume,
        });
        let req = http::Request::post(format!("{}/fleet/v1/stream", cp.url())).body(Full::new(reg.to_string().into()));
        let resp = client.request(req.unwrap()).await.unwrap();
        assert_eq!(resp.status(), 200);
        Stream { body: resp.into_body(), buf: Vec::new() }
    }

    /// The next config or delta within `wait`; pings are skipped.
    async fn next(&mut self, wait: Duration) -> Option<StreamMessage> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(n) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=n).collect();
                match serde_json::from_slice(&line[..n]).unwrap() {
                    StreamMessage::Ping => continue,
                    message => return Some(message),
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame()).await.ok()??.unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    async fn config(&mut self) -> ProxyConfig {
        match self.next(Duration::from_secs(10)).await {
            Some(StreamMessage::Config(c)) => c,
            other => panic!("expected a full config, got {other:?}"),
        }
    }

    async fn delta(&mut self) -> Delta {
        match self.next(Duration::from_secs(10)).await {
            Some(StreamMessage::Delta(d)) => d,
            other => panic!("expected a delta, got {other:?}"),
        }
    }
}

/// What a new storefront proxy is sent now.
async fn full_config(cp: &Running, expected: &str) -> ProxyConfig {
    let mut fresh = Stream::open(cp, &format!("fresh-{expected}"), "storefront", false, None).await;
    let config = fresh.config().await;
    assert_eq!(config.version, expected, "the stream and a new proxy agree on the version");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_keep_a_proxy_equal_to_the_full_config_and_a_resumed_proxy_is_not_resent() {
    let (repo, dir) = (PolicyRepo::demo(), tempfile::tempdir().unwrap());
    let source = PolicySource { poll_interval: Duration::from_millis(100), ..PolicySource::local(repo.path(), "main") };
    let cp = trellis_server::serve::start(ServeConfig::local(source, dir.path())).await.unwrap();

    let mut storefront = Stream::open(&cp, "s-1", "storefront", true, None).await;
    let mut view = storefront.config().await;
    assert!(!view.endpoints.contains_key("inventory"));

    // An inventory proxy joins: the storefront proxy is told of that endpoint alone.
    let _inventory = Stream::open(&cp, "i-1", "inventory", true, None).await;
    let delta = storefront.delta().await;
    assert_eq!(delta.base, view.version);
    assert!(delta.services.is_empty() && delta.removed_services.is_empty() && delta.mesh.is_none(), "{delta:?}");
    let joined: Vec<&str> = delta.endpoints["inventory"].set.iter().map(|e| e.proxy_id.as_str()).collect();
    assert_eq!(joined, ["i-1"]);
    view = view.apply(&delta).unwrap();
    assert_eq!(view, full_config(&cp, &delta.version).await);

    // A route changes: the service is sent whole, its endpoints not again. (The revision may
    // come first on its own, the weights its Rollout held after it.)
    let head = repo.set_inventory_split(90, 10, "inventory: 10% to v2").to_string();
    let weights =
        |c: &ProxyConfig| c.services["inventory"].rules[0].backends.iter().map(|b| b.weight).collect::<Vec<_>>();
    while view.revision != head || weights(&view) != [90, 10] {
        let delta = storefront.delta().await;
        assert!(delta.endpoints.is_empty() && delta.services.keys().all(|s| s == "inventory"), "{delta:?}");
        view = view.apply(&delta).unwrap();
    }
    assert_eq!(view, full_config(&cp, &view.version).await);

    // Reconnecting with the version it runs, it is sent nothing (pings only) ...
    drop(storefront);
    let mut resumed = Stream::open(&cp, "s-1", "storefront", true, Some(&view.version)).await;
    assert_eq!(resumed.next(Duration::from_millis(2500)).await, None, "nothing to send");
    // ... and what changes next as a delta from it.
    let _second = Stream::open(&cp, "i-2", "inventory", true, None).await;
    let delta = resumed.delta().await;
    assert_eq!(delta.base, view.version);
    view = view.apply(&delta).unwrap();
    assert_eq!(view.endpoints["inventory"].len(), 2);
    assert_eq!(view, full_config(&cp, &delta.version).await);

    // A proxy that reconnects with a version the control plane cannot continue from gets the
    // full config; one that takes no deltas always does.
    let mut stranger = Stream::open(&cp, "s-2", "storefront", true, Some("elsewhere.0123456789abcdef")).await;
    assert_eq!(stranger.config().await, view);
    let mut plain = Stream::open(&cp, "s-3", "storefront", false, Some(&view.version)).await;
    assert_eq!(plain.next(Duration::from_millis(500)).await, None, "it runs the current version");
    let _third = Stream::open(&cp, "i-3", "inventory", true, None).await;
    let full = plain.config().await;
    assert_eq!(full.endpoints["inventory"].len(), 3);
    cp.shutdown().await;
}
