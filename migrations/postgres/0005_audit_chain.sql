-- A tamper-evident, append-only audit log. Each event carries a SHA-256 over its content and
-- the previous event's hash (`trellis audit verify` walks the chain); `uid` lets a replayed
-- spool skip what already landed; the unique prev_hash refuses a fork (two writers).
ALTER TABLE audit_events ADD COLUMN uid TEXT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_events_uid ON audit_events (uid);
CREATE UNIQUE INDEX audit_events_prev_hash ON audit_events (prev_hash);
-- Filters walk an index in id order, newest first, and stop at a page.
CREATE INDEX audit_events_actor_id ON audit_events (actor, id);
CREATE INDEX audit_events_service_id ON audit_events (service, id);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
