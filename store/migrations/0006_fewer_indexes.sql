-- 0006: fewer index writes per Generate.
--
-- Every Generate inserts a record, completes it and appends an audit row, and
-- each index the row is in costs a page written to the WAL per commit: a
-- median of 23-24 pages per CSR on a database of 300 records before this
-- migration, 15-16 after (TestGenerateRecordPages). Indexes no query uses, or that
-- hold only NULLs until a record completes, are paid for on every request:
--
--   keys_state          the (state, request_time, id) index from 0003 serves
--                       every lookup by state; the one query that orders
--                       those by id (reconciliation's list of 'generating'
--                       records, a handful) now sorts its result.
--   keys_request_time   no query orders or filters by request_time alone.
--   audit_time          no query filters the audit log by time: it is read
--                       in id order, which is append order.
--   keys_spki_sha256,   hold a NULL entry per record from the INSERT on;
--   keys_alt_spki_sha256 partial, they take an entry only when the key's
--                       SPKI is known (the alternative one only for hybrid
--                       records). FindBySPKI looks up by equality, which
--                       SQLite knows implies IS NOT NULL, so it still uses
--                       its index (the plan test in keys_test.go).
DROP INDEX keys_state;
DROP INDEX keys_request_time;
DROP INDEX audit_time;
DROP INDEX keys_spki_sha256;
CREATE INDEX keys_spki_sha256 ON keys (spki_sha256) WHERE spki_sha256 IS NOT NULL;
DROP INDEX keys_alt_spki_sha256;
CREATE INDEX keys_alt_spki_sha256 ON keys (alt_spki_sha256) WHERE alt_spki_sha256 IS NOT NULL;
