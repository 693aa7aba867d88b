-- Notifications: one delivery per (Notification, audit event), made from the audit log by the
-- leader and tried until delivered or given up, across restarts and a change of leader.
CREATE TABLE notification_deliveries (
    id           BIGSERIAL PRIMARY KEY,
    notification TEXT NOT NULL,
    event_id     BIGINT NOT NULL,      -- audit_events.id
    event        TEXT NOT NULL,        -- rollout-aborted, revision-rejected, ...
    service      TEXT,
    target       TEXT NOT NULL,        -- where it goes (NotifyTarget, JSON), as policy said then
    payload      TEXT NOT NULL,        -- the audit event told, JSON
    state        TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,      -- unix ms: when to try next
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (notification, event_id)
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (state, next_at);

-- How far the audit log has been read for notifications (one row).
CREATE TABLE notification_cursor (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    event_id BIGINT NOT NULL
);
-- Reading starts at the newest event: what happened before is not told.
INSERT INTO notification_cursor (id, event_id) SELECT 1, COALESCE(MAX(id), 0) FROM audit_events;
