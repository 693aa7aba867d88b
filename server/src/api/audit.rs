//! `/api/v1/audit`: the audit log, filtered and paginated (newest first), one event with its
//! details, an export of everything a filter matches (JSON Lines or CSV), and the state of
//! the hash chain.

use super::openapi::{Api, Op};
use super::{ApiError, PageQuery};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use trellis_api::{AuditEntry, AuditFilter, AuditPage};

pub fn routes(api: Api) -> Api {
    api.get("/api/v1/audit", Op::json::<AuditPage>("The audit log, newest first, filtered").query::<AuditQuery>(), list)
        .get(
            "/api/v1/audit/export",
            Op::other("Everything a filter matches, as JSON Lines (or CSV with format=csv)", "application/x-ndjson")
                .query::<AuditQuery>(),
            export,
        )
        .get(
            "/api/v1/audit/verify",
            Op::json::<crate::audit::export::Verified>("Whether every event links to the one before"),
            verify,
        )
        .get("/api/v1/audit/{id}", Op::json::<AuditEntry>("One event, with its details"), one)
}

/// The query string: a page and the filters.
#[derive(Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// The `next` cursor of the previous page.
    cursor: Option<String>,
    /// Events per page (50 unless said, at most 500).
    limit: Option<i64>,
    /// An event kind (`rollout.aborted`) or its first part (`rollout`).
    kind: Option<String>,
    service: Option<String>,
    /// Who made the change: a user, a commit's author, or `trellis`.
    actor: Option<String>,
    /// A revision's SHA or a prefix of one.
    revision: Option<String>,
    /// Unix milliseconds, inclusive.
    since: Option<i64>,
    /// Unix milliseconds, exclusive.
    until: Option<i64>,
    /// Words the summary holds.
    q: Option<String>,
    /// Leave out routine events (proxies joining and leaving, configs synced).
    significant: Option<bool>,
    /// The export's format: `jsonl` (the default) or `csv`.
    format: Option<String>,
}

impl AuditQuery {
    fn filter(&self) -> AuditFilter {
        // An empty field (a cleared form input) filters nothing.
        let text = |v: &Option<String>| v.as_ref().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        AuditFilter {
            kind: text(&self.kind),
            service: text(&self.service),
            actor: text(&self.actor),
            revision: text(&self.revision),
            since: self.since,
            until: self.until,
            q: text(&self.q),
            significant: self.significant.unwrap_or(false),
        }
    }
}

fn query(q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>) -> Result<AuditQuery, ApiError> {
    q.map(|Query(q)| q).map_err(|e| {
        ApiError::invalid(
            "invalid audit query",
            format!(
                "{}: filters are kind, service, actor, revision, since, until (unix ms), q, significant (true: \
                 leave out routine events), cursor, limit",
                e.body_text()
            ),
        )
    })
}

pub async fn page(
    state: &AppState,
    filter: &AuditFilter,
    cursor: Option<String>,
    limit: Option<i64>,
) -> Result<AuditPage, ApiError> {
    let (before, limit) = PageQuery { cursor, limit }.parse()?;
    let items = state.store.events(filter, before, limit).await?;
    let next = (items.len() as i64 == limit).then(|| items.last().map(|e| e.id.to_string())).flatten();
    Ok(AuditPage { items, next })
}

async fn list(
    State(state): State<AppState>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let q = query(q)?;
    Ok(Json(page(&state, &q.filter(), q.cursor.clone(), q.limit).await?))
}

async fn one(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Json<AuditEntry>, ApiError> {
    let found = state.store.events(&AuditFilter::default(), id.checked_add(1), 1).await?;
    found.into_iter().find(|e| e.id == id).map(Json).ok_or_else(|| ApiError::NotFound(format!("no audit event {id}")))
}

/// Every event the filters match, newest first, streamed a page at a time.
async fn export(
    State(state): State<AppState>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let csv = match q.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => false,
        "csv" => true,
        other => return Err(ApiError::invalid("unknown export format", format!("{other:?}: use jsonl or csv"))),
    };
    let filter = q.filter();
    let header = csv.then(|| bytes::Bytes::from_static(crate::audit::export::CSV_HEADER.as_bytes()));
    let pages = futures::stream::unfold(Some(i64::MAX), move |before| {
        let (state, filter) = (state.clone(), filter.clone());
        async move {
            let before = before?;
            match state.store.events(&filter, Some(before), 1000).await {
                Ok(items) if items.is_empty() => None,
                Ok(items) => {
                    let next = (items.len() == 1000).then(|| items.last().map(|e| e.id)).flatten();
                    let text = crate::audit::export::lines(&items, csv);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(text)), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    let body = futures::StreamExt::chain(futures::stream::iter(header.map(Ok)), pages);
    let (content_type, name) = if csv { ("text/csv", "audit.csv") } else { ("application/x-ndjson", "audit.jsonl") };
    let mut resp = axum::body::Body::from_stream(body).into_response();
    let headers = resp.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    if let Ok(v) = format!("attachment; filename=\"{name}\"").parse() {
        headers.insert(http::header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

async fn verify(State(state): State<AppState>) -> Result<Json<crate::audit::export::Verified>, ApiError> {
    Ok(Json(crate::audit::export::verify(&state.store).await?.report()))
}
