-- A tamper-evident, append-only audit log. Each event carries a SHA-256 over its content and
-- the previous event's hash (`trellis audit verify` walks the chain); `uid` lets a replayed
-- spool skip what already landed; the unique prev_hash refuses a fork (two writers).
ALTER TABLE audit_events ADD COLUMN uid TEXT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_events_uid ON audit_events (uid);
CREATE UNIQUE INDEX audit_events_prev_hash ON audit_events (prev_hash);
CREATE INDEX audit_events_actor_id ON audit_events (actor, id);
CREATE INDEX audit_events_service_id ON audit_events (service, id);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused');
END;
