-- What each applied revision changed, in plain words (JSON array of changes).
ALTER TABLE revisions ADD COLUMN changes TEXT NOT NULL DEFAULT '[]';
