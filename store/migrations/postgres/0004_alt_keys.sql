-- 0004 (PostgreSQL): the alternative (post-quantum) key of a hybrid CSR; as
-- SQLite's 0004_alt_keys.sql, which explains the columns.
ALTER TABLE keys ADD COLUMN alt_key_type    text;
ALTER TABLE keys ADD COLUMN alt_key_storage text
    CHECK (alt_key_storage IS NULL OR alt_key_storage IN ('token', 'sealed'));
ALTER TABLE keys ADD COLUMN alt_key_label   text;
ALTER TABLE keys ADD COLUMN alt_key_id      text
    CHECK (alt_key_id IS NULL OR alt_key_id ~ '^[0-9a-f]+$');
ALTER TABLE keys ADD COLUMN alt_sealed_seed bytea;
ALTER TABLE keys ADD COLUMN alt_spki_sha256 text
    CHECK (alt_spki_sha256 IS NULL OR alt_spki_sha256 ~ '^[0-9a-f]{64}$');

CREATE UNIQUE INDEX keys_alt_key_label    ON keys (alt_key_label) WHERE alt_key_label IS NOT NULL;
CREATE UNIQUE INDEX keys_alt_key_id       ON keys (alt_key_id)    WHERE alt_key_id IS NOT NULL;
CREATE INDEX        keys_alt_spki_sha256  ON keys (alt_spki_sha256);
