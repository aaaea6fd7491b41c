-- 0006 (PostgreSQL): the index changes of SQLite's 0006_fewer_indexes.sql,
-- which explains them.
DROP INDEX keys_state;
DROP INDEX keys_request_time;
DROP INDEX audit_time;
DROP INDEX keys_spki_sha256;
CREATE INDEX keys_spki_sha256 ON keys (spki_sha256) WHERE spki_sha256 IS NOT NULL;
DROP INDEX keys_alt_spki_sha256;
CREATE INDEX keys_alt_spki_sha256 ON keys (alt_spki_sha256) WHERE alt_spki_sha256 IS NOT NULL;
