-- 0003: key lifecycle — deletion, marriage to the issued certificate, loss.
--
-- intent records a token operation that has been decided and committed but
-- may not have finished: 'delete' (the key pair is being destroyed) or
-- 'marry' (the certificate is being written next to the key). It is set in
-- its own transaction before the token is touched and cleared in the one
-- that records the outcome, so a crash in between leaves a record that says
-- exactly what to finish; reconciliation does. The state column keeps the
-- stable lifecycle state (a record being deleted is still 'pending').
--
-- The certificate columns are written with intent 'marry' (the candidate
-- certificate, so reconciliation can finish writing it to the token) and
-- kept once the record is married. cert_thumbprint is the SHA-1 of the DER
-- in upper-case hex, as Keyfactor shows it; cert_serial upper-case hex.
ALTER TABLE keys ADD COLUMN intent          TEXT CHECK (intent IS NULL OR intent IN ('delete', 'marry'));
ALTER TABLE keys ADD COLUMN cert_der        BLOB;
ALTER TABLE keys ADD COLUMN cert_chain_pem  TEXT;
ALTER TABLE keys ADD COLUMN cert_serial     TEXT;
ALTER TABLE keys ADD COLUMN cert_issuer     TEXT;
ALTER TABLE keys ADD COLUMN cert_subject    TEXT;
ALTER TABLE keys ADD COLUMN cert_thumbprint TEXT CHECK (cert_thumbprint IS NULL OR (length(cert_thumbprint) = 40 AND cert_thumbprint NOT GLOB '*[^0-9A-F]*'));
ALTER TABLE keys ADD COLUMN cert_not_before TEXT;
ALTER TABLE keys ADD COLUMN cert_not_after  TEXT;
ALTER TABLE keys ADD COLUMN married_time    TEXT;

-- The pending list is filtered by state and paged in request_time or id order.
CREATE INDEX keys_state_request_time ON keys (state, request_time, id);
-- Recover and import look certificates up by thumbprint or serial.
CREATE INDEX keys_cert_thumbprint ON keys (cert_thumbprint) WHERE cert_thumbprint IS NOT NULL;
CREATE INDEX keys_cert_serial     ON keys (cert_serial)     WHERE cert_serial IS NOT NULL;
-- Reconciliation finds unfinished operations.
CREATE INDEX keys_intent          ON keys (intent)          WHERE intent IS NOT NULL;
