//! `/api/v1/revisions`: every revision judged, each one's files, any two compared, and an
//! operator's revert to an earlier one (a commit, so that git stays the truth).

use super::openapi::{Api, Op};
use super::{ApiError, Page, PageQuery};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use serde_json::json;
use trellis_api::{Comparison, PolicyFile, PolicyView, Reverted, RevisionView};
use trellis_model::MeshConfig;

pub fn routes(api: Api) -> Api {
    api.get(
        "/api/v1/revisions",
        Op::json::<Page<RevisionView>>("Every revision judged, newest first").query::<PageQuery>(),
        list,
    )
    .get("/api/v1/revisions/{rev}", Op::json::<RevisionView>("One revision: a SHA, a prefix of one, or HEAD"), one)
    .get("/api/v1/revisions/{rev}/files", Op::json::<Page<PolicyFile>>("A revision's policy files"), files)
    .get(
        "/api/v1/revisions/{from}/compare/{to}",
        Op::json::<Comparison>("Two revisions compared: changes to traffic and the files' diff"),
        compare_handler,
    )
    .post(
        "/api/v1/revisions/{rev}/revert",
        Op::json::<Reverted>("Commits the policy of an earlier revision on the watched branch").operator(),
        revert_handler,
    )
}

async fn list(State(state): State<AppState>, Query(q): Query<PageQuery>) -> Result<Json<Page<RevisionView>>, ApiError> {
    let (before, limit) = q.parse()?;
    let rows = state.store.revisions(before, limit).await?;
    let next = (rows.len() as i64 == limit).then(|| rows.last().map(|(seq, _)| seq.to_string())).flatten();
    Ok(Json(Page { items: rows.into_iter().map(|(_, r)| r).collect(), next }))
}

async fn one(State(state): State<AppState>, Path(rev): Path<String>) -> Result<Json<RevisionView>, ApiError> {
    resolve(&state, &rev).await.map(Json)
}

async fn files(State(state): State<AppState>, Path(rev): Path<String>) -> Result<Json<Page<PolicyFile>>, ApiError> {
    let sha = resolve(&state, &rev).await?.sha;
    Ok(Json(Page { items: files_of(&read_revision(&state, &sha).await?), next: None }))
}

async fn compare_handler(
    State(state): State<AppState>,
    Path((from, to)): Path<(String, String)>,
) -> Result<Json<Comparison>, ApiError> {
    compare(&state, &from, &to).await.map(Json)
}

async fn revert_handler(
    State(state): State<AppState>,
    Path(rev): Path<String>,
    headers: http::HeaderMap,
) -> Result<Json<Reverted>, ApiError> {
    revert(&state, &headers, &rev).await.map(Json)
}

/// The Policy page: the revision in force with its files, and the recent revisions.
pub async fn build_policy(state: &AppState) -> Result<PolicyView, ApiError> {
    let applied = state.revisions().applied;
    let files = match &applied {
        Some(r) => read_revision(state, &r.sha).await.map(|read| files_of(&read)).unwrap_or_default(),
        None => Vec::new(),
    };
    let revisions = state.store.revisions(None, 20).await?.into_iter().map(|(_, r)| r).collect();
    // The stored row carries the plain-language changes; prefer it over the in-memory copy.
    let applied = match applied {
        Some(r) => Some(state.store.revision(&r.sha).await?.unwrap_or(r)),
        None => None,
    };
    Ok(PolicyView { applied, files, revisions })
}

/// What going from one revision to another does to traffic, and the files that differ.
pub async fn compare(state: &AppState, from: &str, to: &str) -> Result<Comparison, ApiError> {
    let (from, to) = (resolve(state, from).await?, resolve(state, to).await?);
    let ((old_files, old), (new_files, new)) = (policy_at(state, &from.sha).await?, policy_at(state, &to.sha).await?);
    let changes = match (old, new) {
        (Some(old), Some(new)) => Some(trellis_model::diff::diff(&old, &new)),
        _ => None,
    };
    let files = crate::gitops::compare::files(&old_files, &new_files);
    Ok(Comparison { from, to, changes, files })
}

/// An operator's revert to revision `rev`: committed to the watched branch (or to a branch
/// for a pull request, as outcomes are), audited with the actor. Refusals are audited too.
pub async fn revert(state: &AppState, headers: &http::HeaderMap, rev: &str) -> Result<Reverted, ApiError> {
    let operator = state.auth.operator(headers).await.map_err(|denied| {
        let summary = format!("revert to {rev} refused: {denied}");
        state.audit.system("auth.denied", None, summary, json!({ "revert_to": rev }));
        ApiError::from(denied)
    })?;
    let target = resolve(state, rev).await?;
    if target.outcome != "applied" {
        return Err(ApiError::Conflict(format!(
            "{} was rejected ({} errors): revert to a revision that was applied",
            target.short(),
            target.errors.len()
        )));
    }
    let made = crate::gitops::revert::revert(&state.policy, state.record_to, &target.sha, &operator.name).await?;
    let watched = made.branch == state.policy.branch;
    let whither = if watched {
        format!("on {}", made.branch)
    } else {
        format!("on branch {} for a pull request to {}", made.branch, state.policy.branch)
    };
    let summary = format!(
        "{} reverted the policy to {} ({}): commit {} {whither}",
        operator.name,
        target.short(),
        target.subject(),
        trellis_api::short_sha(&made.sha),
    );
    state.audit.record(crate::store::NewEvent {
        at: crate::now_ms(),
        kind: "revision.reverted".into(),
        actor: operator.name.clone(),
        revision: Some(target.sha.clone()),
        service: None,
        summary,
        detail: json!({ "to": target.sha, "commit": made.sha, "branch": made.branch }),
    });
    // A remote repository's follower would otherwise see the commit at its next poll.
    state.git_hook.notify_one();
    Ok(Reverted { to: target.sha, sha: made.sha, branch: made.branch, watched })
}

/// A revision named by its SHA or an unambiguous prefix of it (at least 4 hex digits), as
/// Trellis judged it.
async fn resolve(state: &AppState, rev: &str) -> Result<RevisionView, ApiError> {
    if !(4..=40).contains(&rev.len()) || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            "invalid revision",
            format!("`{rev}`: give a commit SHA (at least 4 hex digits)"),
        ));
    }
    let sha = if rev.len() == 40 {
        rev.to_ascii_lowercase()
    } else {
        let (repo, prefix) = (state.policy.repo.clone(), rev.to_string());
        let found = tokio::task::spawn_blocking(move || {
            let repo = git2::Repository::open(&repo)?;
            repo.revparse_single(&prefix)?.peel_to_commit().map(|c| c.id().to_string())
        });
        match found.await {
            Ok(Ok(sha)) => sha,
            Ok(Err(e)) if e.code() == git2::ErrorCode::Ambiguous => {
                return Err(ApiError::invalid(
                    "ambiguous revision",
                    format!("`{rev}` names several commits: give more digits"),
                ));
            }
            _ => return Err(ApiError::NotFound(format!("no commit {rev} in the policy repository"))),
        }
    };
    state.store.revision(&sha).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "{} is not a revision Trellis has judged: only commits on {} since Trellis began following it are",
            trellis_api::short_sha(&sha),
            state.policy.branch
        ))
    })
}

/// What a revision's commit holds, read once: its files, and each that could not be read.
async fn read_revision(state: &AppState, sha: &str) -> Result<crate::source::Read, ApiError> {
    let (repo, oid) = (state.policy.repo.clone(), sha.to_string());
    let read = tokio::task::spawn_blocking(move || {
        let repo = git2::Repository::open(&repo)?;
        crate::source::read_commit(&repo, git2::Oid::from_str(&oid)?)
    });
    match read.await {
        Ok(Ok(read)) => Ok(read),
        Ok(Err(e)) => Err(ApiError::NotFound(format!("the revision's files cannot be read: {}", e.message()))),
        Err(e) => {
            Err(ApiError::Internal { message: "the revision's files cannot be read".into(), cause: e.to_string() })
        }
    }
}

fn files_of(read: &crate::source::Read) -> Vec<PolicyFile> {
    read.0.iter().map(|f| PolicyFile { path: f.path.clone(), text: f.text.clone() }).collect()
}

/// A revision's policy files and, when they are a valid policy, its configuration.
async fn policy_at(state: &AppState, sha: &str) -> Result<(Vec<PolicyFile>, Option<MeshConfig>), ApiError> {
    let read = read_revision(state, sha).await?;
    Ok((files_of(&read), crate::source::load_here(read, sha).ok()))
}
