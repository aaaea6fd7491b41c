-- 0070: an ACME account per CA and token. The account key lives in a
-- token, and a node signs its ACME requests with a key on a token it
-- reaches: in a fleet where each node has a token of its own, each node
-- registers its own account with the CA, in the row of its token (label
-- and serial; '' for a token without a serial). Nodes sharing a token share
-- its account. The key label stays csrd-acme-<ca>: unique on its token,
-- which the key is the only one of.
CREATE TABLE acme_accounts_by_token (
    ca           TEXT NOT NULL,
    token_label  TEXT NOT NULL,
    token_serial TEXT NOT NULL DEFAULT '',
    key_label    TEXT NOT NULL,
    key_id       TEXT NOT NULL CHECK (key_id <> '' AND key_id NOT GLOB '*[^0-9a-f]*'),
    account_url  TEXT,
    created_time TEXT NOT NULL,
    updated_time TEXT NOT NULL,
    PRIMARY KEY (ca, token_label, token_serial)
);
INSERT INTO acme_accounts_by_token
SELECT ca, token_label, COALESCE(token_serial, ''), key_label, key_id, account_url, created_time, updated_time
FROM acme_accounts;
DROP TABLE acme_accounts;
ALTER TABLE acme_accounts_by_token RENAME TO acme_accounts;
