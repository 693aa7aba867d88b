//! Who may change things. Reading is open to everyone (a viewer); changing a rollout needs an
//! operator. Scripts and the CLI send `Authorization: Bearer <token>`; the dashboard logs in
//! with a token once and then carries an HttpOnly session cookie, with a CSRF token that must
//! come back in `X-CSRF-Token` on every change (a cookie alone never authorises one).
//!
//! Users are configured as `name:role:token` entries (`TRELLIS_TOKENS`, comma-separated), or
//! `name:role:sha256:<hex>` so that the configuration never holds a usable token. Only the
//! SHA-256 of a token is kept in memory. Sessions live in the database (by the SHA-256 of
//! their id), so every replica knows them and a restart logs nobody out. Failed logins are
//! limited per client address, by each replica.

use crate::store::{SessionRow, Store};
use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "trellis_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Bounds the session table: beyond it the sessions nearest their end are dropped.
const MAX_SESSIONS: i64 = 10_000;

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
    #[error("sessions are kept in the database, which is unavailable; try again shortly, or send a bearer token")]
    Unavailable,
}

/// Failed logins one client address may make per window before it must wait.
const FAILED_LOGINS: u32 = 5;
const FAILED_WINDOW: Duration = Duration::from_secs(60);
/// Bounds the table of addresses with recent failures.
const MAX_TRACKED: usize = 10_000;

pub struct Auth {
    /// Each user with the SHA-256 (hex) of their token; the token itself is not kept.
    users: Vec<(Principal, String)>,
    store: Store,
    failures: Mutex<HashMap<std::net::IpAddr, (Instant, u32)>>,
}

/// SHA-256 of a token, hex.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

impl Auth {
    pub fn new(users: Vec<User>, store: Store) -> Self {
        let users = users
            .into_iter()
            .map(|u| {
                let hash = u.token.strip_prefix("sha256:").map_or_else(|| token_hash(&u.token), str::to_string);
                (Principal { name: u.name, role: u.role }, hash)
            })
            .collect();
        Auth { users, store, failures: Mutex::new(HashMap::new()) }
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
    pub async fn login(&self, token: &str, client: std::net::IpAddr) -> Result<(Principal, String, String), Denied> {
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
        let now = crate::now_ms();
        let row = SessionRow {
            user: user.name.clone(),
            role: role_name(user.role).into(),
            csrf: csrf.clone(),
            expires_at: now + SESSION_TTL.as_millis() as i64,
        };
        self.store.create_session(&token_hash(&id), &row, now, MAX_SESSIONS).await.map_err(|e| {
            tracing::error!(error = %e, "cannot store a new session");
            Denied::Unavailable
        })?;
        Ok((user, id, csrf))
    }

    pub async fn logout(&self, session: &str) {
        if let Err(e) = self.store.delete_session(&token_hash(session)).await {
            tracing::error!(error = %e, "cannot end a session");
        }
    }

    /// The user behind a session cookie, and its CSRF token. While the database is away no
    /// session is known (bearer tokens still work).
    pub async fn session(&self, id: &str) -> Option<(Principal, String)> {
        let row = match self.store.session(&token_hash(id), crate::now_ms()).await {
            Ok(row) => row?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a session");
                return None;
            }
        };
        let role = match row.role.as_str() {
            "operator" => Role::Operator,
            _ => Role::Viewer,
        };
        Some((Principal { name: row.user, role }, row.csrf))
    }

    /// The operator behind a change request, from its headers.
    pub async fn operator(&self, headers: &http::HeaderMap) -> Result<Principal, Denied> {
        let principal = if let Some(bearer) = bearer(headers) {
            self.by_token(bearer).ok_or(Denied::BadToken)?
        } else if let Some(id) = cookie(headers, SESSION_COOKIE) {
            let (user, csrf) = self.session(id).await.ok_or(Denied::BadSession)?;
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

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Operator => "operator",
        Role::Viewer => "viewer",
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

/// Equal, in a time that depends on the lengths only (a kept crate's, not a hand-written loop
/// the optimiser may shortcut).
fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
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

    /// Users and a SQLite store of their own (kept alive by the returned directory).
    async fn auth() -> (Auth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Store::sqlite_url(&dir.path().join("auth.db"))).await.unwrap();
        let users = User::parse_list("ann:operator:ann-token-0123456789, vic:viewer:vic-token-0123456789").unwrap();
        (Auth::new(users, store), dir)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs.iter().map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap())).collect()
    }

    #[test]
    fn tokens_never_print() {
        let u = User::parse("ann:operator:ann-token-0123456789").unwrap();
        assert!(!format!("{u:?}").contains("ann-token"), "{u:?}");
    }

    #[tokio::test]
    async fn users_parse_from_name_role_token_and_bad_entries_say_why() {
        assert_eq!(auth().await.0.users.len(), 2);
        assert!(User::parse("ann:admin:0123456789abcdef").unwrap_err().contains("neither operator nor viewer"));
        assert!(User::parse("ann:operator:short").unwrap_err().contains("16 characters"));
        assert!(User::parse("ann").unwrap_err().contains("name:role:token"));
    }

    #[tokio::test]
    async fn bearer_tokens_name_the_operator_and_viewers_are_forbidden() {
        let (a, _dir) = auth().await;
        let ann = a.operator(&headers(&[("authorization", "Bearer ann-token-0123456789")])).await.unwrap();
        assert_eq!(ann, Principal { name: "ann".into(), role: Role::Operator });
        let vic = a.operator(&headers(&[("authorization", "Bearer vic-token-0123456789")])).await;
        assert_eq!(vic, Err(Denied::Forbidden("vic".into())));
        assert_eq!(a.operator(&headers(&[("authorization", "Bearer nope")])).await, Err(Denied::BadToken));
        assert_eq!(a.operator(&headers(&[])).await, Err(Denied::Unauthenticated));
    }

    #[tokio::test]
    async fn a_session_cookie_needs_its_csrf_token_for_changes() {
        let (a, _dir) = auth().await;
        let (_, id, csrf) = a.login("ann-token-0123456789", LOCAL).await.unwrap();
        let cookie = format!("theme=dark; {SESSION_COOKIE}={id}");
        assert_eq!(a.operator(&headers(&[("cookie", &cookie)])).await, Err(Denied::Csrf));
        let guessed = headers(&[("cookie", &cookie), ("x-csrf-token", "guess")]);
        assert_eq!(a.operator(&guessed).await, Err(Denied::Csrf));
        let signed = headers(&[("cookie", &cookie), ("x-csrf-token", &csrf)]);
        assert_eq!(a.operator(&signed).await.unwrap().name, "ann");
        // Another Auth on the same database (another replica, or this one restarted) knows it.
        let other = Auth::new(Vec::new(), a.store.clone());
        assert_eq!(other.operator(&signed).await.unwrap().name, "ann");
        assert_eq!(a.store.session(&id, 0).await.unwrap(), None, "only the id's hash is stored");
        a.logout(&id).await;
        assert_eq!(other.operator(&signed).await, Err(Denied::BadSession));
        assert_eq!(a.login("wrong", LOCAL).await.unwrap_err(), Denied::BadToken);
    }

    const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn tokens_are_kept_as_hashes_and_may_be_configured_as_hashes() {
        let hash = token_hash("ann-token-0123456789");
        let (base, _dir) = auth().await;
        let a = Auth::new(vec![User::parse(&format!("ann:operator:sha256:{hash}")).unwrap()], base.store.clone());
        assert!(a.users.iter().all(|(_, h)| h == &hash));
        let ann = a.operator(&headers(&[("authorization", "Bearer ann-token-0123456789")])).await.unwrap();
        assert_eq!(ann.name, "ann");
        assert!(User::parse("ann:operator:sha256:abc").unwrap_err().contains("64 hex digits"));
    }

    #[tokio::test]
    async fn failed_logins_are_limited_per_address() {
        let (a, _dir) = auth().await;
        let other = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9));
        for _ in 0..FAILED_LOGINS {
            assert_eq!(a.login("guess", LOCAL).await.unwrap_err(), Denied::BadToken);
        }
        let limited = a.login("ann-token-0123456789", LOCAL).await.unwrap_err();
        assert!(matches!(limited, Denied::RateLimited(s) if s <= 60), "{limited:?}");
        assert!(a.login("ann-token-0123456789", other).await.is_ok(), "other addresses are not locked out");
    }
}
