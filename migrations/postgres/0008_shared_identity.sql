-- The mesh's trust anchor and join secret, shared by the replicas: a proxy certified by one
-- replica is trusted by all, and a join token made by one is accepted by all. The anchor's
-- key is here: grant this database only to the control plane, as its key file would be.
CREATE TABLE identity (
    trust_domain TEXT PRIMARY KEY,
    anchor_pem   TEXT NOT NULL,
    anchor_key   TEXT NOT NULL,
    join_secret  TEXT NOT NULL
);
