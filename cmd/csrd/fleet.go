package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/cluster"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/version"
)

// joinFleet registers this node in the database's node registry — before
// anything is reconciled, so that a second node given the same name stops
// here — and builds the forwarder. The heartbeat runs from serve (Registry.Run).
func joinFleet(ctx context.Context, cfg *config.Config, name string, db *store.Store, reached func() []store.NodeToken, log zerolog.Logger) (*cluster.Registry, *cluster.Forwarder, error) {
	secret, err := cfg.ReadClusterSecret()
	if err != nil {
		return nil, nil, err
	}
	reg := cluster.NewRegistry(db, cluster.Options{
		Name: name, URL: cfg.Advertise(), Version: version.Read().String(),
		Interval: cfg.Cluster.HeartbeatInterval, Timeout: cfg.Cluster.NodeTimeout,
		Tokens: reached, Sole: !store.IsPostgres(cfg.Database), Log: log,
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
func tokensReached(pool *lifecycle.TokenPool) func() []store.NodeToken {
	return func() []store.NodeToken {
		var out []store.NodeToken
		for _, t := range pool.Tokens() {
			if t.Healthy() == nil && pool.Admitted(t) && t.Serial() != "" {
				out = append(out, store.NodeToken{Label: t.Label(), Serial: t.Serial()})
			}
		}
		return out
	}
}
