-- API tokens: named, scoped (their grants), expiring and revocable, stored as their SHA-256.
-- A revoked token stays listed (who revoked it, when) until it would have expired.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    grants      TEXT NOT NULL,            -- JSON: [{"role": "maintainer", "project": "shop"}]
    created_at  BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    revoked_by  TEXT
);

-- Where a change came from: the client's address as the hub saw it.
ALTER TABLE audit ADD COLUMN address TEXT NOT NULL DEFAULT '';
