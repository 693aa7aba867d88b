//! `TRELLIS_LOG_FORMAT=json`: `trellis serve` logs one JSON object per line, an event's fields
//! at the top level, so a log shipper takes them as they are; another format is refused.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use trellis_server::testing::PolicyRepo;

#[test]
fn the_control_plane_logs_json_lines_when_asked() {
    let repo = PolicyRepo::demo();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["serve", "--repo", repo.path().to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--fleet-listen", "127.0.0.1:0", "--data-dir", data.path().to_str().unwrap()])
        .env("TRELLIS_LOG_FORMAT", "json")
        .env("TRELLIS_LOG", "info")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let listening = loop {
        let line = lines.next().expect("the log ended early").unwrap();
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(event["timestamp"].is_string() && event["level"].is_string(), "{event}");
        if event["message"] == "control plane listening" {
            break event;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never listening");
    };
    assert!(listening["addr"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")), "{listening}");
    child.kill().unwrap();
    child.wait().unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["validate", repo.path().to_str().unwrap()])
        .env("TRELLIS_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TRELLIS_LOG_FORMAT=\"xml\" must be text or json"), "{err}");
}
