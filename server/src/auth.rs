//! Who may change things. Reading is open to everyone (a viewer); changing a rollout needs an
//! operator. Scripts and the CLI send `Authorization: Bearer <token>`; the dashboard logs in
//! with a token once and then carries an HttpOnly session cookie, with a CSRF token that must
//! come back in `X-CSRF-Token` on every change (a cookie alone never authorises one).
//!
//! Users are configured as `name:role:token` entries (`TRELLIS_TOKENS`, comma-separated).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "trellis_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Bounds the session table: beyond it the oldest session is dropped.
const MAX_SESSIONS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub token: String,
}

impl User {
    /// Parses `name:role:token`.
    pub fn parse(entry: &str) -> Result<User, String> {
        let mut parts = entry.trim().splitn(3, ':');
        let (Some(name), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{entry:?} is not name:role:token"));
        };
        let role = match role {
            "operator" => Role::Operator,
            "viewer" => Role::Viewer,
            other => return Err(format!("role {other:?} of {name} is neither operator nor viewer")),
        };
        if name.is_empty() || token.len() < 16 {
            return Err(format!("user {name:?} needs a name and a token of at least 16 characters"));
        }
        Ok(User { name: name.to_string(), role, token: token.to_string() })
    }

    pub fn parse_list(list: &str) -> Result<Vec<User>, String> {
        list.split(',').filter(|e| !e.trim().is_empty()).map(User::parse).collect()
    }
}

/// Who a request comes from, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("sign in as an operator: send Authorization: Bearer <token>, or log in on the dashboard")]
    Unauthenticated,
    #[error("the token is not known")]
    BadToken,
    #[error("the session expired or is unknown; log in again")]
    BadSession,
    #[error("missing or wrong X-CSRF-Token for this session")]
    Csrf,
    #[error("{0} is a viewer: viewers can see everything and change nothing")]
    Forbidden(String),
}

struct Session {
    user: Principal,
    csrf: String,
    expires: Instant,
}

pub struct Auth {
    users: Vec<User>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Auth {
    pub fn new(users: Vec<User>) -> Self {
        Auth { users, sessions: Mutex::new(HashMap::new()) }
    }

    fn by_token(&self, token: &str) -> Option<Principal> {
        // Every entry is compared, in constant time, so timing does not reveal a prefix.
        let mut found = None;
        for u in &self.users {
            if constant_eq(u.token.as_bytes(), token.as_bytes()) {
                found = Some(Principal { name: u.name.clone(), role: u.role });
            }
        }
        found
    }

    /// A login: the session id (for the cookie) and its CSRF token.
    pub fn login(&self, token: &str) -> Result<(Principal, String, String), Denied> {
        let user = self.by_token(token).ok_or(Denied::BadToken)?;
        let (id, csrf) = (random_token(), random_token());
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), Session { user: user.clone(), csrf: csrf.clone(), expires: now + SESSION_TTL });
        Ok((user, id, csrf))
    }

    pub fn logout(&self, session: &str) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(session);
    }

    /// The user behind a session cookie, and its CSRF token.
    pub fn session(&self, id: &str) -> Option<(Principal, String)> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(id).filter(|s| s.expires > Instant::now()).map(|s| (s.user.clone(), s.csrf.clone()))
    }

    /// The operator behind a change request, from its headers.
    pub fn operator(&self, headers: &http::HeaderMap) -> Result<Principal, Denied> {
        let principal = if let Some(bearer) = bearer(headers) {
            self.by_token(bearer).ok_or(Denied::BadToken)?
        } else if let Some(id) = cookie(headers, SESSION_COOKIE) {
            let (user, csrf) = self.session(id).ok_or(Denied::BadSession)?;
            let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !constant_eq(sent.as_bytes(), csrf.as_bytes()) {
                return Err(Denied::Csrf);
            }
            user
        } else {
            return Err(Denied::Unauthenticated);
        };
        match principal.role {
            Role::Operator => Ok(principal),
            Role::Viewer => Err(Denied::Forbidden(principal.name)),
        }
    }
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 128 bits from the OS's generator, hex-encoded.
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness is a broken machine; fastrand still gives unguessable-enough ids
        // for a session table that also expires.
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(User::parse_list("ann:operator:ann-token-0123456789, vic:viewer:vic-token-0123456789").unwrap())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn users_parse_from_name_role_token_and_bad_entries_say_why() {
        assert_eq!(auth().users.len(), 2);
        assert!(User::parse("ann:admin:0123456789abcdef").unwrap_err().contains("neither operator nor viewer"));
        assert!(User::parse("ann:operator:short").unwrap_err().contains("16 characters"));
        assert!(User::parse("ann").unwrap_err().contains("name:role:token"));
    }

    #[test]
    fn bearer_tokens_name_the_operator_and_viewers_are_forbidden() {
        let a = auth();
        let ann = a.operator(&headers(&[("authorization", "Bearer ann-token-0123456789")])).unwrap();
        assert_eq!(ann, Principal { name: "ann".into(), role: Role::Operator });
        let vic = a.operator(&headers(&[("authorization", "Bearer vic-token-0123456789")]));
        assert_eq!(vic, Err(Denied::Forbidden("vic".into())));
        assert_eq!(a.operator(&headers(&[("authorization", "Bearer nope")])), Err(Denied::BadToken));
        assert_eq!(a.operator(&headers(&[])), Err(Denied::Unauthenticated));
    }

    #[test]
    fn a_session_cookie_needs_its_csrf_token_for_changes() {
        let a = auth();
        let (_, id, csrf) = a.login("ann-token-0123456789").unwrap();
        let cookie = format!("theme=dark; {SESSION_COOKIE}={id}");
        assert_eq!(a.operator(&headers(&[("cookie", &cookie)])), Err(Denied::Csrf));
        assert_eq!(a.operator(&headers(&[("cookie", &cookie), ("x-csrf-token", "guess")])), Err(Denied::Csrf));
        assert_eq!(a.operator(&headers(&[("cookie", &cookie), ("x-csrf-token", &csrf)])).unwrap().name, "ann");
        a.logout(&id);
        assert_eq!(a.operator(&headers(&[("cookie", &cookie), ("x-csrf-token", &csrf)])), Err(Denied::BadSession));
        assert_eq!(a.login("wrong").unwrap_err(), Denied::BadToken);
    }
}
