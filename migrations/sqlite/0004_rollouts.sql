-- The state of each running rollout (the model's RolloutState as JSON), so that a restarted
-- control plane resumes where it stopped. `fingerprint` ties it to the spec in git.
CREATE TABLE rollouts (
    name        TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL     -- unix ms
);
