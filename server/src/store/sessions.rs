//! Dashboard sessions in the database, so that whichever replica a browser reaches knows it,
//! and a restart logs nobody out. Rows are keyed by the SHA-256 of the session id.

use super::{Store, StoreError};
use sqlx::Row;

/// A stored session: who, with which role, its CSRF token, until when (unix ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub user: String,
    pub role: String,
    pub csrf: String,
    pub expires_at: i64,
}

impl Store {
    /// Stores a new session, removing expired ones and, beyond `max`, the oldest.
    pub async fn create_session(&self, id_hash: &str, s: &SessionRow, now: i64, max: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(&mut *tx).await?;
        sqlx::query(
            "DELETE FROM sessions WHERE id_hash IN \
             (SELECT id_hash FROM sessions ORDER BY expires_at DESC LIMIT 1000000 OFFSET $1)",
        )
        .bind(max - 1)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO sessions (id_hash, user_name, role, csrf, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id_hash)
            .bind(&s.user)
            .bind(&s.role)
            .bind(&s.csrf)
            .bind(s.expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session, when it exists and has not expired at `now`.
    pub async fn session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT user_name, role, csrf, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                user: r.try_get("user_name")?,
                role: r.try_get("role")?,
                csrf: r.try_get("csrf")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(&self.pool).await?;
        Ok(())
    }
}
