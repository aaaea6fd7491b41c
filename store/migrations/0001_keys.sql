-- 0001: key records.
--
-- Ids come from AUTOINCREMENT so a deleted record's id is never handed out
-- again: the id is the Keyfactor certificate request Id and part of the token
-- label. Keyfactor Ids are positive 32-bit integers, hence the CHECK.
--
-- Times are RFC 3339 UTC with a fixed nine-digit fraction so that text order
-- is time order (the request_time index relies on it).
--
-- Optional values are NULL rather than '' so that the partial UNIQUE index on
-- key_id and the spki_sha256 index only see real values.
CREATE TABLE keys (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT
                          CHECK (id > 0 AND id <= 2147483647),
    request_time          TEXT    NOT NULL,
    updated_time          TEXT    NOT NULL,
    state                 TEXT    NOT NULL
                          CHECK (state IN ('generating', 'pending', 'married', 'failed', 'deleted', 'lost')),
    key_label             TEXT    UNIQUE,
    key_id                TEXT    CHECK (key_id IS NULL OR (key_id <> '' AND key_id NOT GLOB '*[^0-9a-f]*')),
    token_label           TEXT,
    token_serial          TEXT,
    key_type              TEXT,
    key_size              INTEGER,
    curve                 TEXT,
    spki_sha256           TEXT    CHECK (spki_sha256 IS NULL OR (length(spki_sha256) = 64 AND spki_sha256 NOT GLOB '*[^0-9a-f]*')),
    subject               TEXT,
    sans                  TEXT    CHECK (sans IS NULL OR json_type(sans) = 'array'),
    template              TEXT,
    enrollment_pattern_id INTEGER,
    decision              TEXT    CHECK (decision IS NULL OR json_valid(decision)),
    csr_pem               TEXT,
    fail_reason           TEXT
);

CREATE UNIQUE INDEX keys_key_id       ON keys (key_id) WHERE key_id IS NOT NULL;
CREATE INDEX        keys_spki_sha256  ON keys (spki_sha256);
CREATE INDEX        keys_state        ON keys (state);
CREATE INDEX        keys_request_time ON keys (request_time);
