//! The binary as an operator first meets it: `--help` lists every setting and exits 0; a
//! missing or bad setting is a short message naming it, exit status 2, never a backtrace.

use std::process::Command;

fn proxy(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trellis-proxy"));
    cmd.args(args).env_clear().env("RUST_BACKTRACE", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the proxy binary runs");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[test]
fn help_lists_every_setting_and_exits_zero() {
    let (code, out, _) = proxy(&["--help"], &[]);
    assert_eq!(code, 0);
    for (name, ..) in trellis_proxy::env::SETTINGS {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    assert!(out.contains("TRELLIS_OUTBOUND_ADDR [127.0.0.1:4140]"), "{out}");
    // The same list as an environment file for the systemd unit: required ones to fill in.
    let (code, env, _) = proxy(&["--env-example"], &[]);
    assert_eq!(code, 0);
    for (name, ..) in trellis_proxy::env::SETTINGS {
        assert!(env.contains(&format!("{name}=")), "{name} missing from:\n{env}");
    }
    assert!(env.contains("\nTRELLIS_SERVICE=\n") && env.contains("\n#TRELLIS_OUTBOUND_ADDR=127.0.0.1:4140\n"), "{env}");
    let (code, out, _) = proxy(&["--version"], &[]);
    assert_eq!((code, out.trim()), (0, concat!("trellis-proxy ", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn a_missing_or_bad_setting_is_named_without_a_backtrace() {
    let (code, _, err) = proxy(&[], &[("TRELLIS_VERSION", "v1"), ("TRELLIS_DRAIN_GRACE_SECS", "soon")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("TRELLIS_SERVICE is required"), "{err}");
    assert!(err.contains("TRELLIS_DRAIN_GRACE_SECS=\"soon\" is not a whole number of seconds"), "{err}");
    assert!(err.contains("--help"), "{err}");
    assert!(!err.contains("backtrace") && !err.contains("panicked") && err.lines().count() <= 5, "{err}");
    let (code, _, err) = proxy(&["--listen"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown argument \"--listen\""), "{err}");
}

/// `TRELLIS_LOG_FORMAT=json`: every line a JSON object a log shipper takes as it is, and a
/// request's access event with the trace id it travelled under.
#[test]
fn json_logs_are_one_object_per_line_with_the_requests_trace_id() {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trellis-proxy"))
        .env_clear()
        .envs([
            ("TRELLIS_SERVICE", "storefront"),
            ("TRELLIS_VERSION", "v1"),
            // Nobody listens there: the proxy logs that it cannot reach it, and answers 503.
            ("TRELLIS_CONTROL_PLANE_URL", "http://127.0.0.1:9"),
            ("TRELLIS_OUTBOUND_ADDR", &format!("127.0.0.1:{port}")),
            ("TRELLIS_INBOUND_ADDR", "127.0.0.1:0"),
            ("TRELLIS_ADMIN_ADDR", "127.0.0.1:0"),
            ("TRELLIS_ACCESS_LOG", "true"),
            ("TRELLIS_LOG_FORMAT", "json"),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let started = std::time::Instant::now();
    let mut answer = String::new();
    while answer.is_empty() && started.elapsed() < std::time::Duration::from_secs(10) {
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let request = format!(
                "GET /stock HTTP/1.1\r\nhost: inventory\r\ntraceparent: 00-{trace}-00f067aa0ba902b7-01\r\nconnection: close\r\n\r\n"
            );
            conn.write_all(request.as_bytes()).unwrap();
            let _ = conn.read_to_string(&mut answer);
        } else {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    assert!(answer.starts_with("HTTP/1.1 "), "{answer}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let events: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(events.iter().all(|e| e["timestamp"].is_string() && e["level"].is_string()), "{text}");
    let access = events.iter().find(|e| e["target"] == "access").unwrap_or_else(|| panic!("no access event in {text}"));
    assert_eq!(access["trace_id"], trace, "{access}");
    assert_eq!(access["path"], "/stock", "{access}");
}

#[test]
fn an_unknown_log_format_is_named() {
    let (code, _, err) = proxy(&[], &[("TRELLIS_LOG_FORMAT", "xml")]);
    assert_eq!(code, 2);
    assert!(err.contains("TRELLIS_LOG_FORMAT=\"xml\" must be text or json"), "{err}");
}
