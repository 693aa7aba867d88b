//! The control plane served over HTTPS with an operator's certificate (`--tls-cert`,
//! `--tls-key`): the dashboard and the API answer over TLS (HTTP/2 by ALPN) with HSTS and a
//! `Secure` session cookie, plaintext and untrusting clients get nothing, a proxy joins over
//! HTTPS trusting `TRELLIS_CONTROL_PLANE_CA`, and `trellis check` reaches it the same way.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use trellis_server::gitops::PolicySource;
use trellis_server::https::{TlsFiles, client, with_causes};
use trellis_server::serve::{IdentityConfig, ServeConfig};
use trellis_server::testing::PolicyRepo;

const TOKEN: &str = "ann-operator-token-0123456789";

/// A private CA and a certificate from it for `localhost` and 127.0.0.1, as PEM files.
fn certificates(dir: &Path) -> (PathBuf, TlsFiles) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "operators' test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let files = TlsFiles { cert: dir.join("tls.crt"), key: dir.join("tls.key") };
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(&files.cert, leaf.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    (dir.join("ca.crt"), files)
}

async fn send(
    client: &trellis_server::https::Client,
    req: http::Request<Full<Bytes>>,
) -> Result<(http::response::Parts, String), String> {
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| with_causes(&e))?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((parts, String::from_utf8_lossy(&body).into_owned()))
}

fn get(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url).body(Full::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_api_and_joins_are_served_over_https_and_nothing_in_plaintext() {
    let repo = PolicyRepo::demo();
    let data = tempfile::tempdir().unwrap();
    let (ca_file, tls) = certificates(data.path());
    let config = || ServeConfig {
        identity: Some(IdentityConfig::new(data.path().join("identity"), "mesh.test")),
        users: trellis_server::auth::User::parse_list(&format!("ann:operator:{TOKEN}")).unwrap(),
        tls: Some(tls.clone()),
        ..ServeConfig::local(PolicySource::local(repo.path(), "main"), data.path())
    };

    // A key that is not the certificate's stops the start: never a fallback to plaintext.
    let stray = data.path().join("stray.key");
    std::fs::write(&stray, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let mismatched = ServeConfig { tls: Some(TlsFiles { key: stray, ..tls.clone() }), ..config() };
    let err = trellis_server::serve::start(mismatched).await.err().expect("a mismatched key must not start");
    assert!(err.to_string().contains("is not the key of"), "{err}");

    let cp = trellis_server::serve::start(config()).await.unwrap();
    let url = format!("https://localhost:{}", cp.addr.port());
    assert_eq!(cp.url(), format!("https://{}", cp.addr));
    let https = client(Some(&ca_file)).unwrap();

    let (head, body) = send(&https, get(&format!("{url}/api/v1/health"))).await.unwrap();
    assert_eq!(head.status, 200, "{body}");
    assert_eq!(head.version, http::Version::HTTP_2, "ALPN offers h2");
    assert_eq!(head.headers["strict-transport-security"], "max-age=31536000");

    let (head, body) = send(&https, get(&format!("{url}/"))).await.unwrap();
    assert_eq!(head.status, 200);
    assert!(body.contains("Trellis"), "{body}");
    assert!(head.headers.contains_key("content-security-policy"));
    assert!(head.headers.contains_key("strict-transport-security"));

    let login = http::Request::post(format!("{url}/api/v1/session"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(format!(r#"{{"token":"{TOKEN}"}}"#))))
        .unwrap();
    let (head, body) = send(&https, login).await.unwrap();
    assert_eq!(head.status, 200, "{body}");
    let cookie = head.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; HttpOnly; Secure; SameSite=Strict;"), "{cookie}");

    // Plaintext to the TLS port, and TLS from a client that does not trust the CA: nothing.
    let plain = format!("http://{}/api/v1/health", cp.addr);
    assert!(send(&https, get(&plain)).await.is_err(), "plaintext was answered");
    let untrusting = client(None).unwrap();
    let err = send(&untrusting, get(&format!("{url}/api/v1/health"))).await.unwrap_err();
    assert!(err.contains("certificate"), "{err}");

    // A proxy joins over HTTPS (by name: the certificate names localhost), then follows over mTLS.
    let app: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let mut settings = trellis_proxy::Settings::new("inventory", "v1", app, &url);
    settings.join_token = Some(trellis_proxy::env::Secret(cp.state.ca.clone().unwrap().join_token("inventory")));
    settings.control_plane_ca = Some(ca_file.clone());
    let proxy = trellis_proxy::start(settings).await.unwrap();
    let started = Instant::now();
    while proxy.shared.identity.load().is_none() || !cp.state.fleet.proxies().iter().any(|p| p.service == "inventory") {
        assert!(started.elapsed() < Duration::from_secs(15), "the proxy did not join over HTTPS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The CLI trusts the same CA through the same variable, and says why without it.
    let check = |ca: Option<&Path>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trellis"));
        cmd.args(["check", "--server", &url]).env_remove("TRELLIS_CONTROL_PLANE_CA");
        if let Some(ca) = ca {
            cmd.env("TRELLIS_CONTROL_PLANE_CA", ca);
        }
        cmd
    };
    let (mut trusting, mut bare) = (check(Some(&ca_file)), check(None));
    let out = tokio::task::spawn_blocking(move || trusting.output().unwrap()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("√ a revision is applied"), "{text}");
    let out = tokio::task::spawn_blocking(move || bare.output().unwrap()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("certificate"), "{text}");

    proxy.shutdown().await;
    cp.shutdown().await;
}
