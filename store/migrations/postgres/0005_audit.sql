-- 0005 (PostgreSQL): the append-only audit log; the columns and the hash
-- chain of SQLite's 0005_audit.sql, which explains them.
--
-- Ids come from audit_seq, one row whose value is the last id handed out
-- (SQLite keeps it in sqlite_sequence): an append increments it with
-- UPDATE ... RETURNING, which locks the row until the appending
-- transaction commits. Appends from every node are so serialised, each
-- sees the row before it as the chain's head, and the chain stays linear.
-- A sequence object would not do: nextval() neither locks nor rolls back.
-- As in SQLite, a deleted last row shows as audit_seq being ahead of the
-- last id. The triggers make both tables append-only for anything short of
-- a superuser disabling them; they are a guard rail, the chain is the proof.
CREATE TABLE audit (
    id          bigint  PRIMARY KEY,
    time        text    NOT NULL,
    actor       text    NOT NULL,
    auth_method text    NOT NULL,
    source      text    NOT NULL,
    operation   text    NOT NULL,
    result      text    NOT NULL
                CHECK (result IN ('ok', 'refused', 'unauthenticated', 'forbidden', 'throttled', 'error')),
    status      integer NOT NULL,
    record_id   bigint,
    key_label   text,
    request_id  text    NOT NULL,
    detail      text,
    prev_hash   text    NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
    hash        text    NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$')
);

CREATE INDEX audit_time ON audit (time);

CREATE TABLE audit_seq (
    one boolean PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq bigint  NOT NULL CHECK (seq >= 0)
);
INSERT INTO audit_seq (seq) VALUES (0);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit rows are append-only';
END $$;

CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_seq_forward BEFORE UPDATE ON audit_seq
    FOR EACH ROW WHEN (NEW.seq < OLD.seq) EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_seq_kept BEFORE DELETE ON audit_seq
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_seq_no_truncate BEFORE TRUNCATE ON audit_seq
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
