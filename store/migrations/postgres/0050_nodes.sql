-- 0050 (PostgreSQL): the node registry and keys.node; as SQLite's
-- 0050_nodes.sql, which explains them.
CREATE TABLE nodes (
    name           text PRIMARY KEY,
    url            text NOT NULL,
    version        text NOT NULL,
    started_time   text NOT NULL,
    heartbeat_time text NOT NULL,
    tokens         text NOT NULL CHECK (json_typeof(tokens::json) = 'array')
);

ALTER TABLE keys ADD COLUMN node text;
