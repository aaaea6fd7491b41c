-- 0004: the alternative (post-quantum) key of a hybrid CSR.
--
-- alt_key_storage says where its private half lives:
--   token   a key pair in the token, named like the primary key by
--           alt_key_label / alt_key_id (CKA_LABEL / CKA_ID);
--   sealed  only the 32-byte ML-DSA seed, sealed by the token's AES-256 KEK
--           (AES-GCM, bound to record id, label and algorithm), in
--           alt_sealed_seed. It is useless without that token.
-- All columns are NULL for records without an alternative key. The row-level
-- consistency (token => label and id, sealed => no label) is enforced by
-- store.BeginKey; SQLite cannot add table constraints with ALTER TABLE.
ALTER TABLE keys ADD COLUMN alt_key_type    TEXT;
ALTER TABLE keys ADD COLUMN alt_key_storage TEXT
    CHECK (alt_key_storage IS NULL OR alt_key_storage IN ('token', 'sealed'));
ALTER TABLE keys ADD COLUMN alt_key_label   TEXT;
ALTER TABLE keys ADD COLUMN alt_key_id      TEXT
    CHECK (alt_key_id IS NULL OR (alt_key_id <> '' AND alt_key_id NOT GLOB '*[^0-9a-f]*'));
ALTER TABLE keys ADD COLUMN alt_sealed_seed BLOB;
ALTER TABLE keys ADD COLUMN alt_spki_sha256 TEXT
    CHECK (alt_spki_sha256 IS NULL OR (length(alt_spki_sha256) = 64 AND alt_spki_sha256 NOT GLOB '*[^0-9a-f]*'));

CREATE UNIQUE INDEX keys_alt_key_label    ON keys (alt_key_label) WHERE alt_key_label IS NOT NULL;
CREATE UNIQUE INDEX keys_alt_key_id       ON keys (alt_key_id)    WHERE alt_key_id IS NOT NULL;
CREATE INDEX        keys_alt_spki_sha256  ON keys (alt_spki_sha256);
