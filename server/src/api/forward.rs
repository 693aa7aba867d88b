//! Passing an operator's action on to the leader. Only the leader changes rollouts, so a
//! replica that does not lead sends the request on, with the caller's credentials (a bearer
//! token, or a session cookie with its CSRF token: sessions live in the shared database), and
//! answers with the leader's answer. One hop at most: a request passed on is never passed on
//! again, so two replicas that each think the other leads cannot bounce it between them.

use super::ApiError;
use crate::state::AppState;
use http_body_util::BodyExt;
use trellis_api::RolloutView;

/// Marks a request passed on by a replica (its id).
pub const FORWARDED_BY: &str = "x-trellis-forwarded-by";
const HEADERS: [http::HeaderName; 3] =
    [http::header::AUTHORIZATION, http::header::COOKIE, http::HeaderName::from_static(crate::auth::CSRF_HEADER)];
const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

pub async fn to_leader(state: &AppState, headers: &http::HeaderMap, path: &str) -> Result<RolloutView, ApiError> {
    let no_leader = || {
        ApiError::Unavailable(
            "no replica of the control plane leads right now (a new leader takes over within 5 s); try again".into(),
        )
    };
    if headers.contains_key(FORWARDED_BY) {
        return Err(no_leader());
    }
    let leader = state.cluster.leader_address().ok_or_else(no_leader)?;
    let mut req =
        http::Request::post(format!("{}{path}", leader.trim_end_matches('/'))).header(FORWARDED_BY, state.cluster.id());
    for name in HEADERS {
        for value in headers.get_all(&name) {
            req = req.header(&name, value);
        }
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .map_err(|e| ApiError::invalid("the request cannot be passed on to the leader", e.to_string()))?;
    let answer = async {
        let resp = state.peers.request(req).await.map_err(|e| crate::https::with_causes(&e))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((status, body))
    };
    let (status, body) = match tokio::time::timeout(WAIT, answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            return Err(ApiError::Unavailable(format!("the leader at {leader} did not answer: {e}; try again")));
        }
        Err(_) => return Err(ApiError::Unavailable(format!("the leader at {leader} did not answer within 15 s"))),
    };
    if status.is_success()
        && let Ok(view) = serde_json::from_slice::<RolloutView>(&body)
    {
        return Ok(view);
    }
    Err(ApiError::Relayed(status, body))
}
