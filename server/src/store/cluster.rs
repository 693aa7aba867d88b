//! What replicas of the control plane share through the database: who is alive, who leads
//! (a lease with a fencing token), and notifications that wake the other replicas.

use super::{Store, StoreError};
use sqlx::Row;

/// A lease as the database holds it, with the database's clock at the time of reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    /// Grows by one at every new term: the fencing token.
    pub token: i64,
    pub acquired_at: i64,
    pub renewed_at: i64,
    pub expires_at: i64,
    /// The database's clock when this was read (unix ms).
    pub now: i64,
}

/// A replica's row: where it serves, which version it runs, when it last said it was alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRow {
    pub id: String,
    pub address: String,
    pub version: String,
    pub started_at: i64,
    pub seen_at: i64,
}

/// Names the leader's term a write is made for: the write is refused once the term is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub token: i64,
}

/// The lease of the leader, the one replica that does what must happen once.
pub const LEADER: &str = "leader";

/// The channel of `LISTEN`/`NOTIFY` between replicas (Postgres only).
pub const CHANNEL: &str = "trellis";

/// What replicas notify each other of.
pub mod topic {
    /// The leader saved a rollout's state.
    pub const ROLLOUTS: &str = "rollouts";
    /// Audit events were appended.
    pub const AUDIT: &str = "audit";
    /// A git webhook arrived: fetch now.
    pub const GIT: &str = "git";
    /// Notifications may have been missed (the connection dropped): any may have happened.
    pub const ALL: &str = "*";
}

impl Store {
    /// Unix ms by the database's clock: every replica measures leases with the same clock.
    pub(super) fn db_now(&self) -> &'static str {
        if self.sqlite {
            "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
        } else {
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        }
    }

    /// Takes or renews the lease `name` for `holder` for `ttl_ms`. Someone else's lease is
    /// taken only once it has expired, or at once with `force` (SQLite, where the data
    /// directory's lock already proves no one else runs). `Some` when `holder` holds it now.
    pub async fn claim_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
        force: bool,
    ) -> Result<Option<Lease>, StoreError> {
        let now = self.db_now();
        // A holder change or a lapsed lease starts a new term: a new token, a new start.
        let new_term = "leases.holder <> excluded.holder OR leases.expires_at < excluded.renewed_at";
        let sql = format!(
            "INSERT INTO leases (name, holder, token, acquired_at, renewed_at, expires_at) \
             VALUES ($1, $2, 1, {now}, {now}, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET \
               token = CASE WHEN {new_term} OR $4 = 1 THEN leases.token + 1 ELSE leases.token END, \
               acquired_at = CASE WHEN {new_term} OR $4 = 1 THEN excluded.acquired_at ELSE leases.acquired_at END, \
               holder = excluded.holder, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < excluded.renewed_at OR $4 = 1 \
             RETURNING holder, token, acquired_at, renewed_at, expires_at, {now} AS now"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(holder)
            .bind(ttl_ms)
            .bind(i64::from(force))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| lease_from_row(&r)).transpose()
    }

    /// Gives the lease up (a replica stopping): another takes over without waiting it out.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn lease(&self, name: &str) -> Result<Option<Lease>, StoreError> {
        let sql = format!(
            "SELECT holder, token, acquired_at, renewed_at, expires_at, {} AS now FROM leases WHERE name = $1",
            self.db_now()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(&self.pool).await?;
        row.map(|r| lease_from_row(&r)).transpose()
    }

    /// This replica is alive (its `seen_at` becomes the database's now).
    pub async fn replica_alive(&self, r: &ReplicaRow) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO replicas (id, address, version, started_at, seen_at) VALUES ($1, $2, $3, $4, {now}) \
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, version = excluded.version, \
             started_at = excluded.started_at, seen_at = excluded.seen_at",
            now = self.db_now()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&r.id)
            .bind(&r.address)
            .bind(&r.version)
            .bind(r.started_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Replicas seen within `within_ms`, with the database's clock; older rows are removed.
    pub async fn replicas(&self, within_ms: i64) -> Result<(Vec<ReplicaRow>, i64), StoreError> {
        let now = self.db_now();
        // Rows of replicas gone for a day are history nobody reads.
        let sql = format!("DELETE FROM replicas WHERE seen_at < {now} - 86400000");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&self.pool).await?;
        let sql = format!(
            "SELECT id, address, version, started_at, seen_at, {now} AS now FROM replicas \
             WHERE seen_at >= {now} - $1 ORDER BY started_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(within_ms).fetch_all(&self.pool).await?;
        let mut db_now = 0;
        let mut replicas = Vec::with_capacity(rows.len());
        for r in &rows {
            db_now = r.try_get("now")?;
            replicas.push(ReplicaRow {
                id: r.try_get("id")?,
                address: r.try_get("address")?,
                version: r.try_get("version")?,
                started_at: r.try_get("started_at")?,
                seen_at: r.try_get("seen_at")?,
            });
        }
        Ok((replicas, db_now))
    }

    /// Wakes every replica listening on [`CHANNEL`] with `topic`. A no-op on SQLite, where
    /// there is only one.
    pub async fn notify(&self, topic: &str) -> Result<(), StoreError> {
        if !self.sqlite {
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(topic).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// The condition a fenced write adds: the lease still names this holder and term.
    pub(super) fn fenced(first: usize) -> String {
        format!(
            "EXISTS (SELECT 1 FROM leases WHERE name = '{LEADER}' AND holder = ${} AND token = ${})",
            first,
            first + 1
        )
    }
}

fn lease_from_row(r: &sqlx::any::AnyRow) -> Result<Lease, StoreError> {
    Ok(Lease {
        holder: r.try_get("holder")?,
        token: r.try_get("token")?,
        acquired_at: r.try_get("acquired_at")?,
        renewed_at: r.try_get("renewed_at")?,
        expires_at: r.try_get("expires_at")?,
        now: r.try_get("now")?,
    })
}

/// The trust anchor and join secret the replicas share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRow {
    pub anchor_pem: String,
    pub anchor_key: String,
    pub join_secret: String,
}

impl Store {
    /// Offers `mine` as the shared identity of `trust_domain`; returns the one shared (the
    /// first offered wins).
    pub async fn share_identity(&self, trust_domain: &str, mine: &IdentityRow) -> Result<IdentityRow, StoreError> {
        sqlx::query(
            "INSERT INTO identity (trust_domain, anchor_pem, anchor_key, join_secret) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (trust_domain) DO NOTHING",
        )
        .bind(trust_domain)
        .bind(&mine.anchor_pem)
        .bind(&mine.anchor_key)
        .bind(&mine.join_secret)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT anchor_pem, anchor_key, join_secret FROM identity WHERE trust_domain = $1")
            .bind(trust_domain)
            .fetch_one(&self.pool)
            .await?;
        Ok(IdentityRow {
            anchor_pem: row.try_get("anchor_pem")?,
            anchor_key: row.try_get("anchor_key")?,
            join_secret: row.try_get("join_secret")?,
        })
    }
}
