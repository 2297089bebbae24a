-- AppProjects, stored like applications: from the configuration repository or the API.
CREATE TABLE projects (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,                   -- the AppProject as declared (JSON)
    origin     TEXT NOT NULL CHECK (origin IN ('config', 'api')),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- How often a repository is fetched when no webhook says it changed; NULL: the hub's default.
ALTER TABLE repositories ADD COLUMN poll_interval_seconds BIGINT;
