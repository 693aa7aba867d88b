-- Fleet membership shared by the replicas. Each proxy's row is written by the replica it is
-- connected to, so that every replica sends endpoints of (and shows) the whole fleet.
ALTER TABLE fleet_members ADD COLUMN replica TEXT NOT NULL DEFAULT '';
-- The proxy's registration (version, addresses), JSON.
ALTER TABLE fleet_members ADD COLUMN registration TEXT NOT NULL DEFAULT '{}';
-- What it runs and its certificate (acked, nack, identity, cert expiry, joined), JSON.
ALTER TABLE fleet_members ADD COLUMN status TEXT NOT NULL DEFAULT '{}';
ALTER TABLE fleet_members ADD COLUMN connected BIGINT NOT NULL DEFAULT 0;
ALTER TABLE fleet_members ADD COLUMN disconnected_at BIGINT;
CREATE INDEX fleet_members_replica ON fleet_members (replica);
