//! `/api/v1/rollouts` (read by anyone, changed by operators) and `/api/v1/session` (the
//! dashboard's login).

use super::ApiError;
use super::openapi::{Api, Op};
use crate::auth::{CSRF_HEADER, Role, SESSION_COOKIE};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use trellis_api::{RolloutRun, RolloutView, RolloutsView, SessionView};
use trellis_model::rollout::Action;

pub fn routes(api: Api) -> Api {
    api.get(
        "/api/v1/rollouts",
        Op::json::<RolloutsView>("Every Rollout of the applied revision, and the newest notification deliveries"),
        list,
    )
    .get(
        "/api/v1/rollouts/history",
        Op::json::<super::Page<RolloutRun>>("Rollouts that ended, newest first, from the audit log"),
        history,
    )
    .get("/api/v1/rollouts/{name}", Op::json::<RolloutView>("One Rollout, with its analyses"), one)
    .post(
        "/api/v1/rollouts/{name}/{action}",
        Op::json::<RolloutView>("An operator's action: promote, promote-full, pause, resume or abort").operator(),
        act,
    )
    .get("/api/v1/session", Op::json::<SessionView>("Who the session cookie or token belongs to"), session)
    .post(
        "/api/v1/session",
        Op::json::<SessionView>("Logs in with a token: sets the session cookie").body::<Login>(),
        login,
    )
    .delete(
        "/api/v1/session",
        Op::other("Logs out: the session ends and its cookie is cleared", "application/json"),
        logout,
    )
}

async fn list(State(state): State<AppState>) -> Json<RolloutsView> {
    Json(crate::notify::with_deliveries(&state, state.rollouts.views().await).await)
}

async fn history(State(state): State<AppState>) -> Result<Json<super::Page<RolloutRun>>, ApiError> {
    Ok(Json(super::Page { items: finished(&state).await?, next: None }))
}

/// The rollout events read back for the history: enough for hundreds of runs.
const HISTORY_EVENTS: i64 = 2000;

/// Rollouts that ended, newest first, from the audit log's latest rollout events.
pub async fn finished(state: &AppState) -> Result<Vec<RolloutRun>, ApiError> {
    let filter = trellis_api::AuditFilter { kind: Some("rollout".into()), significant: true, ..Default::default() };
    let events = state.store.events(&filter, None, HISTORY_EVENTS).await?;
    Ok(crate::rollouts::history::runs(&events))
}

async fn one(State(state): State<AppState>, Path(name): Path<String>) -> Result<Json<RolloutView>, ApiError> {
    let views = state.rollouts.views().await;
    let found = views.items.into_iter().find(|r| r.name == name);
    found.map(Json).ok_or_else(|| ApiError::NotFound(format!("no rollout named {name:?} in the applied revision")))
}

async fn act(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    headers: http::HeaderMap,
) -> Result<Json<RolloutView>, ApiError> {
    perform(&state, &headers, &name, &action).await.map(Json)
}

/// An operator's action on a rollout, for the REST API and the dashboard alike: the caller
/// must be an operator (bearer token, or session cookie with its CSRF token). Refusals are
/// audited.
pub async fn perform(
    state: &AppState,
    headers: &http::HeaderMap,
    name: &str,
    action: &str,
) -> Result<RolloutView, ApiError> {
    let Some(action) = Action::parse(action) else {
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        return Err(ApiError::NotFound(format!("no action {action:?}: use one of {}", names.join(", "))));
    };
    if !state.cluster.leads() {
        return super::forward::to_leader(state, headers, &format!("/api/v1/rollouts/{name}/{}", action.name())).await;
    }
    let operator = state.auth.operator(headers).await.map_err(|denied| {
        let summary = format!("{} on rollout {name} refused: {denied}", action.name());
        state.audit.system("auth.denied", None, summary, json!({ "rollout": name, "action": action.name() }));
        ApiError::from(denied)
    })?;
    Ok(state.rollouts.act(state, name, action, &operator.name).await?)
}

/// Who the dashboard is talking to: a signed-in user with their CSRF token, or a viewer.
async fn session(State(state): State<AppState>, headers: http::HeaderMap) -> Json<SessionView> {
    Json(session_of(&state, &headers).await)
}

pub async fn session_of(state: &AppState, headers: &http::HeaderMap) -> SessionView {
    let session = match crate::auth::cookie(headers, SESSION_COOKIE) {
        Some(id) => state.auth.session(id).await,
        None => None,
    };
    match session {
        Some((user, csrf)) => {
            SessionView { user: Some(user.name), operator: user.role == Role::Operator, csrf: Some(csrf) }
        }
        None => SessionView::default(),
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Login {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(login)) = body else {
        return ApiError::invalid("expected {\"token\": \"...\"}", "the body is not a login").into_response();
    };
    match start_session(&state, &login.token, client.ip()).await {
        Ok((view, cookie)) => {
            let mut resp = Json(view).into_response();
            if let Ok(v) = cookie.parse() {
                resp.headers_mut().insert(http::header::SET_COOKIE, v);
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// A login with a token: the session and the `Set-Cookie` value that carries it.
pub async fn start_session(
    state: &AppState,
    token: &str,
    client: std::net::IpAddr,
) -> Result<(SessionView, String), ApiError> {
    match state.auth.login(token, client).await {
        Ok((user, id, csrf)) => {
            state.audit.record(crate::store::NewEvent {
                at: crate::now_ms(),
                kind: "auth.login".into(),
                actor: user.name.clone(),
                revision: None,
                service: None,
                summary: format!("{} signed in to the dashboard", user.name),
                detail: json!({ "role": user.role }),
            });
            let cookie = format!("{SESSION_COOKIE}={id}; {}; Max-Age=43200", cookie_attributes(state));
            let view = SessionView { user: Some(user.name), operator: user.role == Role::Operator, csrf: Some(csrf) };
            Ok((view, cookie))
        }
        Err(denied) => {
            let summary = format!("dashboard login from {client} refused: {denied}");
            state.audit.system("auth.denied", None, summary, json!({ "client": client.to_string() }));
            Err(denied.into())
        }
    }
}

/// The session cookie: no script reads it, no other site's page sends it, and once the
/// dashboard is served over HTTPS it never travels in plaintext.
fn cookie_attributes(state: &AppState) -> &'static str {
    if state.https { "HttpOnly; Secure; SameSite=Strict; Path=/" } else { "HttpOnly; SameSite=Strict; Path=/" }
}

async fn logout(State(state): State<AppState>, headers: http::HeaderMap) -> Response {
    if let Some(id) = crate::auth::cookie(&headers, SESSION_COOKIE) {
        // Logging out is a change too: it needs the session's CSRF token.
        let csrf = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if state.auth.session(id).await.is_some_and(|(_, expected)| Some(expected.as_str()) == csrf) {
            state.auth.logout(id).await;
        }
    }
    let mut resp = http::StatusCode::NO_CONTENT.into_response();
    let expired = format!("{SESSION_COOKIE}=; {}; Max-Age=0", cookie_attributes(&state));
    if let Ok(v) = expired.parse() {
        resp.headers_mut().insert(http::header::SET_COOKIE, v);
    }
    resp
}
