//! Notification deliveries: made from the audit log (each event read once, the cursor moved in
//! the same transaction) and kept until delivered or given up, so a restart or a new leader
//! carries on where the last one stopped. One row per (Notification, event): an event is never
//! queued twice for the same target.

use super::{Store, StoreError};
use sqlx::Row;

/// A delivery to queue.
#[derive(Clone, Debug, PartialEq)]
pub struct NewDelivery {
    pub notification: String,
    pub event_id: i64,
    pub event: String,
    pub service: Option<String>,
    /// `NotifyTarget` as JSON.
    pub target: String,
    /// The audit event, as JSON.
    pub payload: String,
}

/// A queued delivery as stored: what was queued, and how its tries went.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryRow {
    pub id: i64,
    pub delivery: NewDelivery,
    pub state: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, notification, event_id, event, service, target, payload, state, attempts, next_at, \
                       last_error, created_at, updated_at";

fn row(r: &sqlx::any::AnyRow) -> Result<DeliveryRow, sqlx::Error> {
    Ok(DeliveryRow {
        id: r.try_get("id")?,
        delivery: NewDelivery {
            notification: r.try_get("notification")?,
            event_id: r.try_get("event_id")?,
            event: r.try_get("event")?,
            service: r.try_get("service")?,
            target: r.try_get("target")?,
            payload: r.try_get("payload")?,
        },
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        next_at: r.try_get("next_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    /// The last audit event read for notifications; `None` before the first read.
    pub async fn notification_cursor(&self) -> Result<Option<i64>, StoreError> {
        let row =
            sqlx::query("SELECT event_id FROM notification_cursor WHERE id = 1").fetch_optional(&self.pool).await?;
        Ok(row.map(|r| r.try_get("event_id")).transpose()?)
    }

    /// The newest audit event's id (0 when there is none).
    pub async fn last_audit_id(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS id FROM audit_events").fetch_one(&self.pool).await?;
        Ok(row.try_get("id")?)
    }

    /// Queues `deliveries` and moves the cursor to `cursor`, together.
    pub async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        cursor: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for d in deliveries {
            sqlx::query(
                "INSERT INTO notification_deliveries (notification, event_id, event, service, target, payload, \
                 state, attempts, next_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7) \
                 ON CONFLICT (notification, event_id) DO NOTHING",
            )
            .bind(&d.notification)
            .bind(d.event_id)
            .bind(&d.event)
            .bind(&d.service)
            .bind(&d.target)
            .bind(&d.payload)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO notification_cursor (id, event_id) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id",
        )
        .bind(cursor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Pending deliveries due at `now`, oldest first.
    pub async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM notification_deliveries WHERE state = 'pending' AND next_at <= $1 ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }

    /// What a try made of a delivery.
    pub async fn update_delivery(&self, d: &DeliveryRow, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE notification_deliveries SET state = $1, attempts = $2, next_at = $3, last_error = $4, \
             updated_at = $5 WHERE id = $6",
        )
        .bind(&d.state)
        .bind(d.attempts)
        .bind(d.next_at)
        .bind(&d.last_error)
        .bind(now)
        .bind(d.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest deliveries, newest first, for the dashboard.
    pub async fn recent_deliveries(&self, limit: i64) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM notification_deliveries ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
    }
}
