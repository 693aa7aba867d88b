//! The fleet as the replicas share it: one row per proxy, written by the replica the proxy is
//! connected to (the newest connection wins the row), read by the others so that every
//! replica sends endpoints of the whole fleet. Times are the database's clock.

use super::{Store, StoreError};
use sqlx::Row;
use trellis_model::fleet::Registration;

/// A proxy as the replica it is connected to reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub replica: String,
    pub registration: Registration,
    pub status: MemberStatus,
    /// Its stream is open on `replica` (else it closed lately, and the proxy may be back).
    pub connected: bool,
}

/// What a proxy runs and holds.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemberStatus {
    pub acked: Option<String>,
    pub nack: Option<String>,
    pub identity: Option<String>,
    pub cert_expires: Option<i64>,
    pub joined_at: i64,
    pub last_seen: i64,
}

impl Store {
    /// Writes the rows of proxies connected to `replica` (after a connect, an ACK, a new
    /// certificate), in one statement per chunk.
    pub async fn share_members<'a>(
        &self,
        replica: &str,
        members: impl IntoIterator<Item = &'a (Registration, MemberStatus)>,
    ) -> Result<(), StoreError> {
        let now = self.db_now();
        // Rows locked in one order by every replica, so two that write the same rows (a proxy
        // moving between them) wait for each other instead of deadlocking; one row per proxy,
        // as one statement may touch a row only once.
        let mut members: Vec<&(Registration, MemberStatus)> = members.into_iter().collect();
        members.reverse();
        members.sort_by(|a, b| a.0.proxy_id.cmp(&b.0.proxy_id));
        members.dedup_by(|a, b| a.0.proxy_id == b.0.proxy_id);
        // Fifty rows a statement: SQLite finds each of a statement's parameters by a walk of
        // its list (sqlx binds by name), so the cost grows with the square of their number.
        // One transaction for them all: one commit (SQLite's journal synced once) per write of
        // the outbox, not one per statement, so the connection is soon free for the lease.
        let mut tx = self.pool.begin().await?;
        for chunk in members.chunks(50) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${}, ${}, $1, 1, {now})", i * 4 + 2, i * 4 + 3, i * 4 + 4, i * 4 + 5))
                .collect();
            let sql = format!(
                "INSERT INTO fleet_members (proxy_id, service, registration, status, replica, connected, seen_at) \
                 VALUES {} ON CONFLICT (proxy_id) DO UPDATE SET service = excluded.service, \
                 registration = excluded.registration, status = excluded.status, replica = excluded.replica, \
                 connected = 1, disconnected_at = NULL, seen_at = excluded.seen_at",
                values.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(replica);
            for (reg, status) in chunk.iter().copied() {
                q = q
                    .bind(reg.proxy_id.clone())
                    .bind(reg.service.clone())
                    .bind(serde_json::to_string(reg).unwrap_or_default())
                    .bind(serde_json::to_string(status).unwrap_or_default());
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every proxy still connected to `replica` is: its rows stay fresh.
    pub async fn touch_members(&self, replica: &str) -> Result<(), StoreError> {
        let sql = if self.is_shared() {
            // In proxy_id order, as `share_members` locks them.
            format!(
                "UPDATE fleet_members SET seen_at = {} WHERE proxy_id IN (SELECT proxy_id FROM fleet_members \
                 WHERE replica = $1 AND connected = 1 ORDER BY proxy_id FOR UPDATE)",
                self.db_now()
            )
        } else {
            format!("UPDATE fleet_members SET seen_at = {} WHERE replica = $1 AND connected = 1", self.db_now())
        };
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(replica).execute(&self.pool).await?;
        Ok(())
    }

    /// A proxy's stream on `replica` closed; a row another replica took since stays its.
    pub async fn member_disconnected(&self, replica: &str, proxy_id: &str) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE fleet_members SET connected = 0, disconnected_at = {} WHERE proxy_id = $1 AND replica = $2",
            self.db_now()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(proxy_id).bind(replica).execute(&self.pool).await?;
        Ok(())
    }

    /// `replica` forgot a proxy (gone for good); a row another replica took since stays.
    pub async fn forget_member(&self, replica: &str, proxy_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM fleet_members WHERE proxy_id = $1 AND replica = $2")
            .bind(proxy_id)
            .bind(replica)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The proxies of the other replicas: connected and heard of within `fresh_ms`, or
    /// disconnected within `forget_ms` (they may be on their way to another replica).
    pub async fn members_elsewhere(
        &self,
        replica: &str,
        fresh_ms: i64,
        forget_ms: i64,
    ) -> Result<Vec<Member>, StoreError> {
        let now = self.db_now();
        let sql = format!(
            "SELECT replica, registration, status, connected FROM fleet_members WHERE replica <> $1 AND replica <> '' \
             AND ((connected = 1 AND seen_at > {now} - $2) OR (connected = 0 AND disconnected_at > {now} - $3))"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(replica)
            .bind(fresh_ms)
            .bind(forget_ms)
            .fetch_all(&self.pool)
            .await?;
        let mut members = Vec::with_capacity(rows.len());
        for r in &rows {
            let registration: String = r.try_get("registration")?;
            let status: String = r.try_get("status")?;
            // A row this version cannot read is left out, not fatal: its writer is newer.
            let (Ok(registration), Ok(status)) = (serde_json::from_str(&registration), serde_json::from_str(&status))
            else {
                continue;
            };
            members.push(Member {
                replica: r.try_get("replica")?,
                registration,
                status,
                connected: r.try_get::<i64, _>("connected")? == 1,
            });
        }
        Ok(members)
    }

    /// Proxies connected to `replica` within `within_ms`: the fleet its restart waits for.
    pub async fn recent_members(&self, replica: &str, within_ms: i64) -> Result<Vec<String>, StoreError> {
        let sql =
            format!("SELECT proxy_id FROM fleet_members WHERE replica = $1 AND seen_at >= {} - $2", self.db_now());
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(replica).bind(within_ms).fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("proxy_id")?)).collect()
    }
}

impl Store {
    /// Hands on `replica`'s finished seconds of telemetry (JSON each) and removes seconds
    /// older than `oldest`.
    pub async fn share_seconds(&self, replica: &str, seconds: &[(u64, String)], oldest: u64) -> Result<(), StoreError> {
        for chunk in seconds.chunks(100) {
            let values: Vec<String> =
                (0..chunk.len()).map(|i| format!("($1, ${}, ${})", i * 2 + 2, i * 2 + 3)).collect();
            let sql = format!(
                "INSERT INTO telemetry_seconds (replica, second, data) VALUES {} ON CONFLICT (replica, second) DO NOTHING",
                values.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(replica);
            for (second, data) in chunk {
                q = q.bind(*second as i64).bind(data.clone());
            }
            q.execute(&self.pool).await?;
        }
        sqlx::query("DELETE FROM telemetry_seconds WHERE second < $1").bind(oldest as i64).execute(&self.pool).await?;
        Ok(())
    }

    /// Every replica's seconds from `since` on: (replica, second, JSON).
    pub async fn telemetry_seconds(&self, since: u64) -> Result<Vec<(String, u64, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT replica, second, data FROM telemetry_seconds WHERE second >= $1 ORDER BY second")
                .bind(since as i64)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("replica")?, r.try_get::<i64, _>("second")?.max(0) as u64, r.try_get("data")?)))
            .collect()
    }
}
