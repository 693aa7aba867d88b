-- Proxies the control plane knew, so that after a restart it waits for them to reconnect
-- before pushing configs that would otherwise list only the proxies that came back first.
CREATE TABLE fleet_members (
    proxy_id TEXT PRIMARY KEY,
    service  TEXT NOT NULL,
    seen_at  BIGINT NOT NULL        -- unix ms
);
