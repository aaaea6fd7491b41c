-- 0030 (PostgreSQL): keys.key_usage; as SQLite's 0030_key_usage.sql, which
-- explains it.
ALTER TABLE keys ADD COLUMN key_usage text;
