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
