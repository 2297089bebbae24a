-- The hub's store, SQLite flavour. Portable on purpose: times are Unix milliseconds
-- (BIGINT), JSON documents are TEXT, digests are their `sha256:<hex>` text, and no table
-- relies on SQLite-only behaviour; a PostgreSQL schema is this file with BYTEA for BLOB and
-- BIGINT GENERATED ALWAYS AS IDENTITY for the INTEGER PRIMARY KEY columns.

CREATE TABLE clusters (
    name          TEXT PRIMARY KEY,
    labels        TEXT NOT NULL DEFAULT '{}',   -- JSON object of strings
    annotations   TEXT NOT NULL DEFAULT '{}',   -- JSON object of strings
    server_url    TEXT,
    kube_version  TEXT,
    api_versions  TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
    agent_version TEXT,
    last_seen     BIGINT,
    created_at    BIGINT NOT NULL
);

-- Credentials are sealed (XChaCha20-Poly1305 with the data directory's credentials key,
-- bound to the URL); only the fetcher ever opens them.
CREATE TABLE repositories (
    url         TEXT PRIMARY KEY,
    credentials BLOB,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE applications (
    name       TEXT PRIMARY KEY,
    project    TEXT NOT NULL,
    spec       TEXT NOT NULL,                   -- the Application as declared (JSON)
    origin     TEXT NOT NULL CHECK (origin IN ('config', 'api')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE app_sets (
    name            TEXT PRIMARY KEY,
    spec            TEXT NOT NULL,              -- the ApplicationSet as declared (JSON)
    origin          TEXT NOT NULL CHECK (origin IN ('config', 'api')),
    generated       TEXT NOT NULL DEFAULT '[]', -- JSON array: the last generated app names
    generator_error TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- A pin holds an application (cluster = '': on every cluster) at a revision from its
-- history. Not a foreign key to applications: generated applications can be pinned too.
CREATE TABLE pins (
    app       TEXT NOT NULL,
    cluster   TEXT NOT NULL,
    revision  TEXT NOT NULL,
    pinned_by TEXT NOT NULL,
    pinned_at BIGINT NOT NULL,
    PRIMARY KEY (app, cluster)
);

-- Content-addressed app blobs. Collected by reachability: a blob stays while a retained
-- state or a history entry names it (both are foreign keys, so neither can name a blob that
-- is not here).
CREATE TABLE blobs (
    digest     TEXT PRIMARY KEY,
    bytes      BLOB NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE cluster_states (
    cluster        TEXT NOT NULL,
    generation     BIGINT NOT NULL,
    envelope       BLOB NOT NULL,
    payload_digest TEXT NOT NULL,
    issued_at      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    published_by   TEXT NOT NULL,
    PRIMARY KEY (cluster, generation)
);

CREATE TABLE state_blobs (
    cluster    TEXT NOT NULL,
    generation BIGINT NOT NULL,
    app        TEXT NOT NULL,
    digest     TEXT NOT NULL REFERENCES blobs (digest),
    PRIMARY KEY (cluster, generation, app),
    FOREIGN KEY (cluster, generation)
        REFERENCES cluster_states (cluster, generation) ON DELETE CASCADE
);
CREATE INDEX state_blobs_digest ON state_blobs (digest);

-- Deployed revisions per application and cluster, with the exact signed app entry.
CREATE TABLE history (
    id          INTEGER PRIMARY KEY,
    app         TEXT NOT NULL,
    cluster     TEXT NOT NULL,
    revision    TEXT NOT NULL,
    digest      TEXT NOT NULL REFERENCES blobs (digest),
    size        BIGINT NOT NULL,
    entry       TEXT NOT NULL,                  -- the app entry of the state (JSON)
    generation  BIGINT NOT NULL,
    deployed_at BIGINT NOT NULL,
    deployed_by TEXT NOT NULL
);
CREATE INDEX history_app ON history (app, cluster, id);
CREATE INDEX history_digest ON history (digest);

-- Why an application's newest content could not be published to a cluster.
CREATE TABLE publish_problems (
    cluster TEXT NOT NULL,
    app     TEXT NOT NULL,
    message TEXT NOT NULL,
    kept    BOOLEAN NOT NULL,                   -- the last good content is still served
    since   BIGINT NOT NULL,
    PRIMARY KEY (cluster, app)
);

-- Status reported by agents: the latest per cluster/app and per object, and a bounded
-- history of whole reports.
CREATE TABLE app_status (
    cluster    TEXT NOT NULL,
    app        TEXT NOT NULL,
    generation BIGINT,
    revision   TEXT,
    sync       TEXT NOT NULL,
    health     TEXT NOT NULL,
    message    TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (cluster, app)
);

CREATE TABLE object_status (
    cluster    TEXT NOT NULL,
    app        TEXT NOT NULL,
    object     TEXT NOT NULL,                   -- "Kind.group namespace/name"
    state      TEXT NOT NULL,
    message    TEXT NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (cluster, app, object)
);

CREATE TABLE status_reports (
    cluster     TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    report      TEXT NOT NULL,                  -- the report as received (JSON)
    PRIMARY KEY (cluster, seq)
);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      BIGINT NOT NULL,
    who     TEXT NOT NULL,
    action  TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '{}',         -- JSON, never a secret
    source  TEXT NOT NULL DEFAULT ''            -- where the request came from
);
CREATE INDEX audit_at ON audit (at);
