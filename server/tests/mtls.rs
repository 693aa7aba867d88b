//! mTLS between proxies and access policy, with real TLS: proxies certified by the control
//! plane talk TLS 1.3 to each other; the inbound side admits callers by verified identity and
//! the service's AccessPolicy; plaintext is refused in strict mode and counted in permissive;
//! certificates from another CA, and expired ones, never complete a handshake; a rotation
//! under load fails no request; rate limits count each verified caller apart.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trellis_server::gitops::PolicySource;
use trellis_server::identity::Ca;
use trellis_server::serve::{IdentityConfig, Running, ServeConfig};
use trellis_server::testing::{PolicyRepo, fixed_app, http_get, http_request, wait_audited};

const DOMAIN: &str = "mesh.test";

// One runtime thread, as a sidecar runs: the proxies seal their TLS records for the batched
// writes (the rotation test below runs on several threads, where they write straight).
#[tokio::test]
async fn proxies_speak_mtls_and_the_inbound_side_admits_by_identity_and_policy() {
    let Shop { repo, data, cp, inventory, storefront } = shop(|identity| identity).await;
    let ca = cp.state.ca.clone().unwrap();
    wait_mtls_route(&storefront, "inventory").await;

    // The demo policy: only the storefront may GET (or HEAD) /stock.
    let (status, body) = via(&storefront, "GET", "/stock").await;
    assert_eq!((status, body.as_str()), (200, "stock"));
    assert!(counter(&inventory, "trellis_proxy_inbound_connections_total{transport=\"mtls\"}").await >= 1);
    assert_eq!(counter(&inventory, "trellis_proxy_inbound_connections_total{transport=\"plaintext\"}").await, 0);
    let (status, body) = via(&storefront, "POST", "/stock").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("access denied by AccessPolicy/inventory-readers"), "{body}");

    // Plaintext straight to the inbound listener: strict mode answers why.
    let (status, body) = http_get(inventory.inbound, "inventory", "/stock").await.unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("Mesh/mtls=strict") && body.contains("plaintext is refused"), "{body}");
    assert_eq!(counter(&inventory, "trellis_proxy_inbound_connections_total{transport=\"plaintext\"}").await, 1);

    // A caller with a valid certificate for catalog is who it says, and still not allowed.
    let anchor = &ca.anchor_pem;
    let catalog = Client::certified(&ca, "catalog");
    let (status, denied_by) = catalog.get(inventory.inbound, "inventory", anchor, "/stock").await.unwrap();
    assert_eq!((status, denied_by.as_deref()), (403, Some("AccessPolicy/inventory-readers")));
    let shop = Client::certified(&ca, "storefront");
    assert_eq!(shop.get(inventory.inbound, "inventory", anchor, "/stock").await.unwrap(), (200, None));
    let metrics = http_get(inventory.admin, "admin", "/metrics").await.unwrap().1;
    assert!(
        metrics
            .contains("trellis_proxy_access_denied_total{caller=\"catalog\",by=\"AccessPolicy/inventory-readers\"} 1"),
        "{metrics}"
    );
    // The denial reaches the topology as a denied edge, saying what denied it.
    let started = Instant::now();
    loop {
        let (_, body) = http_get(cp.addr, "trellis", "/api/v1/topology?window=1m").await.unwrap();
        let topology: serde_json::Value = serde_json::from_str(&body).unwrap();
        let edge =
            topology["edges"].as_array().unwrap().iter().find(|e| e["from"] == "catalog" && e["to"] == "inventory");
        if let Some(edge) = edge.filter(|e| e["denied"] == 1) {
            assert_eq!(edge["denied_by"], serde_json::json!(["AccessPolicy/inventory-readers"]));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no denied edge: {topology}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The storefront refuses to talk to a server that is not the service it asked for.
    let wrong = shop.get(inventory.inbound, "payments", anchor, "/stock").await.unwrap_err();
    assert!(wrong.contains("certificate") || wrong.contains("Name"), "{wrong}");

    // Another CA's certificate, even naming the storefront, never completes a handshake.
    let stranger = Client::from_other_ca("storefront");
    let refused = stranger.get(inventory.inbound, "inventory", anchor, "/stock").await.unwrap_err();
    assert!(!refused.is_empty());
    // Nor does an expired one from the right CA.
    let mut short = Ca::load_or_create(&data.path().join("identity"), DOMAIN).unwrap();
    short.cert_ttl = Duration::from_secs(1);
    let expired = Client::certified(&short, "storefront");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(expired.get(inventory.inbound, "inventory", anchor, "/stock").await.is_err());
    let failures = counter(&inventory, "trellis_proxy_inbound_tls_failures_total{reason=\"handshake\"}").await;
    assert!(failures >= 2, "{failures}");

    // The control plane: a proxy certified as catalog cannot fetch inventory's config, and
    // nobody joins without a certificate.
    let fleet = cp.fleet_addr.unwrap();
    let registration = serde_json::json!({
        "proxy_id": "rogue", "service": "inventory", "version": "v1",
        "inbound_addr": "127.0.0.1:1", "admin_addr": "127.0.0.1:2", "proxy_version": "0"
    })
    .to_string()
    .leak();
    let (status, _, body) =
        catalog.request(fleet, "trellis", anchor, "POST", "/fleet/v1/stream", registration).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("certified as catalog may not speak for inventory"), "{body}");
    let (status, body) = http_request(
        http::Method::POST,
        cp.addr,
        "/fleet/v1/stream",
        &[("content-type", "application/json")],
        Bytes::from_static(registration.as_bytes()),
    )
    .await
    .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("TRELLIS_JOIN_TOKEN"), "{body}");
    wait_audited(cp.addr, "identity.denied", "certified as catalog, tried to speak for inventory").await;
    assert_eq!(cp.state.fleet.proxies().len(), 2, "the rogue never joined");

    // Permissive, and every caller allowed: plaintext gets through, and is counted.
    repo.commit(
        "mesh.yaml",
        "kind: Mesh\nname: shop\nmtls: permissive\naccess: allow-all\n",
        "mesh: permissive while the billing team migrates",
    );
    let started = Instant::now();
    loop {
        let (status, body) = http_get(storefront.inbound, "storefront", "/").await.unwrap();
        if status == 200 {
            assert_eq!(body, "shop");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "permissive never applied: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(counter(&storefront, "trellis_proxy_inbound_connections_total{transport=\"plaintext\"}").await >= 1);
    // Rules still need an identity: plaintext cannot prove it is the storefront.
    let (status, body) = http_get(inventory.inbound, "inventory", "/stock").await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("AccessPolicy/inventory-readers"), "{body}");
    let batch = trellis_proxy::batch::stats();
    assert!(
        batch.writes > 0 && batch.submits + batch.alone > 0,
        "the proxies' writes went through the batch: {batch:?}"
    );
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_without_a_failed_request() {
    // Six-second certificates: each proxy renews every four seconds.
    let six_seconds = |identity| IdentityConfig { cert_lifetime: Duration::from_secs(6), ..identity };
    // Bound, not left out: the repository's and the data's directories live as long as these.
    let Shop { repo: _repo, data: _data, cp, inventory, storefront } = shop(six_seconds).await;
    wait_mtls_route(&storefront, "inventory").await;

    let first = (expiry(&inventory), expiry(&storefront));
    let started = Instant::now();
    let (mut sent, mut handshakes_seen) = (0, 0);
    // Nine seconds of four concurrent callers span two renewals of each proxy.
    while started.elapsed() < Duration::from_secs(9) {
        let batch = (0..4).map(|_| via(&storefront, "GET", "/stock"));
        for (status, body) in futures::future::join_all(batch).await {
            assert_eq!((status, body.as_str()), (200, "stock"), "request {sent} failed during rotation");
            sent += 1;
        }
        handshakes_seen = counter(&inventory, "trellis_proxy_inbound_connections_total{transport=\"mtls\"}").await;
    }
    assert!(expiry(&inventory) > first.0 + 3_000, "inventory renewed");
    assert!(expiry(&storefront) > first.1 + 3_000, "storefront renewed");
    assert!(sent > 100, "{sent} requests");
    assert!(handshakes_seen >= 1);
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_each_verified_caller_to_its_rate_and_show_on_the_traffic_page() {
    let Shop { repo, data: _data, cp, inventory, storefront } = shop(|identity| identity).await;
    let ca = cp.state.ca.clone().unwrap();
    repo.commit(
        "policies/inventory.yaml",
        "kind: TrafficPolicy\nname: inventory\nservice: inventory\nrateLimit:\n  perCaller: { requestsPerSecond: 1, burst: 2 }\n  overrides: [{ from: [storefront], requestsPerSecond: 20 }]\n---\nkind: AccessPolicy\nname: inventory-readers\nservice: inventory\nrules:\n  - from: [storefront, catalog]\n",
        "inventory: catalog may read stock, two a second at most",
    );
    let started = Instant::now();
    while inventory.shared.config.load().services.get("inventory").is_none_or(|s| s.traffic.rate_limit.is_none()) {
        assert!(started.elapsed() < Duration::from_secs(15), "the rate limit never reached inventory's proxy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_mtls_route(&storefront, "inventory").await;

    // catalog: its burst of two, then refused, told by what.
    let catalog = Client::certified(&ca, "catalog");
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(catalog.get(inventory.inbound, "inventory", &ca.anchor_pem, "/stock").await.unwrap());
    }
    let limited = Some("TrafficPolicy/inventory".to_string());
    assert_eq!(answers[..2], [(200, None), (200, None)], "{answers:?}");
    assert_eq!(answers[2..], [(429, limited.clone()), (429, limited.clone()), (429, limited)], "{answers:?}");
    // The storefront, at the same moment, has its own (overridden) rate.
    for _ in 0..10 {
        assert_eq!(via(&storefront, "GET", "/stock").await, (200, "stock".to_string()));
    }
    let refused =
        "trellis_proxy_rate_limited_total{caller=\"catalog\",by=\"TrafficPolicy/inventory\",scope=\"caller\"}";
    assert_eq!(counter(&inventory, refused).await, 3);

    // The Traffic page's data: the limit in words, and who was refused.
    let started = Instant::now();
    loop {
        let (_, body) = http_get(cp.addr, "trellis", "/api/v1/traffic").await.unwrap();
        let traffic: serde_json::Value = serde_json::from_str(&body).unwrap();
        let services = traffic["services"].as_array().unwrap();
        let inv = services.iter().find(|s| s["service"] == "inventory");
        if let Some(inv) = inv.filter(|s| !s["limited"].as_array().unwrap().is_empty()) {
            assert_eq!(
                inv["rate_limits"],
                serde_json::json!(["TrafficPolicy/inventory: 1/s (bursts of 2) per caller, 20/s for storefront"])
            );
            let limited = &inv["limited"][0];
            assert_eq!((limited["caller"].as_str(), limited["requests"].as_u64()), (Some("catalog"), Some(3)));
            assert_eq!(limited["by"], "TrafficPolicy/inventory");
            assert_eq!(inv["limited"].as_array().unwrap().len(), 1, "the storefront was never refused");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no refusals on the Traffic page: {traffic}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cp.shutdown().await;
}

/// The demo's policy with inventory on v1 only, a control plane that certifies proxies, and
/// inventory's and the storefront's proxies certified by it.
struct Shop {
    repo: PolicyRepo,
    data: tempfile::TempDir,
    cp: Running,
    inventory: trellis_proxy::Running,
    storefront: trellis_proxy::Running,
}

async fn shop(identity: impl FnOnce(IdentityConfig) -> IdentityConfig) -> Shop {
    let repo = PolicyRepo::demo();
    repo.set_inventory_split(100, 0, "inventory: v1 only");
    let data = tempfile::tempdir().unwrap();
    let cp =
        control_plane(&repo, data.path(), identity(IdentityConfig::new(data.path().join("identity"), DOMAIN))).await;
    let inventory = proxy(&cp, "inventory", "v1", fixed_app("stock", 200).await).await;
    let storefront = proxy(&cp, "storefront", "v1", fixed_app("shop", 200).await).await;
    Shop { repo, data, cp, inventory, storefront }
}

async fn control_plane(repo: &PolicyRepo, dir: &std::path::Path, identity: IdentityConfig) -> Running {
    trellis_server::serve::start(ServeConfig {
        identity: Some(identity),
        ..ServeConfig::local(PolicySource::local(repo.path(), "main"), dir)
    })
    .await
    .unwrap()
}

async fn proxy(cp: &Running, service: &str, version: &str, app: SocketAddr) -> trellis_proxy::Running {
    let mut settings = trellis_proxy::Settings::new(service, version, app, &cp.url());
    let token = cp.state.ca.as_ref().unwrap().join_token(service);
    settings.join_token = Some(trellis_proxy::env::Secret(token));
    trellis_proxy::start(settings).await.unwrap()
}

/// Until `caller` holds a certificate and knows `service`'s endpoint by its identity.
async fn wait_mtls_route(caller: &trellis_proxy::Running, service: &str) {
    let started = Instant::now();
    loop {
        let config = caller.shared.config.load();
        let known = config.endpoints.get(service).is_some_and(|e| e.iter().all(|e| e.identity.is_some()));
        if known && caller.shared.tls.load().is_some() {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no mTLS route to {service}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A request through `caller`'s outbound listener to inventory.
async fn via(caller: &trellis_proxy::Running, method: &str, path: &str) -> (u16, String) {
    let method = http::Method::from_bytes(method.as_bytes()).unwrap();
    let (status, body) =
        http_request(method, caller.outbound, path, &[("host", "inventory")], Bytes::new()).await.unwrap();
    (status.as_u16(), body)
}

async fn counter(p: &trellis_proxy::Running, series: &str) -> u64 {
    let (_, metrics) = http_get(p.admin, "admin", "/metrics").await.unwrap();
    metrics.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
}

fn expiry(p: &trellis_proxy::Running) -> i64 {
    p.shared.identity.load().as_ref().map_or(0, |c| c.not_after_ms)
}

/// A TLS client holding some certificate, as a rogue or a test caller would.
struct Client {
    chain: Vec<CertificateDer<'static>>,
    key_pem: String,
}

impl Client {
    fn certified(ca: &Ca, service: &str) -> Client {
        let (issued, key_pem) = ca.issue(service).unwrap();
        Client::new(&issued.chain_pem, key_pem)
    }

    fn from_other_ca(service: &str) -> Client {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![format!("{service}.svc.{DOMAIN}")]).unwrap();
        let uri = format!("spiffe://{DOMAIN}/svc/{service}");
        params.subject_alt_names.push(rcgen::SanType::URI(uri.as_str().try_into().unwrap()));
        let cert = params.signed_by(&key, &issuer).unwrap();
        Client::new(&format!("{}{}", cert.pem(), ca_cert.pem()), key.serialize_pem())
    }

    fn new(chain_pem: &str, key_pem: String) -> Client {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        Client { chain, key_pem }
    }

    /// A GET over mTLS to `addr`, expecting the server to be `service`: the status and the
    /// header naming what denied it.
    async fn get(
        &self,
        addr: SocketAddr,
        service: &str,
        anchor_pem: &str,
        path: &str,
    ) -> Result<(u16, Option<String>), String> {
        let (status, headers, _) = self.request(addr, service, anchor_pem, "GET", path, "").await?;
        Ok((status, headers.get("x-trellis-denied-by").map(|v| v.to_str().unwrap().to_string())))
    }

    /// One request; an answer that never comes within 15 s is an error, not a hung test.
    async fn request(
        &self,
        addr: SocketAddr,
        service: &str,
        anchor_pem: &str,
        method: &str,
        path: &str,
        body: &'static str,
    ) -> Result<(u16, http::HeaderMap, String), String> {
        let exchange = async {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(anchor_pem.as_bytes()).unwrap()).unwrap();
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_client_auth_cert(self.chain.clone(), key)
                .unwrap();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let name = ServerName::try_from(format!("{service}.svc.{DOMAIN}")).unwrap();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .header("host", service)
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap();
            // TLS 1.3 sends the server's verdict on the client certificate after the handshake
            // "completes" on the client side: a refused certificate surfaces here.
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok((parts.status.as_u16(), parts.headers, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(Duration::from_secs(15), exchange)
            .await
            .map_err(|_| format!("{method} {path} to {addr}: no answer within 15 s"))?
    }
}
