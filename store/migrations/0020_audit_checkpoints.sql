-- 0020: signed checkpoints of the audit log.
--
-- The audit chain (0005) is an unkeyed hash: whoever can write this file
-- can delete rows and recompute every hash after them. A checkpoint is a
-- signature, made inside an HSM token by a key that cannot leave it, over
-- (key_id, node, audit_id, audit_hash, time): it fixes every row up to
-- audit_id, because each row's hash covers its predecessor's. Rows after
-- the newest checkpoint are covered by the chain alone until the next one.
--
-- key_id is the SHA-256 of the signer's SubjectPublicKeyInfo, public_key
-- that SubjectPublicKeyInfo (DER). The key is recorded for convenience
-- only: a database writer could store a key of their own, so a verifier
-- trusts checkpoints only under a key it has pinned (csrctl audit pubkey
-- exports it from the token). Several csrd nodes on one database each sign
-- with their own key. audit_id 0 (hash 64 zeros) is a checkpoint of the
-- empty log. The triggers are a guard rail, as on audit; the signatures
-- are the proof.
CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    time       TEXT    NOT NULL,
    node       TEXT    NOT NULL,
    key_id     TEXT    NOT NULL CHECK (length(key_id) = 64 AND key_id NOT GLOB '*[^0-9a-f]*'),
    public_key BLOB    NOT NULL,
    audit_id   INTEGER NOT NULL CHECK (audit_id >= 0),
    audit_hash TEXT    NOT NULL CHECK (length(audit_hash) = 64 AND audit_hash NOT GLOB '*[^0-9a-f]*'),
    signature  BLOB    NOT NULL
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit checkpoints are append-only');
END;
