//! The container images, built by `scripts/images.sh` with podman from this build's binaries
//! (the debug ones, stripped on the way in) and inspected as a registry would show them: a
//! non-root user, the entrypoint, the health check, the ports, the size. The proxy's image then
//! runs (podman, read-only root filesystem, standalone with a mounted config) and carries a
//! request to an application on the host; its health check passes. The control plane's image
//! serves with a read-only root filesystem too, writing only to its data volume. On this machine podman's
//! default runtime cannot start containers (crun refuses the hybrid cgroup layout and the
//! file-descriptor limit), so the test runs them with runc and `default_ulimits = []`.

use std::process::Command;
use std::time::{Duration, Instant};

fn target_dir() -> std::path::PathBuf {
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_trellis"));
    exe.parent().unwrap().to_path_buf()
}

/// podman with this machine's workaround: runc, and no default ulimits to set.
fn podman(conf: &std::path::Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", conf);
    cmd
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/setup.sh --for-tests installs podman)"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{cmd:?} failed: {text}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_are_non_root_probed_and_the_proxy_image_carries_a_request() {
    let tag = format!("test-{}", std::process::id());
    let registry = "localhost/trellis-test";
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/images.sh");
    let built =
        run(Command::new(script).arg("--bin-dir").arg(target_dir()).args(["--tag", &tag, "--registry", registry]));
    let (proxy, control_plane) = (format!("{registry}/trellis-proxy:{tag}"), format!("{registry}/trellis:{tag}"));
    assert!(built.contains(&format!("{proxy} ")) && built.contains(&format!("{control_plane} ")), "{built}");
    assert!(built.contains(" MB"), "the sizes are printed: {built}");

    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
    let inspect = |image: &str| -> serde_json::Value {
        let out = run(podman(&conf).args(["image", "inspect", image]));
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
    };
    let p = inspect(&proxy);
    assert_eq!(p["Config"]["User"], "65532:65532");
    assert_eq!(p["Config"]["Entrypoint"], serde_json::json!(["/trellis/bin/trellis-proxy"]));
    assert_eq!(p["Healthcheck"]["Test"], serde_json::json!(["CMD", "/trellis/bin/trellis-proxy", "--probe"]));
    assert!(p["Config"]["ExposedPorts"].get("4143/tcp").is_some(), "{p}");
    let c = inspect(&control_plane);
    assert_eq!(c["Config"]["User"], "65532:65532");
    assert_eq!(c["Config"]["Cmd"], serde_json::json!(["serve"]));
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "/trellis/bin/trellis", "probe"]));
    assert!(c["Config"]["Volumes"].get("/var/lib/trellis").is_some(), "{c}");
    // Both binaries start in their images: every library they need is there.
    let runc = ["run", "--rm", "--runtime", "runc", "--read-only", "--network", "none"];
    assert!(run(podman(&conf).args(runc).arg(&control_plane).arg("--version")).starts_with("trellis "));
    assert!(run(podman(&conf).args(runc).arg(&proxy).arg("--version")).starts_with("trellis-proxy "));

    // The proxy in standalone mode, its routes from a mounted file, in front of an app on the host.
    let app = trellis_server::testing::fixed_app("from the app", 200).await;
    let config = serde_json::json!({
        "version": "image.1", "revision": "image",
        "services": { "shop": { "name": "shop", "versions": ["v1"], "rules": [
            { "matches": [], "backends": [{ "version": "v1", "weight": 100 }] }] } },
        "endpoints": { "shop": [{ "version": "v1", "addr": app.to_string(), "proxy_id": "app" }] },
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("proxy.json"), config.to_string()).unwrap();
    // Readable by the image's user.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path().join("proxy.json"), std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .unwrap();
    let (outbound, inbound, admin) = (free_port(), free_port(), free_port());
    let name = format!("trellis-proxy-test-{}", std::process::id());
    run(podman(&conf)
        .args(["run", "-d", "--rm", "--runtime", "runc", "--read-only", "--network", "host", "--name", &name])
        .arg("-v")
        .arg(format!("{}:/config:ro", dir.path().display()))
        .args([
            "-e",
            "TRELLIS_CONFIG_FILE=/config/proxy.json",
            "-e",
            "TRELLIS_SERVICE=storefront",
            "-e",
            "TRELLIS_VERSION=v1",
        ])
        .args(["-e", &format!("TRELLIS_OUTBOUND_ADDR=127.0.0.1:{outbound}")])
        .args(["-e", &format!("TRELLIS_INBOUND_ADDR=127.0.0.1:{inbound}")])
        .args(["-e", &format!("TRELLIS_ADMIN_ADDR=127.0.0.1:{admin}")])
        .arg(&proxy));
    let stop = || {
        let _ = podman(&conf).args(["rm", "-f", &name]).output();
    };
    let started = Instant::now();
    let answer = loop {
        let ready = trellis_server::testing::http_get(([127, 0, 0, 1], admin).into(), "localhost", "/ready").await;
        if ready.is_ok_and(|(s, _)| s == 200) {
            break trellis_server::testing::http_get(([127, 0, 0, 1], outbound).into(), "shop", "/").await;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let logs = podman(&conf).args(["logs", &name]).output().unwrap();
            stop();
            panic!("the proxy's container never got ready: {}", String::from_utf8_lossy(&logs.stderr));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let health = podman(&conf).args(["healthcheck", "run", &name]).output().unwrap();
    stop();
    assert_eq!(answer.unwrap(), (http::StatusCode::OK, "from the app".to_string()), "through the proxy's image");
    assert!(health.status.success(), "the health check: {}", String::from_utf8_lossy(&health.stderr));

    // The control plane's image serves, read-only but for its data volume, following a mounted
    // repository, and its health check passes.
    let repo = trellis_server::testing::PolicyRepo::demo();
    let head = repo.head().to_string();
    let data = tempfile::tempdir().unwrap();
    for dir in [repo.path(), data.path()] {
        // The image's user owns what it reads and writes (git refuses a repository it does not own).
        run(Command::new("chown").args(["-R", "65532:65532"]).arg(dir));
    }
    let (listen, fleet) = (free_port(), free_port());
    let name = format!("trellis-test-{}", std::process::id());
    run(podman(&conf)
        .args(["run", "-d", "--rm", "--runtime", "runc", "--read-only", "--network", "host", "--name", &name])
        .arg("-v")
        .arg(format!("{}:/policy:ro", repo.path().display()))
        .arg("-v")
        .arg(format!("{}:/var/lib/trellis", data.path().display()))
        .args(["-e", "TRELLIS_REPO=/policy", "-e", &format!("TRELLIS_LISTEN=127.0.0.1:{listen}")])
        .args(["-e", &format!("TRELLIS_FLEET_LISTEN=127.0.0.1:{fleet}")])
        .arg(&control_plane));
    let started = Instant::now();
    loop {
        let ready = trellis_server::testing::http_get(([127, 0, 0, 1], listen).into(), "trellis", "/ready").await;
        if ready.is_ok_and(|(s, _)| s == 200) {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let logs = podman(&conf).args(["logs", &name]).output().unwrap();
            let _ = podman(&conf).args(["rm", "-f", &name]).output();
            panic!("the control plane's container never got ready: {}", String::from_utf8_lossy(&logs.stdout));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let overview =
        trellis_server::testing::http_get(([127, 0, 0, 1], listen).into(), "trellis", "/api/v1/overview").await;
    let health = podman(&conf).args(["healthcheck", "run", &name]).output().unwrap();
    let _ = podman(&conf).args(["rm", "-f", &name]).output();
    let (status, overview) = overview.unwrap();
    assert_eq!(status, 200);
    assert!(overview.contains(&head[..8]), "it applied the mounted repository's head: {overview}");
    assert!(health.status.success(), "the health check: {}", String::from_utf8_lossy(&health.stderr));
    let _ = podman(&conf).args(["rmi", "-f", &proxy, &control_plane]).output();
}
