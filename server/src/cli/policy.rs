//! The pull-request commands: `validate`, `diff` and `schema`. They work offline on a
//! checkout, with no control plane.

use crate::source;
use std::path::{Path, PathBuf};
use trellis_model::{Diagnostic, MeshConfig};

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// A directory of policy files (a checkout).
    #[arg(default_value = ".", conflicts_with = "rev")]
    pub dir: PathBuf,
    /// Validate a commit of the repository instead (a SHA, branch or tag).
    #[arg(long)]
    pub rev: Option<String>,
    /// The git repository for `--rev` and `--base`.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// Also say what the change does to traffic compared with this revision (e.g. `main`).
    #[arg(long)]
    pub base: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The old policy: a directory or a revision.
    pub from: String,
    /// The new policy: a directory or a revision.
    pub to: String,
    /// The git repository revisions are read from.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Like rustc: source excerpt, caret, code and hint.
    Human,
    Json,
    /// GitHub Actions workflow annotations, shown on the pull request's diff.
    Github,
}

/// Why a command could not run at all (exit 2), as opposed to finding problems (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    #[error("git: {0}")]
    Git(#[from] git2::Error),
    #[error("`{0}` is neither a directory nor a revision of {1}")]
    NoSuchPolicy(String, String),
}

/// Reads and judges a directory or a revision.
fn load(spec: &str, repo: &Path, prefer_dir: bool) -> Result<(String, Result<MeshConfig, Vec<Diagnostic>>), RunError> {
    let dir = Path::new(spec);
    if prefer_dir && dir.is_dir() {
        let read = source::read_dir(dir).map_err(|e| RunError::Io(spec.to_string(), e))?;
        return Ok((spec.to_string(), source::load(read, "working-tree")));
    }
    let repository = git2::Repository::discover(repo)?;
    let commit = repository
        .revparse_single(spec)
        .and_then(|o| o.peel_to_commit())
        .map_err(|_| RunError::NoSuchPolicy(spec.to_string(), repo.display().to_string()))?;
    let sha = commit.id().to_string();
    Ok((sha.clone(), source::load(source::read_commit(&repository, commit.id())?, &sha)))
}

pub fn validate(args: &ValidateArgs) -> i32 {
    let run = || -> Result<i32, RunError> {
        let (spec, prefer_dir) = match &args.rev {
            Some(rev) => (rev.clone(), false),
            None => (args.dir.to_string_lossy().to_string(), true),
        };
        let (label, result) = load(&spec, &args.repo, prefer_dir)?;
        let changes = match (&result, &args.base) {
            (Ok(new), Some(base)) => match load(base, &args.repo, false)?.1 {
                Ok(old) => Some(trellis_model::diff::diff(&old, new)),
                // An invalid base cannot be compared; the change itself is still judged.
                Err(_) => None,
            },
            _ => None,
        };
        let code = i32::from(result.is_err());
        print!("{}", report(&label, &result, changes.as_deref(), args.format));
        Ok(code)
    };
    run().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        2
    })
}

fn report(
    label: &str,
    result: &Result<MeshConfig, Vec<Diagnostic>>,
    changes: Option<&[trellis_model::diff::Change]>,
    format: Format,
) -> String {
    let errors: &[Diagnostic] = result.as_ref().err().map_or(&[], |e| e.as_slice());
    match format {
        Format::Json => {
            let json = serde_json::json!({
                "policy": label,
                "valid": result.is_ok(),
                "errors": errors,
                "services": result.as_ref().map(|m| m.services.len()).unwrap_or(0),
                "changes": changes,
            });
            format!("{}\n", serde_json::to_string_pretty(&json).unwrap_or_default())
        }
        Format::Github => {
            let mut out: String = errors.iter().map(|e| e.github_annotation() + "\n").collect();
            for c in changes.unwrap_or_default() {
                out.push_str(&format!("::notice title=Traffic change::{}\n", c.text));
            }
            out
        }
        Format::Human => {
            let mut out: String = errors.iter().map(|e| e.render() + "\n").collect();
            match result {
                Ok(mesh) => out.push_str(&format!(
                    "valid: {label}: {} service(s), {} rollout(s)\n",
                    mesh.services.len(),
                    mesh.rollouts.len()
                )),
                Err(e) => out.push_str(&format!("invalid: {label}: {} error(s)\n", e.len())),
            }
            if let Some(changes) = changes {
                out.push_str(&changes_text(changes));
            }
            out
        }
    }
}

fn changes_text(changes: &[trellis_model::diff::Change]) -> String {
    if changes.is_empty() {
        return "no change to traffic\n".into();
    }
    let mut out = String::from("what this changes:\n");
    for c in changes {
        out.push_str(&format!("  - {}\n", c.text));
    }
    out
}

pub fn diff(args: &DiffArgs) -> i32 {
    let run = || -> Result<i32, RunError> {
        let (from_label, from) = load(&args.from, &args.repo, true)?;
        let (to_label, to) = load(&args.to, &args.repo, true)?;
        let (old, new) = match (from, to) {
            (Ok(old), Ok(new)) => (old, new),
            (from, to) => {
                for (label, r) in [(&from_label, from), (&to_label, to)] {
                    if let Err(errors) = r {
                        eprint!("{}", report(label, &Err(errors), None, Format::Human));
                    }
                }
                return Ok(1);
            }
        };
        let changes = trellis_model::diff::diff(&old, &new);
        match args.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&changes).unwrap_or_default()),
            Format::Github => changes.iter().for_each(|c| println!("::notice title=Traffic change::{}", c.text)),
            Format::Human => print!("{}", changes_text(&changes)),
        }
        Ok(0)
    };
    run().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        2
    })
}

/// One schema for any policy document: `oneOf` the kinds, each with its `kind` fixed.
pub fn schema() -> String {
    use trellis_model::policy::*;
    let mut generator = schemars::SchemaGenerator::default();
    let kinds = [
        ("Mesh", generator.subschema_for::<Mesh>()),
        ("Service", generator.subschema_for::<Service>()),
        ("Route", generator.subschema_for::<Route>()),
        ("TrafficPolicy", generator.subschema_for::<TrafficPolicy>()),
        ("AccessPolicy", generator.subschema_for::<AccessPolicy>()),
        ("Rollout", generator.subschema_for::<Rollout>()),
        ("Notification", generator.subschema_for::<Notification>()),
    ];
    let mut defs = serde_json::Map::new();
    for (name, schema) in generator.take_definitions(true) {
        defs.insert(name, schema);
    }
    for (kind, _) in &kinds {
        if let Some(props) = defs.get_mut(*kind).and_then(|d| d.get_mut("properties")) {
            props["kind"] = serde_json::json!({ "const": kind });
        }
    }
    let root = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://trellis.dev/schema/policy.json",
        "title": "Trellis policy document",
        "oneOf": kinds.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>(),
        "$defs": defs,
    });
    serde_json::to_string_pretty(&root).unwrap_or_default()
}
