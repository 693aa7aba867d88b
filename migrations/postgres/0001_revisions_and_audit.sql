-- Every commit the control plane evaluated, applied or rejected.
CREATE TABLE revisions (
    seq          BIGSERIAL PRIMARY KEY,
    sha          TEXT NOT NULL UNIQUE,
    author       TEXT NOT NULL,
    message      TEXT NOT NULL,
    committed_at BIGINT NOT NULL,   -- unix ms, from the commit
    processed_at BIGINT NOT NULL,   -- unix ms, when the control plane judged it
    outcome      TEXT NOT NULL CHECK (outcome IN ('applied', 'rejected')),
    errors       TEXT NOT NULL      -- JSON array of diagnostics
);

-- The audit log: who changed what, when, and what it did.
CREATE TABLE audit_events (
    id       BIGSERIAL PRIMARY KEY,
    at       BIGINT NOT NULL,       -- unix ms
    kind     TEXT NOT NULL,         -- e.g. revision.applied
    actor    TEXT NOT NULL,
    revision TEXT,
    service  TEXT,
    summary  TEXT NOT NULL,
    detail   TEXT NOT NULL          -- JSON object
);
CREATE INDEX audit_events_kind_id ON audit_events (kind, id);
CREATE INDEX audit_events_revision ON audit_events (revision);
