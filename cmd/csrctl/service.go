package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// keyEnv is csrd's token, database and use cases, opened from csrd's
// configuration for the subcommands that act on keys (generate, pending,
// import). They run the same lifecycle code as the daemon, may run while it
// runs (SQLite serialises the writers), and audit what they do.
type keyEnv struct {
	svc         *lifecycle.Service
	db          *store.Store
	closeTokens func()
	actor       string
}

// openKeyEnv loads the configuration (and the policy file it names), logs in
// to the token and opens the existing database; it never creates one.
func openKeyEnv(ctx context.Context, cfgPath string, stderr io.Writer) (*keyEnv, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w (pass -config FILE)", err)
		}
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pol, err := cfg.LoadPolicy()
	if err != nil {
		return nil, err
	}
	log := zerolog.New(stderr).Level(zerolog.ErrorLevel).With().Timestamp().Str("service", "csrctl").Logger()
	pool, closeTokens, err := openPool(ctx, &cfg, log)
	if err != nil {
		return nil, err
	}
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		closeTokens()
		return nil, err
	}
	return &keyEnv{
		svc: lifecycle.NewPooled(pool, db, pol, log), db: db, closeTokens: closeTokens, actor: localActor(),
	}, nil
}

func (e *keyEnv) Close() {
	e.db.Close()
	e.closeTokens()
}

// localActor names the operator in audit rows: the login behind sudo if
// there is one, else the user csrctl runs as.
func localActor() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return "local:" + u
	}
	if u, err := user.Current(); err == nil {
		return "local:" + u.Username
	}
	return fmt.Sprintf("local:uid=%d", os.Getuid())
}

// audit appends a row for an operation csrctl performed; a failure to audit
// is reported but does not undo the operation.
func (e *keyEnv) audit(ctx context.Context, stderr io.Writer, op string, recordID int64, err error) {
	var rid [8]byte
	_, _ = rand.Read(rid[:])
	row := &store.AuditEntry{
		Actor: e.actor, AuthMethod: "local", Source: "csrctl", Operation: op,
		Result: store.AuditOK, RecordID: recordID, RequestID: "csrctl-" + hex.EncodeToString(rid[:]),
	}
	if recordID > 0 && err == nil {
		row.KeyLabel = lifecycle.Label(recordID)
	}
	if err != nil {
		row.Result, row.Status, row.Detail = store.AuditError, 1, truncate(err.Error(), 200)
	}
	if aerr := e.db.AppendAudit(ctx, row); aerr != nil {
		fmt.Fprintf(stderr, "csrctl: warning: could not write the audit row: %v\n", aerr)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// auditAuthChange records a change to the auth file in the audit log of the
// database csrd's configuration names, when that database exists: who may
// call csrd is as much the log's business as what they did. Without a
// configuration or database (e.g. -auth-file on a staging copy) it only
// says so.
func auditAuthChange(ctx context.Context, cfgPath string, stderr io.Writer, op, detail string) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "csrctl: note: not audited (%v)\n", err)
		return
	}
	if _, err := os.Stat(cfg.Database); err != nil && !cfg.Postgres() {
		fmt.Fprintf(stderr, "csrctl: note: not audited (database %s: %v)\n", cfg.Database, err)
		return
	}
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "csrctl: warning: not audited: %v\n", err)
		return
	}
	defer db.Close()
	var rid [8]byte
	_, _ = rand.Read(rid[:])
	if err := db.AppendAudit(ctx, &store.AuditEntry{
		Actor: localActor(), AuthMethod: "local", Source: "csrctl", Operation: op, Result: store.AuditOK,
		RequestID: "csrctl-" + hex.EncodeToString(rid[:]), Detail: truncate(detail, 200),
	}); err != nil {
		fmt.Fprintf(stderr, "csrctl: warning: could not write the audit row: %v\n", err)
	}
}
