//! The pull-request check as CI runs it: `trellis validate` and `trellis diff` on a checkout or
//! a repository, with exit codes 0 (valid), 1 (invalid) and 2 (could not run).

use std::path::Path;
use std::process::Command;
use trellis_server::testing::PolicyRepo;

fn trellis(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis")).args(args).current_dir(cwd).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

const BAD_ROUTE: &str = "kind: Route\nname: inventory\nservice: inventory\nrules:\n  - backends:\n      - version: v3\n        weight: 100\n";

#[test]
fn the_example_policies_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (code, out, _) = trellis(&["validate", "policies"], &root);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid: policies: 3 service(s), 2 rollout(s)"), "{out}");
}

#[test]
fn human_output_shows_the_line_a_caret_the_code_and_a_hint() {
    let repo = PolicyRepo::demo();
    std::fs::write(repo.path().join("routes/inventory.yaml"), BAD_ROUTE).unwrap();
    let (code, out, _) = trellis(&["validate", "."], repo.path());
    assert_eq!(code, 1, "{out}");
    let expected = "error[TR0103]: service `inventory` has no version `v3` (it has v1, v2), did you mean `v1`?\n --> routes/inventory.yaml:6:18\n  |\n6 |       - version: v3\n  |                  ^^\n  = hint: ";
    assert!(out.contains(expected), "{out}");
    assert!(out.ends_with("invalid: .: 1 error(s)\n"), "{out}");
}

#[test]
fn github_and_json_formats() {
    let repo = PolicyRepo::demo();
    std::fs::write(repo.path().join("routes/inventory.yaml"), BAD_ROUTE).unwrap();
    let (code, out, _) = trellis(&["validate", ".", "--format", "github"], repo.path());
    assert_eq!(code, 1);
    assert!(
        out.starts_with("::error file=routes/inventory.yaml,line=6,col=18,title=TR0103::service `inventory`"),
        "{out}"
    );
    let (code, out, _) = trellis(&["validate", ".", "--format", "json"], repo.path());
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["valid"].as_bool(), v["errors"][0]["code"].as_str()), (Some(false), Some("TR0103")));
    assert_eq!(v["errors"][0]["source"], "      - version: v3");
}

#[test]
fn revisions_are_read_from_the_commit_and_compared_with_a_base() {
    let repo = PolicyRepo::demo();
    let seed = repo.head().to_string();
    repo.set_inventory_split(90, 10, "canary 10%");
    // The working tree is broken, but --rev reads the commit.
    std::fs::write(repo.path().join("routes/inventory.yaml"), "kind: [").unwrap();
    let (code, out, _) = trellis(&["validate", "--rev", "HEAD", "--base", &seed], repo.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("what this changes:\n  - inventory (all requests): 10% moves from v1 to v2\n"), "{out}");
    let (code, out, _) = trellis(&["diff", &seed, "HEAD", "--format", "json"], repo.path());
    assert_eq!(code, 0, "{out}");
    let changes: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(changes[0]["text"], "inventory (all requests): 10% moves from v1 to v2");
    assert_eq!(changes[0]["kind"], "traffic");
}

#[test]
fn what_cannot_run_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = trellis(&["validate", "--rev", "HEAD"], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: git:"), "{err}");
    let repo = PolicyRepo::demo();
    let (code, _, err) = trellis(&["diff", "nope", "HEAD"], repo.path());
    assert_eq!(code, 2);
    assert!(err.contains("`nope` is neither a directory nor a revision"), "{err}");
}

#[test]
fn a_control_plane_that_cannot_start_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["serve", "--repo", ".", "--listen", "127.0.0.1:0", "--fleet-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&file)
        .env("RUST_BACKTRACE", "1")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("trellis: cannot use ") && last.contains("as the data directory (--data-dir)"), "{err}");
    assert!(!err.contains("backtrace") && !err.contains("panicked"), "{err}");
}

/// The subcommands a `--help` lists under "Commands:" (leaving out `help` itself).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_and_subcommand_explains_itself_with_help() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, top, _) = trellis(&["--help"], here);
    assert_eq!(code, 0, "{top}");
    let commands = subcommands(&top);
    for expected in ["serve", "validate", "diff", "rollout", "revert", "audit", "check", "demo"] {
        assert!(commands.iter().any(|c| c == expected), "`trellis --help` lists {expected}: {top}");
    }
    for command in &commands {
        let (code, out, err) = trellis(&[command, "--help"], here);
        assert_eq!(code, 0, "trellis {command} --help: {err}");
        assert!(out.contains("Usage: trellis"), "trellis {command} --help:\n{out}");
        for sub in subcommands(&out) {
            let (code, out, err) = trellis(&[command, &sub, "--help"], here);
            assert_eq!(code, 0, "trellis {command} {sub} --help: {err}");
            assert!(out.contains(&format!("Usage: trellis {command} {sub}")), "{out}");
        }
    }
}
