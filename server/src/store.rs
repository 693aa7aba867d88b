//! The database: Postgres in production, an embedded SQLite file by default. One set of
//! queries through sqlx's `Any` driver; migrations per engine under `migrations/`.

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};
use std::collections::HashSet;
use trellis_api::{AuditEntry, AuditFilter, RevisionView};
use trellis_model::rollout::RolloutState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported DATABASE_URL {0:?}: use postgres://... or sqlite://...")]
    Unsupported(String),
    #[error("refused: this replica is no longer the leader (the lease moved on)")]
    Fenced,
}

mod cluster;
mod fleet;
mod notifications;
mod sessions;

pub use cluster::{CHANNEL, Fence, IdentityRow, LEADER, Lease, ReplicaRow, topic};
pub use fleet::{Member, MemberStatus};
pub use notifications::{DeliveryRow, NewDelivery};
pub use sessions::SessionRow;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    sqlite: bool,
    url: String,
}

/// An audit event about to be appended.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewEvent {
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub revision: Option<String>,
    pub service: Option<String>,
    pub summary: String,
    pub detail: serde_json::Value,
}

/// An audit event as the chain appends it: its content, its unique id, and the hashes that
/// link it to the event before.
pub struct Linked<'a> {
    pub event: &'a NewEvent,
    pub uid: &'a str,
    pub prev_hash: String,
    pub hash: String,
}

/// One stored event with its chain columns, as `verify` reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub revision: Option<String>,
    pub service: Option<String>,
    pub summary: String,
    pub detail: String,
    pub prev_hash: Option<String>,
    pub hash: Option<String>,
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        if !sqlite && !url.starts_with("postgres:") && !url.starts_with("postgresql:") {
            return Err(StoreError::Unsupported(url.to_string()));
        }
        // SQLite allows one writer at a time: one connection avoids "database is locked".
        let pool = AnyPoolOptions::new().max_connections(if sqlite { 1 } else { 8 }).connect(url).await?;
        if sqlite {
            sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        } else {
            sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        }
        Ok(Store { pool, sqlite, url: url.to_string() })
    }

    /// Postgres: replicas may share it. SQLite: one control plane alone.
    pub fn is_shared(&self) -> bool {
        !self.sqlite
    }

    /// Closed at shutdown: what is still to write waits for the next start, or is moot.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Where the database is, for a connection of its own (`LISTEN`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The embedded default: a SQLite file, created if missing.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// Records a judged revision. Returns false when it was already recorded (e.g. the
    /// control plane restarted and judged the branch head again).
    pub async fn record_revision(&self, r: &RevisionView, processed_at: i64) -> Result<bool, StoreError> {
        let errors = serde_json::to_string(&r.errors).unwrap_or_else(|_| "[]".into());
        let changes = serde_json::to_string(&r.changes).unwrap_or_else(|_| "[]".into());
        let done = sqlx::query(
            "INSERT INTO revisions (sha, author, message, committed_at, processed_at, outcome, errors, changes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (sha) DO NOTHING",
        )
        .bind(&r.sha)
        .bind(&r.author)
        .bind(&r.message)
        .bind(r.committed_at)
        .bind(processed_at)
        .bind(&r.outcome)
        .bind(errors)
        .bind(changes)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn revision(&self, sha: &str) -> Result<Option<RevisionView>, StoreError> {
        let row = sqlx::query(
            "SELECT seq, sha, author, message, committed_at, outcome, errors, changes FROM revisions WHERE sha = $1",
        )
        .bind(sha)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| revision_from_row(&r)).transpose()
    }

    /// Newest first; `before` is the `seq` cursor of the previous page.
    pub async fn revisions(&self, before: Option<i64>, limit: i64) -> Result<Vec<(i64, RevisionView)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, sha, author, message, committed_at, outcome, errors, changes FROM revisions \
             WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get::<i64, _>("seq")?, revision_from_row(r)?))).collect()
    }

    /// Appends events to the hash chain in one transaction. Writers take turns (an advisory
    /// lock on Postgres; SQLite has one connection): each reads the chain's tail inside its
    /// transaction, so replicas appending at once neither fork the chain nor leave a gap.
    /// `link` gets the tail's hash and the uids of `uids` already stored (a spool replayed
    /// after a crash), and links what remains.
    pub async fn append_chained<'e>(
        &self,
        uids: &[&str],
        link: impl FnOnce(&str, &HashSet<String>) -> Vec<Linked<'e>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if !self.sqlite {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(AUDIT_LOCK).execute(&mut *tx).await?;
        }
        let tail: Option<String> =
            sqlx::query("SELECT hash FROM audit_events WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("hash"))
                .transpose()?;
        let mut stored = HashSet::new();
        for chunk in uids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("SELECT uid FROM audit_events WHERE uid IN ({})", marks.join(", "));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for uid in chunk {
                q = q.bind(uid.to_string());
            }
            for row in q.fetch_all(&mut *tx).await? {
                stored.insert(row.try_get::<String, _>("uid")?);
            }
        }
        let rows = link(tail.as_deref().unwrap_or_default(), &stored);
        // Ten values a row: chunks stay under SQLite's limit on bound parameters.
        for chunk in rows.chunks(500) {
            let values: Vec<String> = (0..chunk.len())
                .map(|r| format!("({})", (1..=10).map(|c| format!("${}", r * 10 + c)).collect::<Vec<_>>().join(", ")))
                .collect();
            let sql = format!(
                "INSERT INTO audit_events (at, kind, actor, revision, service, summary, detail, uid, prev_hash, hash) VALUES {}",
                values.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for Linked { event: e, uid, prev_hash, hash } in chunk {
                q = q
                    .bind(e.at)
                    .bind(e.kind.clone())
                    .bind(e.actor.clone())
                    .bind(e.revision.clone())
                    .bind(e.service.clone())
                    .bind(e.summary.clone())
                    .bind(e.detail.to_string())
                    .bind(uid.to_string())
                    .bind(prev_hash.clone())
                    .bind(hash.clone());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Newest first, narrowed by `filter`; `before` is the `id` cursor of the previous page.
    pub async fn events(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        enum Arg {
            N(i64),
            T(String),
        }
        // Each value takes the next placeholder number.
        fn arg(args: &mut Vec<Arg>, a: Arg) -> String {
            args.push(a);
            format!("${}", args.len())
        }
        let mut args = Vec::new();
        let mut sql = format!(
            "SELECT id, at, kind, actor, revision, service, summary, detail, hash FROM audit_events WHERE id < {}",
            arg(&mut args, Arg::N(before.unwrap_or(i64::MAX)))
        );
        if let Some(kind) = &filter.kind {
            let exact = arg(&mut args, Arg::T(kind.clone()));
            let family = arg(&mut args, Arg::T(format!("{}.%", like_escape(kind))));
            sql += &format!(" AND (kind = {exact} OR kind LIKE {family} ESCAPE '\\')");
        }
        for (value, column) in [(&filter.service, "service"), (&filter.actor, "actor")] {
            if let Some(v) = value {
                sql += &format!(" AND {column} = {}", arg(&mut args, Arg::T(v.clone())));
            }
        }
        if let Some(revision) = &filter.revision {
            let prefix = arg(&mut args, Arg::T(format!("{}%", like_escape(revision))));
            sql += &format!(" AND revision LIKE {prefix} ESCAPE '\\'");
        }
        if let Some(q) = &filter.q {
            let words = arg(&mut args, Arg::T(format!("%{}%", like_escape(&q.to_lowercase()))));
            sql += &format!(" AND LOWER(summary) LIKE {words} ESCAPE '\\'");
        }
        if let Some(since) = filter.since {
            sql += &format!(" AND at >= {}", arg(&mut args, Arg::N(since)));
        }
        if let Some(until) = filter.until {
            sql += &format!(" AND at < {}", arg(&mut args, Arg::N(until)));
        }
        if filter.significant {
            let routine: Vec<String> =
                trellis_api::ROUTINE_KINDS.iter().map(|k| arg(&mut args, Arg::T(k.to_string()))).collect();
            sql += &format!(" AND kind NOT IN ({})", routine.join(", "));
        }
        sql += &format!(" ORDER BY id DESC LIMIT {}", arg(&mut args, Arg::N(limit)));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for a in args {
            query = match a {
                Arg::N(n) => query.bind(n),
                Arg::T(t) => query.bind(t),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("detail")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    actor: r.try_get("actor")?,
                    revision: r.try_get("revision")?,
                    service: r.try_get("service")?,
                    summary: r.try_get("summary")?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                    hash: r.try_get("hash")?,
                })
            })
            .collect()
    }

    /// Events after `after` in id order, with their chain columns, for verification.
    pub async fn chain_page(&self, after: i64, limit: i64) -> Result<Vec<ChainRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, kind, actor, revision, service, summary, detail, prev_hash, hash FROM audit_events \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ChainRow {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    actor: r.try_get("actor")?,
                    revision: r.try_get("revision")?,
                    service: r.try_get("service")?,
                    summary: r.try_get("summary")?,
                    detail: r.try_get("detail")?,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                })
            })
            .collect()
    }

    /// Saves a rollout's state after a change (an upsert: one row per rollout), for the
    /// leader's term `fence`: refused with [`StoreError::Fenced`] once that term is over.
    pub async fn save_rollout(&self, state: &RolloutState, at: i64, fence: &Fence) -> Result<(), StoreError> {
        let json = serde_json::to_string(state).unwrap_or_default();
        let sql = format!(
            "INSERT INTO rollouts (name, fingerprint, state, updated_at) SELECT $1, $2, $3, $4 WHERE {} \
             ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint, state = excluded.state, \
             updated_at = excluded.updated_at",
            Store::fenced(5)
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&state.name)
            .bind(&state.fingerprint)
            .bind(json)
            .bind(at)
            .bind(&fence.holder)
            .bind(fence.token)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Fenced);
        }
        Ok(())
    }

    /// Every saved rollout state. A row that no longer reads (written by another version) is
    /// skipped with a warning: its rollout starts afresh rather than blocking the others.
    pub async fn rollouts(&self) -> Result<Vec<RolloutState>, StoreError> {
        let rows = sqlx::query("SELECT name, state FROM rollouts").fetch_all(&self.pool).await?;
        let mut states = Vec::new();
        for row in rows {
            let (name, json): (String, String) = (row.try_get("name")?, row.try_get("state")?);
            match serde_json::from_str(&json) {
                Ok(state) => states.push(state),
                Err(e) => {
                    tracing::warn!(rollout = %name, error = %e, "unreadable saved rollout state; it starts afresh")
                }
            }
        }
        Ok(states)
    }

    pub async fn forget_rollout(&self, name: &str, fence: &Fence) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM rollouts WHERE name = $1 AND {}", Store::fenced(2));
        let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(&fence.holder).bind(fence.token);
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Proves the database takes writes: a row written and rolled back.
    pub async fn probe_write(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO fleet_members (proxy_id, service, seen_at) VALUES ('trellis-check-probe', '-', 0)")
            .execute(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(())
    }

    /// Whether the database answers at all: one round trip.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn revision_from_row(r: &sqlx::any::AnyRow) -> Result<RevisionView, StoreError> {
    let errors: String = r.try_get("errors")?;
    Ok(RevisionView {
        sha: r.try_get("sha")?,
        author: r.try_get("author")?,
        message: r.try_get("message")?,
        committed_at: r.try_get("committed_at")?,
        outcome: r.try_get("outcome")?,
        // Written by us as JSON; an unreadable value shows as no errors rather than failing reads.
        errors: serde_json::from_str(&errors).unwrap_or_default(),
        changes: serde_json::from_str(&r.try_get::<String, _>("changes")?).unwrap_or_default(),
    })
}

/// The advisory lock key under which audit writers take turns ("trellis" in ASCII).
const AUDIT_LOCK: i64 = 0x0074_7265_6c6c_6973;

/// Escapes LIKE's wildcards (with `\` as the escape character) in user text.
fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}
