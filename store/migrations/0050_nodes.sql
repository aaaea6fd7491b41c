-- 0050: the node registry, and which node a record's unfinished work
-- belongs to.
--
-- Several csrd nodes may share one database (PostgreSQL). Each registers
-- itself in nodes at start — name, the URL the others reach it at, its
-- version — and renews heartbeat_time while it runs, with the tokens it
-- reaches (tokens: a JSON array of {"label", "serial"}). A node whose
-- heartbeat is older than cluster.node_timeout is not live. A single
-- SQLite appliance has one row.
--
-- keys.node names the node that began a record's generation or its
-- pending intent: its lease on that work, renewed by the node's heartbeat.
-- Reconciliation leaves work leased by another live node alone; once the
-- lease has lapsed, any node that reaches the record's token finishes it.
-- NULL (records from before this migration, or made by csrctl) is leased by
-- nobody: the age rule of reconciliation applies as before.
CREATE TABLE nodes (
    name           TEXT PRIMARY KEY,
    url            TEXT NOT NULL,
    version        TEXT NOT NULL,
    started_time   TEXT NOT NULL,
    heartbeat_time TEXT NOT NULL,
    tokens         TEXT NOT NULL CHECK (json_type(tokens) = 'array')
);

ALTER TABLE keys ADD COLUMN node TEXT;
