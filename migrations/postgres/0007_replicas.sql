-- Control-plane replicas on one database: each says where it serves and that it is alive.
CREATE TABLE replicas (
    id          TEXT PRIMARY KEY,
    address     TEXT NOT NULL,
    version     TEXT NOT NULL,
    started_at  BIGINT NOT NULL,    -- unix ms
    seen_at     BIGINT NOT NULL     -- unix ms, by the database's clock
);
-- Leases for work that must happen once. `token` (the fencing token) grows by one whenever
-- the holder changes; a write made for the leader names it and is refused once it moved on.
-- Times are the database's clock, so replicas on hosts with skewed clocks still agree.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    token       BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    renewed_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
-- Dashboard sessions, so that any replica knows them and a restart logs nobody out. Only the
-- SHA-256 of the session id is kept: a copy of the table opens no session.
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL,
    role        TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    expires_at  BIGINT NOT NULL     -- unix ms
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
