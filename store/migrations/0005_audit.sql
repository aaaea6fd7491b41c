-- 0005: the append-only audit log.
--
-- One row per API call that did something or was refused for lack of
-- identity or permission: who (the authenticated name, or the name a failed
-- attempt claimed), how (basic, bearer, mtls, none), from where (client IP),
-- what (operation), the result and HTTP status, the record and key label it
-- touched, and the request id that ties it to the log lines. Never a PIN, a
-- password, a token or key bytes.
--
-- hash is the SHA-256 over this row's fields and prev_hash, the previous
-- row's hash (64 zeros for the first): a hash chain, so an edited or deleted
-- row breaks verification (csrctl audit verify). Ids come from AUTOINCREMENT
-- and are never reused, so a deleted last row shows as sqlite_sequence being
-- ahead of the last id. The triggers make the table append-only for anything
-- that goes through SQLite; they are a guard rail, the chain is the proof.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    auth_method TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    operation   TEXT    NOT NULL,
    result      TEXT    NOT NULL
                CHECK (result IN ('ok', 'refused', 'unauthenticated', 'forbidden', 'throttled', 'error')),
    status      INTEGER NOT NULL,
    record_id   INTEGER,
    key_label   TEXT,
    request_id  TEXT    NOT NULL,
    detail      TEXT,
    prev_hash   TEXT    NOT NULL CHECK (length(prev_hash) = 64 AND prev_hash NOT GLOB '*[^0-9a-f]*'),
    hash        TEXT    NOT NULL UNIQUE CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*')
);

CREATE INDEX audit_time ON audit (time);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit rows are append-only');
END;
