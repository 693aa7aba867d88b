//! Where policy files come from: a commit's tree (what the control plane and `--rev` read)
//! or a directory (a checkout, for `trellis validate` on a laptop or in CI).

use git2::{Oid, Repository};
use std::path::Path;
use trellis_model::{Diagnostic, SourceFile};

/// Files that could be read, and a diagnostic for each that could not.
pub type Read = (Vec<SourceFile>, Vec<Diagnostic>);

/// Every policy file in a commit's tree, never the working directory.
pub fn read_commit(repo: &Repository, oid: Oid) -> Result<Read, git2::Error> {
    let (mut files, mut errors) = (Vec::new(), Vec::new());
    repo.find_commit(oid)?.tree()?.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        let name = entry.name().unwrap_or_default();
        // Dot-directories (.github, .trellis) hold tooling, not policy.
        if name.starts_with('.') {
            return git2::TreeWalkResult::Skip;
        }
        let path = format!("{dir}{name}");
        if entry.kind() == Some(git2::ObjectType::Blob) && SourceFile::is_policy_path(&path) {
            match entry.to_object(repo).ok().and_then(|o| o.into_blob().ok()) {
                Some(blob) => push(SourceFile::from_bytes(&path, blob.content()), &mut files, &mut errors),
                None => push(SourceFile::from_bytes(&path, &[0xff]), &mut files, &mut errors),
            }
        }
        git2::TreeWalkResult::Ok
    })?;
    Ok((files, errors))
}

/// Every policy file under `dir`, skipping dot-directories, with paths relative to `dir`.
pub fn read_dir(dir: &Path) -> std::io::Result<Read> {
    let (mut files, mut errors) = (Vec::new(), Vec::new());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            let rel = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            if rel.split('/').any(|part| part.starts_with('.')) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if SourceFile::is_policy_path(&rel) {
                push(SourceFile::from_bytes(&rel, &std::fs::read(&path)?), &mut files, &mut errors);
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, errors))
}

fn push(r: Result<SourceFile, Diagnostic>, files: &mut Vec<SourceFile>, errors: &mut Vec<Diagnostic>) {
    match r {
        Ok(f) => files.push(f),
        Err(e) => errors.push(e),
    }
}

/// Judges what was read, offline (the pull-request commands): unreadable files are errors
/// like any other; a secret's variable is the control plane's business.
pub fn load(read: Read, revision: &str) -> Result<trellis_model::MeshConfig, Vec<Diagnostic>> {
    judge(read, revision, &|_| true)
}

/// Judges what was read on the control plane that will use it: a secret a policy names must
/// be set in this very process's environment (or provided by it, see [`crate::secrets`]).
pub fn load_here(read: Read, revision: &str) -> Result<trellis_model::MeshConfig, Vec<Diagnostic>> {
    judge(read, revision, &|name| crate::secrets::get(name).is_some())
}

fn judge(
    (files, mut errors): Read,
    revision: &str,
    is_set: &dyn Fn(&str) -> bool,
) -> Result<trellis_model::MeshConfig, Vec<Diagnostic>> {
    match trellis_model::load_in(&files, revision, is_set) {
        Ok(config) if errors.is_empty() => Ok(config),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}
