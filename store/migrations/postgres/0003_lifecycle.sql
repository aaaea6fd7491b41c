-- 0003 (PostgreSQL): key lifecycle — intents, the married certificate; as
-- SQLite's 0003_lifecycle.sql, which explains them.
ALTER TABLE keys ADD COLUMN intent          text CHECK (intent IS NULL OR intent IN ('delete', 'marry'));
ALTER TABLE keys ADD COLUMN cert_der        bytea;
ALTER TABLE keys ADD COLUMN cert_chain_pem  text;
ALTER TABLE keys ADD COLUMN cert_serial     text;
ALTER TABLE keys ADD COLUMN cert_issuer     text;
ALTER TABLE keys ADD COLUMN cert_subject    text;
ALTER TABLE keys ADD COLUMN cert_thumbprint text CHECK (cert_thumbprint IS NULL OR cert_thumbprint ~ '^[0-9A-F]{40}$');
ALTER TABLE keys ADD COLUMN cert_not_before text;
ALTER TABLE keys ADD COLUMN cert_not_after  text;
ALTER TABLE keys ADD COLUMN married_time    text;

CREATE INDEX keys_state_request_time ON keys (state, request_time, id);
CREATE INDEX keys_cert_thumbprint ON keys (cert_thumbprint) WHERE cert_thumbprint IS NOT NULL;
CREATE INDEX keys_cert_serial     ON keys (cert_serial)     WHERE cert_serial IS NOT NULL;
CREATE INDEX keys_intent          ON keys (intent)          WHERE intent IS NOT NULL;
