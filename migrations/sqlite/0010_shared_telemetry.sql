-- Each replica's proxies' reports by second, so that every replica (and the leader's rollout
-- analyses) counts the traffic of the whole fleet. Kept fifteen minutes, like the buckets.
CREATE TABLE telemetry_seconds (
    replica TEXT NOT NULL,
    second  BIGINT NOT NULL,        -- unix seconds
    data    TEXT NOT NULL,          -- the second's series and denials, JSON
    PRIMARY KEY (replica, second)
);
CREATE INDEX telemetry_seconds_second ON telemetry_seconds (second);
