package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/store"
)

// Directory is what the registry needs from the database; *store.Store
// implements it.
type Directory interface {
	RegisterNode(ctx context.Context, n store.Node, timeout time.Duration) error
	Heartbeat(ctx context.Context, name, url string, tokens []store.NodeToken) error
	ListNodes(ctx context.Context) ([]store.Node, error)
}

// Registry is this node's entry in the node registry and its view of the
// others.
type Registry struct {
	db       Directory
	self     store.Node
	interval time.Duration
	timeout  time.Duration
	tokens   func() []store.NodeToken // the tokens this node reaches now
	sole     bool                     // Options.Sole
	log      zerolog.Logger
	now      func() time.Time

	mu      sync.Mutex
	lastErr error // of the last heartbeat
}

// Options configures a Registry.
type Options struct {
	Name, URL, Version string
	Interval, Timeout  time.Duration
	// Tokens returns the tokens this node reaches and has reconciled; the
	// heartbeat publishes them, so forwarded work only goes where it can
	// be done.
	Tokens func() []store.NodeToken
	// Sole: no other node can share the database (SQLite, a local file),
	// so a registered row of this name is this node's previous run and is
	// taken over even when its heartbeat is young — a restart on another
	// listen address included.
	Sole bool
	Log  zerolog.Logger
}

// NewRegistry returns the registry of node o.Name; Register enters it.
func NewRegistry(db Directory, o Options) *Registry {
	return &Registry{
		db: db, self: store.Node{Name: o.Name, URL: o.URL, Version: o.Version},
		interval: o.Interval, timeout: o.Timeout, tokens: o.Tokens, sole: o.Sole, log: o.Log,
		now: func() time.Time { return time.Now().UTC() },
	}
}

// Name is this node's name.
func (r *Registry) Name() string { return r.self.Name }

// Timeout is how old a heartbeat may be for its node to count as live.
func (r *Registry) Timeout() time.Duration { return r.timeout }

// Register enters this node (refused when another live node has its
// name: store.NodeInUseError; never for a Sole node).
func (r *Registry) Register(ctx context.Context) error {
	n := r.self
	n.Tokens = r.tokens()
	timeout := r.timeout
	if r.sole {
		timeout = 0 // no row counts as live: it is this node's own
	}
	return r.db.RegisterNode(ctx, n, timeout)
}

// Run renews the heartbeat every interval until ctx ends. A heartbeat the
// database refuses (it is away) is logged once and tried at the next tick;
// a row taken over by a node of the same name is registered again when
// that node is gone.
func (r *Registry) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, r.interval)
		err := r.db.Heartbeat(hctx, r.self.Name, r.self.URL, r.tokens())
		if errors.Is(err, store.ErrNotFound) {
			err = r.Register(hctx)
		}
		cancel()
		r.note(err)
	}
}

func (r *Registry) note(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil && r.lastErr == nil:
		r.log.Error().Err(err).Str("node", r.self.Name).Msg("cluster: heartbeat failed; other nodes will count this node gone after node_timeout")
	case err == nil && r.lastErr != nil:
		r.log.Info().Str("node", r.self.Name).Msg("cluster: heartbeat renewed")
	}
	r.lastErr = err
}

// NodeView is a registered node as the registry sees it now.
type NodeView struct {
	store.Node
	Live bool
	Self bool
}

// Nodes lists every registered node, live or not.
func (r *Registry) Nodes(ctx context.Context) ([]NodeView, error) {
	ns, err := r.db.ListNodes(ctx)
	if err != nil {
		return nil, err
	}
	now := r.now()
	out := make([]NodeView, len(ns))
	for i, n := range ns {
		out[i] = NodeView{Node: n, Live: n.Live(now, r.timeout), Self: n.Name == r.self.Name}
	}
	return out, nil
}

// HeldElsewhere reports whether node — a record's lease holder — is
// another live node: then its work in progress is its own to finish, and
// this node leaves it alone. This node's own leases, and those of nodes
// gone for longer than the timeout, are not held elsewhere.
func (r *Registry) HeldElsewhere(ctx context.Context, node string) (bool, error) {
	if node == "" || node == r.self.Name {
		return false, nil
	}
	ns, err := r.Nodes(ctx)
	if err != nil {
		return false, err
	}
	i := slices.IndexFunc(ns, func(n NodeView) bool { return n.Name == node })
	return i >= 0 && ns[i].Live, nil
}

// Peers returns the live nodes other than this one that reach the token
// (by serial, or by label when serial is ""), the freshest heartbeat first.
func (r *Registry) Peers(ctx context.Context, label, serial string) ([]store.Node, error) {
	ns, err := r.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.Node
	for _, n := range ns {
		if n.Live && !n.Self && n.Reaches(label, serial) {
			out = append(out, n.Node)
		}
	}
	slices.SortFunc(out, func(a, b store.Node) int { return b.Heartbeat.Compare(a.Heartbeat) })
	return out, nil
}
