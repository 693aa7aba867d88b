//! Prometheus against a running mesh, with Debian's own `prometheus` and `promtool`: both
//! `/metrics` pass `promtool check metrics` (a replica name holding quotes and a newline forges
//! nothing), a real Prometheus finds every proxy through the control plane's HTTP service
//! discovery and scrapes them, its sum of `trellis_proxy_requests_total` is what the test
//! sent, and the control plane charts an hour of traffic from it (`?range=1h`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use trellis_server::gitops::PolicySource;
use trellis_server::serve::ServeConfig;
use trellis_server::testing::{PolicyRepo, fixed_app, http_get};

/// Debian's tools, or a failure that says how to get them: never a silent skip.
fn tool(name: &str) -> &str {
    let found =
        Command::new("sh").args(["-c", &format!("command -v {name}")]).output().is_ok_and(|o| o.status.success());
    assert!(found, "{name} is missing: apt-get install -y prometheus (scripts/setup.sh --for-tests does)");
    name
}

fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn query(prometheus: u16, path: &str) -> serde_json::Value {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], prometheus));
    // Null while Prometheus is still starting.
    match http_get(addr, "prometheus", path).await {
        Ok((_, body)) => serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_every_proxy_and_counts_what_was_sent() {
    let repo = PolicyRepo::demo();
    let data = tempfile::tempdir().unwrap();
    let (cp_port, port) = (free_port(), free_port());
    let cp = trellis_server::serve::start(ServeConfig {
        listen: ([127, 0, 0, 1], cp_port).into(),
        // A name no one should choose, as a forger would: it must stay one label value.
        replica_id: Some("cp \"0\"\\\nforged_total 1".into()),
        prometheus_url: Some(format!("http://127.0.0.1:{port}")),
        ..ServeConfig::local(PolicySource::local(repo.path(), "main"), data.path())
    })
    .await
    .unwrap();
    let mut proxies = Vec::new();
    for (service, version) in [("inventory", "v1"), ("inventory", "v2"), ("storefront", "v1")] {
        let settings = trellis_proxy::Settings::new(service, version, fixed_app(version, 200).await, &cp.url());
        proxies.push(trellis_proxy::start(settings).await.unwrap());
    }
    let caller = proxies.last().unwrap();
    let started = Instant::now();
    while caller.shared.config.load().endpoints.get("inventory").is_none_or(|e| e.len() < 2) {
        assert!(started.elapsed() < Duration::from_secs(15), "the caller never learned both versions");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    const SENT: u64 = 60;
    for _ in 0..SENT {
        assert_eq!(http_get(caller.outbound, "inventory", "/").await.unwrap().0, 200);
    }

    // Both expositions are valid, escaped, and carry the process and build series.
    let (_, cp_metrics) = http_get(cp.addr, "trellis", "/metrics").await.unwrap();
    let (ok, said) = promtool_check(&cp_metrics);
    assert!(ok, "promtool on the control plane's /metrics: {said}\n{cp_metrics}");
    assert!(!cp_metrics.lines().any(|l| l.starts_with("forged_total")), "{cp_metrics}");
    assert!(
        cp_metrics.contains(r#"trellis_control_plane_leader{replica="cp \"0\"\\\nforged_total 1"} 1"#),
        "{cp_metrics}"
    );
    for series in [
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "trellis_build_info{component=\"control-plane\"",
    ] {
        assert!(cp_metrics.contains(series), "{series} missing");
    }
    let (_, proxy_metrics) = http_get(caller.admin, "admin", "/metrics").await.unwrap();
    let (ok, said) = promtool_check(&proxy_metrics);
    assert!(ok, "promtool on a proxy's /metrics: {said}\n{proxy_metrics}");
    assert!(proxy_metrics.contains("trellis_build_info{component=\"proxy\""));

    // A real Prometheus, discovering the proxies through the control plane.
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
scrape_configs:
  - job_name: trellis-proxies
    http_sd_configs: [{{ url: 'http://{cp}/api/v1/prometheus/targets', refresh_interval: 1s }}]
    relabel_configs:
      - {{ source_labels: [__meta_trellis_service], target_label: trellis_service }}
      - {{ source_labels: [__meta_trellis_proxy_id], target_label: trellis_proxy }}
  - job_name: trellis-control-plane
    static_configs: [{{ targets: ['{cp}'] }}]
",
        cp = cp.addr
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let mut prometheus = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (cp_addr, caller_addr) = (cp.addr, caller.outbound);
    let outcome = async move {
        let started = Instant::now();
        let targets = loop {
            let t = query(port, "/api/v1/targets").await;
            let active = t["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
            let up: Vec<_> =
                active.iter().filter(|t| t["scrapePool"] == "trellis-proxies" && t["health"] == "up").collect();
            if up.len() == 3 && active.iter().any(|t| t["scrapePool"] == "trellis-control-plane" && t["health"] == "up")
            {
                break active;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "Prometheus did not find every proxy up: {t}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let services: std::collections::BTreeSet<String> =
            targets.iter().filter_map(|t| t["labels"]["trellis_service"].as_str().map(str::to_string)).collect();
        assert_eq!(services, ["inventory", "storefront"].map(String::from).into(), "{targets:?}");
        let sent = "/api/v1/query?query=sum(trellis_proxy_requests_total%7Bdirection%3D%22outbound%22%2Cdst_service%3D%22inventory%22%7D)";
        let received = "/api/v1/query?query=sum(trellis_proxy_requests_total%7Bdirection%3D%22inbound%22%2Ctrellis_service%3D%22inventory%22%7D)";
        for path in [sent, received] {
            let started = Instant::now();
            loop {
                let v = query(port, path).await;
                let value = v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok());
                if value == Some(SENT as f64) {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(20), "{path}: {v}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // An hour of inventory's traffic, charted from Prometheus: both versions, all successful
        // (more requests now that it watches: a counter it never saw rise has no rate).
        for _ in 0..SENT {
            assert_eq!(http_get(caller_addr, "inventory", "/").await.unwrap().0, 200);
        }
        let started = Instant::now();
        loop {
            let (status, body) = http_get(cp_addr, "trellis", "/api/v1/traffic?range=1h").await.unwrap();
            assert_eq!(status, 200, "{body}");
            let view: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                (view["span_s"].as_u64(), view["step_s"].as_u64(), view["history"].as_bool()),
                (Some(3600), Some(60), Some(true))
            );
            let inventory = view["services"].as_array().unwrap().iter().find(|s| s["service"] == "inventory").cloned();
            let charted = |version: &str| {
                inventory
                    .as_ref()
                    .and_then(|s| s["versions"].as_array()?.iter().find(|v| v["version"] == version).cloned())
                    .map(|v| v["points"].as_array().cloned().unwrap_or_default())
                    .unwrap_or_default()
            };
            let (v1, v2) = (charted("v1"), charted("v2"));
            if !v1.is_empty() && !v2.is_empty() {
                for p in v1.iter().chain(&v2) {
                    assert!(p["golden"]["rps"].as_f64().unwrap() > 0.0, "{p}");
                    assert_eq!(p["golden"]["success_rate"].as_f64(), Some(1.0), "{p}");
                }
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no hour of history: {view}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (status, body) = http_get(cp_addr, "trellis", "/api/v1/traffic?range=2h").await.unwrap();
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("use 15m, 1h, 6h or 24h"), "{body}");
    };
    let result = tokio::spawn(outcome).await;
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
    for p in proxies {
        p.shutdown().await;
    }
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prometheus_longer_ranges_say_what_they_need() {
    let repo = PolicyRepo::demo();
    let data = tempfile::tempdir().unwrap();
    let cp = trellis_server::serve::start(ServeConfig::local(PolicySource::local(repo.path(), "main"), data.path()))
        .await
        .unwrap();
    let (status, body) = http_get(cp.addr, "trellis", "/api/v1/traffic?range=6h").await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("TRELLIS_PROMETHEUS_URL"), "{body}");
    let (status, body) = http_get(cp.addr, "trellis", "/api/v1/traffic").await.unwrap();
    assert_eq!(status, 200);
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((view["span_s"].as_u64(), view["history"].as_bool()), (Some(900), Some(false)));
    cp.shutdown().await;
}
