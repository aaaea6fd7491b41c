-- 0070 (PostgreSQL): an ACME account per CA and token; as SQLite's
-- 0070_accounts_per_token.sql, which explains it.
UPDATE acme_accounts SET token_serial = '' WHERE token_serial IS NULL;
ALTER TABLE acme_accounts
    DROP CONSTRAINT acme_accounts_pkey,
    DROP CONSTRAINT acme_accounts_key_label_key,
    ALTER COLUMN token_serial SET NOT NULL,
    ALTER COLUMN token_serial SET DEFAULT '',
    ADD PRIMARY KEY (ca, token_label, token_serial);
