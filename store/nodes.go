package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Node is one csrd node in the registry (migration 0050).
type Node struct {
	Name      string
	URL       string // where the other nodes reach it (cluster.advertise_url)
	Version   string
	Started   time.Time
	Heartbeat time.Time
	Tokens    []NodeToken // the tokens it reaches and has reconciled
}

// NodeToken is a token a node reaches.
type NodeToken struct {
	Label  string `json:"label"`
	Serial string `json:"serial"`
}

// Live reports whether n's heartbeat is younger than timeout at now.
func (n Node) Live(now time.Time, timeout time.Duration) bool {
	return now.Sub(n.Heartbeat) < timeout
}

// Reaches reports whether n reaches the token with this label and serial
// (by serial when the record has one; a token's label can be reused).
func (n Node) Reaches(label, serial string) bool {
	for _, t := range n.Tokens {
		if serial != "" && t.Serial == serial || serial == "" && t.Label == label {
			return true
		}
	}
	return false
}

// NodeInUseError: another live node already runs under the name.
type NodeInUseError struct {
	Name, URL string
	Heartbeat time.Time
}

func (e *NodeInUseError) Error() string {
	return fmt.Sprintf("store: node name %q is in use by a live node at %s (heartbeat %s): give each node its own cluster.node_name",
		e.Name, e.URL, e.Heartbeat.Format(time.RFC3339))
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *NodeInUseError) Unwrap() error { return ErrConflict }

const (
	nodeColumns   = `name, url, version, started_time, heartbeat_time, tokens`
	getNodeSQL    = `SELECT ` + nodeColumns + ` FROM nodes WHERE name = ?`
	listNodesSQL  = `SELECT ` + nodeColumns + ` FROM nodes ORDER BY name`
	upsertNodeSQL = `INSERT INTO nodes (` + nodeColumns + `) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET url = excluded.url, version = excluded.version,
    started_time = excluded.started_time, heartbeat_time = excluded.heartbeat_time, tokens = excluded.tokens`
	heartbeatSQL = `UPDATE nodes SET heartbeat_time = ?, tokens = ? WHERE name = ? AND url = ?`
)

// RegisterNode enters n in the registry as starting now, with its first
// heartbeat. A name already registered is taken over — a node restarting,
// kill -9 included — unless the row is still live (heartbeat younger than
// timeout) and names another URL: then two nodes were given one name, and
// the second is refused (*NodeInUseError).
func (s *Store) RegisterNode(ctx context.Context, n Node, timeout time.Duration) error {
	tokens, err := json.Marshal(nonNil(n.Tokens))
	if err != nil {
		return fmt.Errorf("store: register node: %w", err)
	}
	now := s.now()
	return s.withTx(ctx, "register node", func(ctx context.Context, tx *sql.Tx) error {
		old, err := scanNode(tx.QueryRowContext(ctx, getNodeSQL, n.Name))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return dbErr("register node", err)
		case old.URL != n.URL && old.Live(now, timeout):
			return &NodeInUseError{Name: old.Name, URL: old.URL, Heartbeat: old.Heartbeat}
		}
		_, err = tx.ExecContext(ctx, upsertNodeSQL, n.Name, n.URL, n.Version, formatTime(now), formatTime(now), string(tokens))
		return dbErr("register node", err)
	})
}

// Heartbeat renews node name's heartbeat — and so its leases — and
// records the tokens it reaches now. A node whose row was taken over (by a
// node of the same name at another URL) or removed gets ErrNotFound: it
// must register again, or stop.
func (s *Store) Heartbeat(ctx context.Context, name, url string, tokens []NodeToken) error {
	js, err := json.Marshal(nonNil(tokens))
	if err != nil {
		return fmt.Errorf("store: heartbeat: %w", err)
	}
	return s.withTx(ctx, "heartbeat", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, heartbeatSQL, formatTime(s.now()), string(js), name, url)
		if err != nil {
			return dbErr("heartbeat", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return fmt.Errorf("%w: node %q at %s is not registered", ErrNotFound, name, url)
		}
		return nil
	})
}

// ListNodes returns every registered node, by name.
func (s *Store) ListNodes(ctx context.Context) ([]Node, error) {
	rows, err := s.r.QueryContext(ctx, listNodesSQL)
	if err != nil {
		return nil, dbErr("list nodes", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, dbErr("list nodes", err)
		}
		out = append(out, n)
	}
	return out, dbErr("list nodes", rows.Err())
}

func scanNode(row rowScanner) (Node, error) {
	var (
		n                          Node
		started, heartbeat, tokens string
	)
	if err := row.Scan(&n.Name, &n.URL, &n.Version, &started, &heartbeat, &tokens); err != nil {
		return n, err
	}
	var err error
	if n.Started, err = parseTime(started); err != nil {
		return n, fmt.Errorf("node %q started_time: %w", n.Name, err)
	}
	if n.Heartbeat, err = parseTime(heartbeat); err != nil {
		return n, fmt.Errorf("node %q heartbeat_time: %w", n.Name, err)
	}
	if err := json.Unmarshal([]byte(tokens), &n.Tokens); err != nil {
		return n, fmt.Errorf("node %q tokens: %w", n.Name, err)
	}
	return n, nil
}

func nonNil(ts []NodeToken) []NodeToken {
	if ts == nil {
		return []NodeToken{}
	}
	return ts
}
