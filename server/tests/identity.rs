//! Identity issuance end to end: a proxy with its service's join token receives a day-long
//! certificate naming its SPIFFE identity (its key never leaves it), and the fleet, the
//! metrics and `trellis check` show the expiry; a token for another service gets nothing, and
//! without a certificate a proxy cannot join.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use trellis_server::gitops::PolicySource;
use trellis_server::serve::{IdentityConfig, Running, ServeConfig};
use trellis_server::testing::{PolicyRepo, http_get, wait_audited};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_with_its_services_token_is_certified_and_another_service_is_refused() {
    let repo = PolicyRepo::demo();
    let data = tempfile::tempdir().unwrap();
    let cp = trellis_server::serve::start(ServeConfig {
        identity: Some(IdentityConfig::new(data.path().join("identity"), "mesh.test")),
        ..ServeConfig::local(PolicySource::local(repo.path(), "main"), data.path())
    })
    .await
    .unwrap();
    let ca = cp.state.ca.clone().unwrap();
    let app: SocketAddr = "127.0.0.1:9".parse().unwrap();

    let mut good = trellis_proxy::Settings::new("inventory", "v1", app, &cp.url());
    good.join_token = Some(trellis_proxy::env::Secret(ca.join_token("inventory")));
    let good = trellis_proxy::start(good).await.unwrap();
    // A token for inventory does not make a payments proxy.
    let mut forged = trellis_proxy::Settings::new("payments", "v1", app, &cp.url());
    forged.join_token = Some(trellis_proxy::env::Secret(ca.join_token("inventory")));
    let forged = trellis_proxy::start(forged).await.unwrap();

    let started = Instant::now();
    let cert = loop {
        if let Some(cert) = good.shared.identity.load_full() {
            break cert;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no certificate");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(cert.identity, "spiffe://mesh.test/svc/inventory");
    assert!(cert.chain_pem.matches("BEGIN CERTIFICATE").count() == 2, "leaf and issuer");
    assert!(cert.key_pem.contains("PRIVATE KEY"));
    let day = (cert.not_after_ms - now_ms()) as f64 / 3_600_000.0;
    assert!((23.9..=24.0).contains(&day), "{day} h");

    // Only the certified proxy joins: the fleet knows proxies by their certificates.
    let proxies = wait_fleet(&cp, 1).await;
    let mine = proxies.iter().find(|p| p["service"] == "inventory").unwrap();
    assert_eq!(mine["cert_expires"].as_i64(), Some(cert.not_after_ms));
    assert!(forged.shared.identity.load().is_none());

    let (_, metrics) = http_get(good.admin, "admin", "/metrics").await.unwrap();
    assert!(metrics.contains(&format!("trellis_proxy_identity_expiry_timestamp_seconds {}", cert.not_after_ms / 1000)));
    let (_, cp_metrics) = http_get(cp.addr, "trellis", "/metrics").await.unwrap();
    assert!(cp_metrics.contains("trellis_identity_issuer_expiry_timestamp_seconds "), "{cp_metrics}");
    let fleet: serde_json::Value =
        serde_json::from_str(&http_get(cp.addr, "trellis", "/api/v1/fleet").await.unwrap().1).unwrap();
    assert!(fleet["issuer_expires"].as_i64().unwrap() > cert.not_after_ms);

    let (_, body) = http_get(cp.addr, "trellis", "/api/v1/health").await.unwrap();
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let status =
        |name: &str| health["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()["status"].clone();
    assert_eq!(status("the trust anchor is valid"), "ok");
    assert_eq!(status("the issuer is valid"), "ok");
    assert_eq!(status("every proxy has a valid certificate"), "ok", "{health}");
    wait_audited(cp.addr, "identity.denied", "not valid for service \\\"payments\\\"").await;
    cp.shutdown().await;
}

async fn wait_fleet(cp: &Running, n: usize) -> Vec<serde_json::Value> {
    let started = Instant::now();
    loop {
        let (_, body) = http_get(cp.addr, "trellis", "/api/v1/proxies").await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let items = v["items"].as_array().unwrap().clone();
        if items.len() == n && items.iter().any(|p| !p["cert_expires"].is_null()) {
            return items;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
