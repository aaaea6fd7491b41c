package enroll

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// hookTimeout bounds one run of a deploy hook.
const hookTimeout = 2 * time.Minute

// runHooks runs the deploy hook of every renewed certificate whose hook has
// not succeeded yet (and whose back-off after a failure is over).
func (s *Service) runHooks(ctx context.Context) (time.Time, error) {
	rs, err := s.records.PendingHooks(ctx)
	if err != nil {
		return time.Time{}, err
	}
	var next time.Time
	for _, r := range rs {
		if r.NextAttempt.After(s.now()) {
			next = earliest(next, r.NextAttempt)
			continue
		}
		if !s.mine(ctx, r.RecordID) {
			continue
		}
		if err := s.hook(ctx, r); err != nil {
			next = earliest(next, s.now().Add(s.retryBase))
		}
	}
	return next, nil
}

// hook runs the CA's deploy_hook for the renewed certificate of record
// r.RecordID, without a shell, with the key's PKCS#11 URI, a PEM file of
// the certificate and its chain, and the record ids in its environment. A
// failure is logged and retried; the new key and certificate stay.
func (s *Service) hook(ctx context.Context, r *store.Renewal) error {
	c := s.cas[strings.ToLower(r.CA)]
	rec, err := s.records.Get(ctx, r.RecordID)
	if err != nil {
		return err
	}
	if c == nil || c.cfg.DeployHook == "" || rec.State != store.StateMarried {
		return s.records.HookDone(ctx, r.RecordID)
	}
	file, err := s.writeCert(rec)
	if err != nil {
		return s.hookFailed(ctx, r, err, "")
	}
	hctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, c.cfg.DeployHook)
	cmd.Env = append(os.Environ(),
		"CSRD_KEY_URI="+lifecycle.KeyURI(rec),
		"CSRD_CERT_FILE="+file,
		"CSRD_RECORD_ID="+itoa(rec.ID),
		"CSRD_PREVIOUS_RECORD_ID="+itoa(rec.RenewalOf),
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return s.hookFailed(ctx, r, err, out.String())
	}
	if err := s.records.HookDone(ctx, r.RecordID); err != nil {
		return err
	}
	s.log.Info().Int64("record", rec.ID).Int64("previous_record", rec.RenewalOf).Str("hook", c.cfg.DeployHook).
		Str("output", truncate(out.String(), 1000)).Msg("deploy hook ran")
	return nil
}

func (s *Service) hookFailed(ctx context.Context, r *store.Renewal, cause error, output string) error {
	next := s.now().Add(s.backoff(r.Attempts + 1))
	s.log.Error().Err(cause).Int64("record", r.RecordID).Str("output", truncate(output, 1000)).Time("next_attempt", next).
		Msg("deploy hook failed; the new key and certificate stay, the hook runs again")
	if err := s.records.HookFailed(ctx, r.RecordID, "deploy hook: "+truncate(cause.Error(), 400), next); err != nil {
		return err
	}
	return cause
}

// writeCert writes the record's certificate and chain (PEM) for the hook,
// atomically, as <CertDir>/csrd-<id>.pem, and returns the path.
func (s *Service) writeCert(rec *store.KeyRecord) (string, error) {
	if s.certDir == "" {
		return "", fmt.Errorf("enroll: no directory for deploy hook certificates")
	}
	if err := os.MkdirAll(s.certDir, 0o755); err != nil {
		return "", err
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: rec.Cert.DER})
	b.WriteString(rec.Cert.ChainPEM)
	path := filepath.Join(s.certDir, fmt.Sprintf("csrd-%d.pem", rec.ID))
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// DeployHooks runs every deploy hook that is due now (csrctl renew runs the
// hook of the renewal it made; in csrd the background loop does).
func (s *Service) DeployHooks(ctx context.Context) error {
	rs, err := s.records.PendingHooks(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rs {
		if err := s.hook(ctx, r); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
