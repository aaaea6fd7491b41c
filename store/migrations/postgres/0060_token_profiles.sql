-- 0060 (PostgreSQL): each token's recorded profile; as SQLite's
-- 0060_token_profiles.sql, which explains it. The profile is kept as text,
-- byte for byte as csrd wrote it (jsonb would reorder and re-space it); the
-- CHECK casts it to json, which refuses anything that is not JSON, as
-- SQLite's json_valid does.
CREATE TABLE token_profiles (
    token_label  text NOT NULL,
    token_serial text NOT NULL,
    learned_time text NOT NULL,
    learned_by   text NOT NULL,
    profile      text NOT NULL CHECK (profile::json IS NOT NULL),
    PRIMARY KEY (token_label, token_serial)
);
