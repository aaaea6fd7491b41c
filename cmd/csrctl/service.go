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
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// recordEnv is csrd's database and the use cases that read records, for
// the read-only subcommands (pending ls, pending show). It opens no token:
// reading a record needs none, so these commands work wherever the
// configuration and database are readable, HSM or not.
type recordEnv struct {
	svc *lifecycle.Service
	db  *store.Store
}

// openRecordEnv loads the configuration and opens the existing database;
// only its database key matters here.
func openRecordEnv(ctx context.Context, cfgPath string, stderr io.Writer) (*recordEnv, error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	db, err := openReadOnly(ctx, cfg) // these commands only read
	if err != nil {
		return nil, err
	}
	// A Service over the records alone: its pending queries touch no token
	// (TestReadOnlyCommandsNeedNoToken holds them to that), and nothing
	// else is called on it.
	svc := lifecycle.NewPooled(nil, db, policy.Default(), newLogger(stderr))
	return &recordEnv{svc: svc, db: db}, nil
}

func (e *recordEnv) Close() { e.db.Close() }

// keyEnv is csrd's token, database and use cases, opened from csrd's
// configuration for the subcommands that act on keys (generate, pending
// rm, import). They run the same lifecycle code as the daemon, may run
// while it runs (SQLite serialises the writers), and audit what they do.
type keyEnv struct {
	svc         *lifecycle.Service
	db          *store.Store
	cfg         config.Config
	pool        *lifecycle.TokenPool
	closeTokens func()
	actor       string
}

// openKeyEnv loads the configuration (and the policy file it names), logs in
// to the token and opens the existing database; it never creates one.
func openKeyEnv(ctx context.Context, cfgPath string, stderr io.Writer) (*keyEnv, error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pol, err := cfg.LoadPolicy()
	if err != nil {
		return nil, err
	}
	db, err := openDatabase(ctx, cfg)
	if err != nil {
		return nil, err
	}
	log := newLogger(stderr)
	pool, closeTokens, err := openPool(ctx, &cfg, log)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &keyEnv{
		svc: lifecycle.NewPooled(pool, db, pol, log), db: db, cfg: cfg, pool: pool, closeTokens: closeTokens, actor: localActor(),
	}, nil
}

// loadConfig loads csrd's configuration file, saying how to name another.
func loadConfig(path string) (config.Config, error) {
	cfg, err := config.Load(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, fmt.Errorf("%w (pass -config FILE)", err)
	}
	return cfg, err
}

// newLogger logs errors only, on stderr: csrctl reports to its operator.
func newLogger(stderr io.Writer) zerolog.Logger {
	return zerolog.New(stderr).Level(zerolog.ErrorLevel).With().Timestamp().Str("service", "csrctl").Logger()
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

// row is the audit row of a successful op by this operator. Operations
// that generate, destroy or bind key material take it into the transaction
// that decides their effect (lifecycle's Audit arguments), so nothing of
// that kind happens without its row.
func (e *keyEnv) row(op string) *store.AuditEntry { return localRow(e.actor, op) }

// localRow is the audit row of a successful op by actor at this machine:
// method local, source csrctl, a request id of its own.
func localRow(actor, op string) *store.AuditEntry {
	var rid [8]byte
	_, _ = rand.Read(rid[:])
	return &store.AuditEntry{
		Actor: actor, AuthMethod: "local", Source: "csrctl", Operation: op,
		Result: store.AuditOK, RequestID: "csrctl-" + hex.EncodeToString(rid[:]),
	}
}

// audit appends a row for an operation csrctl attempted that did not
// carry its own (a failure, or an import that changed nothing); a failure
// to append it is reported.
func (e *keyEnv) audit(ctx context.Context, stderr io.Writer, op string, recordID int64, err error) {
	row := e.row(op)
	row.RecordID = recordID
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
	db, err := openDatabase(ctx, cfg)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "csrctl: note: not audited (%v)\n", err)
		return
	}
	if err != nil {
		fmt.Fprintf(stderr, "csrctl: warning: not audited: %v\n", err)
		return
	}
	defer db.Close()
	row := localRow(localActor(), op)
	row.Detail = truncate(detail, 200)
	if err := db.AppendAudit(ctx, row); err != nil {
		fmt.Fprintf(stderr, "csrctl: warning: could not write the audit row: %v\n", err)
	}
}
