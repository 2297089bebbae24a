-- Registration of a cluster's agent: approval, revocation, the key and certificates issued.
ALTER TABLE clusters ADD COLUMN require_approval BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN approved BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN revoked_at BIGINT;
ALTER TABLE clusters ADD COLUMN key_fingerprint TEXT;         -- SHA-256 of the agent key's SPKI
ALTER TABLE clusters ADD COLUMN cert_serials TEXT NOT NULL DEFAULT '[]'; -- JSON: newest first
ALTER TABLE clusters ADD COLUMN cert_not_after BIGINT;
ALTER TABLE clusters ADD COLUMN registered_at BIGINT;
ALTER TABLE clusters ADD COLUMN last_error TEXT;              -- why the agent was last refused
ALTER TABLE clusters ADD COLUMN last_error_at BIGINT;

-- Single-use bootstrap tokens, stored as their SHA-256. A token is claimed by the key of the
-- first CSR that uses it; only that key may use it again (a lost answer does not burn it).
CREATE TABLE bootstrap_tokens (
    token_hash      TEXT PRIMARY KEY,
    cluster         TEXT NOT NULL,
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    key_fingerprint TEXT,
    used_at         BIGINT
);
CREATE INDEX bootstrap_tokens_cluster ON bootstrap_tokens (cluster);
