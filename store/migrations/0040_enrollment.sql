-- 0040: enrollment with certificate authorities over ACME, and renewal.
--
-- renewal_of names the record whose certificate a renewal's new key
-- replaces. It is written with the new record (BeginKey), so a crash
-- between making the key and noting it in the renewal cannot leave an
-- unclaimed key: the renewal finds its key by this column.
ALTER TABLE keys ADD COLUMN renewal_of INTEGER;
CREATE INDEX keys_renewal_of ON keys (renewal_of) WHERE renewal_of IS NOT NULL;

-- acme_accounts: one ACME account per configured CA. Its key pair lives in
-- the token (key_label, key_id); the row is committed before the key is
-- generated, so no account key exists without a row naming it.
CREATE TABLE acme_accounts (
    ca           TEXT PRIMARY KEY,
    token_label  TEXT NOT NULL,
    token_serial TEXT,
    key_label    TEXT NOT NULL UNIQUE,
    key_id       TEXT NOT NULL CHECK (key_id <> '' AND key_id NOT GLOB '*[^0-9a-f]*'),
    account_url  TEXT,
    created_time TEXT NOT NULL,
    updated_time TEXT NOT NULL
);

-- orders: one ACME order per attempt to certify a pending key. The id is
-- the KeyfactorRequestId Enrollment/CSR answers (a positive int32). An
-- order is open until its certificate is married to the key or the CA
-- refused it; order_url is written as soon as the CA created the order, so
-- a restart resumes it instead of ordering again. replaces is the record
-- whose certificate a renewal replaces (ARI "replaces", RFC 9773).
CREATE TABLE orders (
    id           INTEGER PRIMARY KEY AUTOINCREMENT CHECK (id > 0 AND id <= 2147483647),
    record_id    INTEGER NOT NULL REFERENCES keys (id),
    ca           TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('open', 'married', 'failed')),
    order_url    TEXT,
    replaces     INTEGER REFERENCES keys (id),
    error        TEXT,
    created_time TEXT    NOT NULL,
    updated_time TEXT    NOT NULL
);
-- At most one open order per key: two callers enrolling one CSR share it.
CREATE UNIQUE INDEX orders_open_record ON orders (record_id) WHERE state = 'open';
CREATE INDEX orders_record ON orders (record_id);

-- renewals: the life of every certificate csrd enrolled, one row per
-- record, written in the transaction that closes its order.
--   scheduled  married; renewed at renew_at (NULL: not yet computed);
--   renewing   claimed by one renewal (compare-and-set from scheduled, so a
--              certificate is never renewed twice); new_record_id is the
--              new key once made;
--   renewed    the new certificate is married; the old key is retired at
--              retire_at;
--   retired    the old key is destroyed.
-- hook is the deploy hook of this record's certificate when it came from a
-- renewal: pending until the hook succeeded.
CREATE TABLE renewals (
    record_id     INTEGER PRIMARY KEY REFERENCES keys (id),
    ca            TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('scheduled', 'renewing', 'renewed', 'retired')),
    renew_at      TEXT,
    new_record_id INTEGER REFERENCES keys (id),
    retire_at     TEXT,
    hook          TEXT    CHECK (hook IS NULL OR hook IN ('pending', 'done')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  TEXT,
    last_error    TEXT,
    updated_time  TEXT    NOT NULL
);
CREATE INDEX renewals_state ON renewals (state);
CREATE INDEX renewals_hook ON renewals (hook) WHERE hook = 'pending';
