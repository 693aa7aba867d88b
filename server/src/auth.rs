//! Who may change things. Reading is open to everyone (a viewer); changing a rollout needs an
//! operator. Scripts and the CLI send `Authorization: Bearer <token>`; the dashboard logs in
//! with a token once and then carries an HttpOnly session cookie, with a CSRF token that must
//! come back in `X-CSRF-Token` on every change (a cookie alone never authorises one).
//!
//! Users are configured as `name:role:token` entries (`TRELLIS_TOKENS`, comma-separated), or
//! `name:role:sha256:<hex>` so that the configuration never holds a usable token. Only the
//! SHA-256 of a token is kept in memory. Failed logins are limited per client address.

use crate::sync::Locked;
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

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub token: String,
}

/// Never prints the token, wherever a configuration ends up being logged.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &"<redacted>")
            .finish()
    }
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
        if let Some(hex) = token.strip_prefix("sha256:") {
            if name.is_empty() || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("user {name:?}: sha256: needs 64 hex digits"));
            }
            return Ok(User { name: name.to_string(), role, token: token.to_ascii_lowercase() });
        }
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
    #[error("too many failed logins from this address; try again in {0} s")]
    RateLimited(u64),
}

/// Failed logins one client address may make per window before it must wait.
const FAILED_LOGINS: u32 = 5;
const FAILED_WINDOW: Duration = Duration::from_secs(60);
/// Bounds the table of addresses with recent failures.
const MAX_TRACKED: usize = 10_000;

struct Session {
    user: Principal,
    csrf: String,
    expires: Instant,
}

pub struct Auth {
    /// Each user with the SHA-256 (hex) of their token; the token itself is not kept.
    users: Vec<(Principal, String)>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<std::net::IpAddr, (Instant, u32)>>,
}

/// SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl Auth {
    pub fn new(users: Vec<User>) -> Self {
        let users = users
            .into_iter()
            .map(|u| {
                let hash = u.token.strip_prefix("sha256:").map_or_else(|| token_hash(&u.token), str::to_string);
                (Principal { name: u.name, role: u.role }, hash)
            })
            .collect();
        Auth { users, sessions: Mutex::new(HashMap::new()), failures: Mutex::new(HashMap::new()) }
    }

    fn by_token(&self, token: &str) -> Option<Principal> {
        let hash = token_hash(token);
        // Every entry is compared, in constant time, so timing does not reveal a prefix.
        let mut found = None;
        for (user, known) in &self.users {
            if constant_eq(known.as_bytes(), hash.as_bytes()) {
                found = Some(user.clone());
            }
        }
        found
    }

    /// A login from `client`: the session id (for the cookie) and its CSRF token. After
    /// [`FAILED_LOGINS`] failures in a minute, the address waits out the minute.
    pub fn login(&self, token: &str, client: std::net::IpAddr) -> Result<(Principal, String, String), Denied> {
        let now = Instant::now();
        {
            let mut failures = self.failures.locked();
            failures.retain(|_, (since, _)| now.duration_since(*since) < FAILED_WINDOW);
            if let Some((since, n)) = failures.get(&client)
                && *n >= FAILED_LOGINS
            {
                return Err(Denied::RateLimited((FAILED_WINDOW - now.duration_since(*since)).as_secs().max(1)));
            }
        }
        let Some(user) = self.by_token(token) else {
            let mut failures = self.failures.locked();
            if failures.len() < MAX_TRACKED || failures.contains_key(&client) {
                failures.entry(client).or_insert((now, 0)).1 += 1;
            }
            return Err(Denied::BadToken);
        };
        let (id, csrf) = (random_token(), random_token());
        let mut sessions = self.sessions.locked();
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
        self.sessions.locked().remove(session);
    }

    /// The user behind a session cookie, and its CSRF token.
    pub fn session(&self, id: &str) -> Option<(Principal, String)> {
        let sessions = self.sessions.locked();
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
    hex::encode(bytes)
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
    fn tokens_never_print() {
        let u = User::parse("ann:operator:ann-token-0123456789").unwrap();
        assert!(!format!("{u:?}").contains("ann-token"), "{u:?}");
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
        let (_, id, csrf) = a.login("ann-token-0123456789", LOCAL).unwrap();
        let cookie = format!("theme=dark; {SESSION_COOKIE}={id}");
        assert_eq!(a.operator(&headers(&[("cookie", &cookie)])), Err(Denied::Csrf));
        assert_eq!(a.operator(&headers(&[("cookie", &cookie), ("x-csrf-token", "guess")])), Err(Denied::Csrf));
        assert_eq!(a.operator(&headers(&[("cookie", &cookie), ("x-csrf-token", &csrf)])).unwrap().name, "ann");
        a.logout(&id);
        assert_eq!(a.operator(&headers(&[("cookie", &cookie), ("x-csrf-token", &csrf)])), Err(Denied::BadSession));
        assert_eq!(a.login("wrong", LOCAL).unwrap_err(), Denied::BadToken);
    }

    const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn tokens_are_kept_as_hashes_and_may_be_configured_as_hashes() {
        let hash = token_hash("ann-token-0123456789");
        let a = Auth::new(vec![User::parse(&format!("ann:operator:sha256:{hash}")).unwrap()]);
        assert!(a.users.iter().all(|(_, h)| h == &hash));
        let ann = a.operator(&headers(&[("authorization", "Bearer ann-token-0123456789")])).unwrap();
        assert_eq!(ann.name, "ann");
        assert!(User::parse("ann:operator:sha256:abc").unwrap_err().contains("64 hex digits"));
    }

    #[test]
    fn failed_logins_are_limited_per_address() {
        let a = auth();
        let other = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));
        for _ in 0..FAILED_LOGINS {
            assert_eq!(a.login("guess", LOCAL).unwrap_err(), Denied::BadToken);
        }
        let limited = a.login("ann-token-0123456789", LOCAL).unwrap_err();
        assert!(matches!(limited, Denied::RateLimited(s) if s <= 60), "{limited:?}");
        assert!(a.login("ann-token-0123456789", other).is_ok(), "other addresses are not locked out");
    }
}
