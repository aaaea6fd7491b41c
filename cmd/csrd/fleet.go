package main

import (
	"context"
	"runtime/debug"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/cluster"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// joinFleet registers this node in the database's node registry — before
// anything is reconciled, so that a second node given the same name stops
// here — and builds the forwarder. The heartbeat starts with startFleet.
func joinFleet(ctx context.Context, cfg *config.Config, db *store.Store, reached func() []store.NodeToken, log zerolog.Logger) (*cluster.Registry, *cluster.Forwarder, error) {
	name, err := cfg.Node()
	if err != nil {
		return nil, nil, err
	}
	secret, err := cfg.ReadClusterSecret()
	if err != nil {
		return nil, nil, err
	}
	reg := cluster.NewRegistry(db, cluster.Options{
		Name: name, URL: cfg.Advertise(), Version: buildVersion(),
		Interval: cfg.Cluster.HeartbeatInterval, Timeout: cfg.Cluster.NodeTimeout,
		Tokens: reached, Log: log,
	})
	if err := reg.Register(ctx); err != nil {
		return nil, nil, err
	}
	fwd, err := cluster.NewForwarder(reg, cluster.ForwarderOptions{Secret: secret, CAFile: cfg.Cluster.CAFile, Timeout: cfg.RequestTimeout})
	if err != nil {
		return nil, nil, err
	}
	log.Info().Str("node", name).Str("url", cfg.Advertise()).Bool("forwarding", fwd.Enabled()).Msg("node registered")
	return reg, fwd, nil
}

// tokensReached lists the tokens this node has connected and reconciled,
// for the heartbeat: other nodes forward work on their keys here.
func tokensReached(pool *lifecycle.TokenPool, toks []*hsm.Token, members []lifecycle.Token) func() []store.NodeToken {
	return func() []store.NodeToken {
		var out []store.NodeToken
		for i, t := range toks {
			if t.Healthy() == nil && pool.Admitted(members[i]) && t.Serial() != "" {
				out = append(out, store.NodeToken{Label: t.Label(), Serial: t.Serial()})
			}
		}
		return out
	}
}

// buildVersion is the module version and VCS revision csrd was built from.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
