//! Opaque TCP through two proxies, with a real Postgres behind them: the application speaks the
//! Postgres protocol to its sidecar's local listener for `db`, the sidecars speak mTLS to each
//! other, and the database's sidecar hands the bytes to Postgres. Connections are counted both
//! ways and make an edge on the topology; a caller the access policy does not name is cut off
//! by identity; a connection to an endpoint that is gone fails at once and is counted.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sqlx::{Connection, Row};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trellis_server::gitops::PolicySource;
use trellis_server::serve::{IdentityConfig, ServeConfig};
use trellis_server::testing::{PolicyRepo, http_get};

const DOMAIN: &str = "mesh.test";

/// The Postgres the tests use: its address is the database's "application".
fn postgres() -> SocketAddr {
    let url = std::env::var("TRELLIS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let host = url.split('@').nth(1).and_then(|rest| rest.split('/').next()).expect("host:port in the URL");
    host.parse().unwrap_or_else(|_| panic!("TRELLIS_TEST_POSTGRES_URL: {host} is not host:port"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_through_two_proxies_over_mtls() {
    let repo = PolicyRepo::demo();
    repo.commit(
        "services/db.yaml",
        "kind: Service\nname: db\nprotocol: tcp\nport: 5432\nversions: [v1]\n---\nkind: AccessPolicy\nname: db-clients\nservice: db\nrules:\n  - from: [storefront]\n",
        "db: Postgres, for the storefront only",
    );
    let data = tempfile::tempdir().unwrap();
    let identity = IdentityConfig::new(data.path().join("identity"), DOMAIN);
    let cp = trellis_server::serve::start(ServeConfig {
        identity: Some(identity),
        ..ServeConfig::local(PolicySource::local(repo.path(), "main"), data.path())
    })
    .await
    .unwrap();
    let ca = cp.state.ca.clone().unwrap();
    let proxy = |service: &str, app: SocketAddr, upstreams: Vec<(String, SocketAddr)>| {
        let mut settings = trellis_proxy::Settings::new(service, "v1", app, &cp.url());
        settings.join_token = Some(trellis_proxy::env::Secret(ca.join_token(service)));
        settings.tcp_upstreams = upstreams;
        trellis_proxy::start(settings)
    };
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let db = proxy("db", postgres(), vec![]).await.unwrap();
    let storefront = proxy("storefront", any, vec![("db".into(), any)]).await.unwrap();
    let local = storefront.tcp[0].1;
    let started = Instant::now();
    loop {
        let config = storefront.shared.config.load();
        let ready = config.endpoints.get("db").is_some_and(|e| !e.is_empty() && e.iter().all(|e| e.identity.is_some()));
        if ready && storefront.shared.tls.load().is_some() && db.shared.tls.load().is_some() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "the storefront never learned db's endpoint");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The Postgres protocol, end to end, through both sidecars.
    let mut conn = sqlx::PgConnection::connect(&format!("postgres://postgres@{local}/postgres")).await.unwrap();
    let one: i32 = sqlx::query("SELECT 1").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(one, 1);
    sqlx::query("CREATE TEMP TABLE stock (item int, n int)").execute(&mut conn).await.unwrap();
    for i in 0..100 {
        sqlx::query("INSERT INTO stock VALUES ($1, $2)").bind(i).bind(i * 2).execute(&mut conn).await.unwrap();
    }
    let sum: i64 = sqlx::query("SELECT sum(n) FROM stock").fetch_one(&mut conn).await.unwrap().get(0);
    assert_eq!(sum, 9900);
    conn.close().await.unwrap();

    // Counted on both sides, once closed, with the bytes each way.
    let labels = |direction: &str| format!("{{direction=\"{direction}\",dst_service=\"db\",dst_version=\"v1\"}}");
    let counted = |p: &trellis_proxy::Running, name: &str, direction: &str| {
        let text = p.shared.metrics.render("p", "v");
        let series = format!("{name}{}", labels(direction));
        text.lines().find_map(|l| l.strip_prefix(&series)?.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    let started = Instant::now();
    while counted(&db, "trellis_proxy_tcp_close_total", "inbound") < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(10), "db's sidecar never saw the connection close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (p, direction) in [(&storefront, "outbound"), (&db, "inbound")] {
        assert_eq!(counted(p, "trellis_proxy_tcp_open_total", direction), 1.0, "{direction}");
        assert!(counted(p, "trellis_proxy_tcp_sent_bytes_total", direction) > 1000.0, "{direction}: 100 inserts sent");
        assert!(counted(p, "trellis_proxy_tcp_received_bytes_total", direction) > 100.0, "{direction}");
        assert!(counted(p, "trellis_proxy_tcp_connection_seconds_total", direction) > 0.0, "{direction}");
    }
    let mtls = db.shared.metrics.get("trellis_proxy_inbound_connections_total", &[("transport", "mtls")]);
    assert!(mtls >= 1, "the sidecars spoke mTLS");

    // The edge on the topology, in connections.
    let started = Instant::now();
    loop {
        let (_, body) = http_get(cp.addr, "trellis", "/api/v1/topology?window=1m").await.unwrap();
        let topology: serde_json::Value = serde_json::from_str(&body).unwrap();
        let edges = topology["edges"].as_array().unwrap();
        let edge = edges.iter().find(|e| e["from"] == "storefront" && e["to"] == "db");
        if let Some(tcp) = edge.map(|e| &e["tcp"]).filter(|t| t["opened"] == 1) {
            assert!(tcp["sent_bytes_per_s"].as_f64().unwrap() > 0.0, "{topology}");
            let node = topology["nodes"].as_array().unwrap().iter().find(|n| n["service"] == "db").unwrap();
            assert_eq!(node["tcp"]["opened"], 1, "{topology}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no TCP edge storefront → db: {topology}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // catalog holds a real mesh certificate, but db's access policy names only the storefront:
    // its connection is closed before Postgres sees a byte.
    let (issued, key) = ca.issue("catalog").unwrap();
    let mut stream = mtls_connect(db.inbound, "db", &issued.chain_pem, &key, &ca.anchor_pem).await;
    // Postgres's SSLRequest: it would answer one byte.
    stream.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.expect("closed");
    assert!(answer.is_empty(), "{answer:?}");
    let denied = db.shared.metrics.get("trellis_proxy_access_denied_total", &[("caller", "catalog")]);
    assert_eq!(denied, 1);

    // The database's sidecar is gone: the next connection fails at once, and is counted.
    let db_inbound = db.inbound;
    db.shutdown().await;
    assert!(tokio::net::TcpStream::connect(db_inbound).await.is_err(), "db's sidecar is down");
    let failed = sqlx::PgConnection::connect(&format!("postgres://postgres@{local}/postgres")).await;
    assert!(failed.is_err());
    let failures = counted(&storefront, "trellis_proxy_tcp_connect_failures_total", "outbound");
    assert_eq!(failures, 1.0);
    storefront.shutdown().await;
    cp.shutdown().await;
}

/// A TLS 1.3 connection with a client certificate, to a server that must be `service`.
async fn mtls_connect(
    addr: SocketAddr,
    service: &str,
    chain_pem: &str,
    key_pem: &str,
    anchor_pem: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(anchor_pem.as_bytes()).unwrap()).unwrap();
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(format!("{service}.svc.{DOMAIN}")).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
}
