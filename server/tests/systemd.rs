//! `trellis install systemd`: the units pass `systemd-analyze verify`, rate "OK" (exposure
//! under 2) in `systemd-analyze security`, and both binaries tell a `Type=notify` unit's
//! systemd they are ready (`READY=1` on `NOTIFY_SOCKET`) once they serve.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use trellis_server::testing::PolicyRepo;

/// Where `cargo build --bins` put both binaries (the test command builds them first).
fn bin_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_trellis")).parent().unwrap().to_path_buf();
    assert!(dir.join("trellis-proxy").exists(), "build the binaries first: cargo build --bins");
    dir
}

fn analyze(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze").args(args).output().expect("systemd-analyze (Debian's systemd) runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_units_verify_and_are_hardened() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["install", "systemd", "--bin-dir", bin_dir().to_str().unwrap(), "--out", out.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    // The template, as the instance a host would start.
    std::fs::copy(out.path().join("trellis-proxy@.service"), out.path().join("trellis-proxy@inventory.service"))
        .unwrap();
    for unit in ["trellis.service", "trellis-proxy@inventory.service"] {
        let path = out.path().join(unit);
        let (ok, said) = analyze(&["verify", path.to_str().unwrap()]);
        assert!(ok && said.trim().is_empty(), "{unit}: {said}");
        let (_, said) = analyze(&["security", "--offline=true", path.to_str().unwrap()]);
        let exposure: f64 = said
            .lines()
            .find_map(|l| {
                l.split("Overall exposure level for ").nth(1)?.split(": ").nth(1)?.split(' ').next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no exposure level in {said}"));
        assert!(exposure <= 2.0, "{unit}: exposure {exposure}\n{said}");
    }
    let env = std::fs::read_to_string(out.path().join("trellis.env.example")).unwrap();
    assert!(env.contains("\nTRELLIS_REPO=\n") && env.contains("#TRELLIS_TOKENS="), "{env}");
}

#[test]
fn both_binaries_tell_systemd_when_they_are_ready() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let heard = |socket: &std::os::unix::net::UnixDatagram| {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).expect("a notification within 30 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let repo = PolicyRepo::demo();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cp = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["serve", "--repo", repo.path().to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .args(["--fleet-listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(heard(&socket), "READY=1");

    let token = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["join-token", "inventory", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap();
    let mut proxy = Command::new(bin_dir().join("trellis-proxy"))
        .env_clear()
        .envs([
            ("TRELLIS_SERVICE", "inventory"),
            ("TRELLIS_VERSION", "v1"),
            ("TRELLIS_CONTROL_PLANE_URL", &format!("http://127.0.0.1:{port}")),
            ("TRELLIS_JOIN_TOKEN", token.trim()),
            ("TRELLIS_OUTBOUND_ADDR", "127.0.0.1:0"),
            ("TRELLIS_INBOUND_ADDR", "127.0.0.1:0"),
            ("TRELLIS_ADMIN_ADDR", "127.0.0.1:0"),
        ])
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Ready only once certified and configured, as /ready says.
    assert_eq!(heard(&socket), "READY=1");
    for child in [&mut proxy, &mut cp] {
        // SIGTERM, as systemd stops a unit: each says it is stopping, then drains.
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        assert_eq!(heard(&socket), "STOPPING=1");
        child.wait().unwrap();
    }
}
