package enroll_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// hookScript writes a deploy hook that records its CSRD_ environment and
// the certificate file's first line in out.
func hookScript(t *testing.T) (path, out string) {
	t.Helper()
	dir := t.TempDir()
	path, out = filepath.Join(dir, "hook.sh"), filepath.Join(dir, "hook.out")
	script := fmt.Sprintf("#!/bin/sh\nenv | grep '^CSRD_' | sort > %q\nhead -n 1 \"$CSRD_CERT_FILE\" >> %q\n", out, out)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, out
}

// enrolled enrolls a new key with s and returns its record id.
func (f *env) enrolled(t *testing.T, s *enroll.Service, name string) int64 {
	t.Helper()
	gen := f.generate(t, name)
	res, err := s.Enroll(context.Background(), enroll.Request{CSR: gen.CSRPEM})
	if err != nil || res.Disposition != enroll.Issued {
		t.Fatalf("Enroll: %+v, %v", res, err)
	}
	return gen.ID
}

// TestRenewal renews a short-lived certificate: a new key in the token, a
// new order that replaces the old certificate (ARI), the new certificate
// married; the deploy hook runs with the new key's URI and certificate and
// both record ids; once the old certificate has expired its key is
// destroyed (audited), the record retired with its certificate facts.
func TestRenewal(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true, Validity: 8 * time.Second})
	f := newFixture(t)
	ca := pebbleCA(t, p, "pebble")
	hook, out := hookScript(t)
	ca.DeployHook, ca.RenewBefore = hook, time.Hour // renew_before > lifetime: at half-life, never in a loop
	s := f.service(t, time.Minute, ca)
	old := f.enrolled(t, s, "renew.example.test")
	oldRec, _ := f.db.Get(ctx, old)
	if r, _ := f.db.GetRenewal(ctx, old); !r.RenewAt.Equal(oldRec.Cert.NotBefore.Add(oldRec.Cert.NotAfter.Sub(oldRec.Cert.NotBefore) / 2)) {
		t.Errorf("renew_at %s for a certificate valid %s to %s, want half-life", r.RenewAt, oldRec.Cert.NotBefore, oldRec.Cert.NotAfter)
	}

	next, err := s.RenewNow(ctx, old)
	if err != nil {
		t.Fatalf("RenewNow: %v\n%s", err, p.Log())
	}
	nrec, _ := f.db.Get(ctx, next)
	r, _ := f.db.GetRenewal(ctx, old)
	if nrec.State != store.StateMarried || nrec.RenewalOf != old || nrec.Subject != oldRec.Subject ||
		strings.Join(nrec.SANs, ",") != strings.Join(oldRec.SANs, ",") || nrec.KeyLabel == oldRec.KeyLabel {
		t.Fatalf("new record %+v", nrec)
	}
	if r.State != store.RenewalRenewed || r.NewRecordID != next || !r.RetireAt.Equal(oldRec.Cert.NotAfter) {
		t.Fatalf("old renewal %+v (old certificate expires %s)", r, oldRec.Cert.NotAfter)
	}
	if !strings.Contains(p.Log(), "is a replacement of") {
		t.Errorf("the renewal's order did not replace the old certificate at the CA")
	}
	if _, err := s.RenewNow(ctx, old); !errors.Is(err, enroll.ErrConflict) {
		t.Errorf("renewing a renewed certificate again: %v", err)
	}

	runLoop(t, s)
	waitFor(t, 20*time.Second, "the deploy hook", func() bool {
		h, _ := f.db.PendingHooks(ctx)
		return len(h) == 0
	})
	got, _ := os.ReadFile(out)
	for _, want := range []string{
		"CSRD_KEY_URI=" + lifecycle.KeyURI(nrec), "CSRD_RECORD_ID=" + itoa(next), "CSRD_PREVIOUS_RECORD_ID=" + itoa(old),
		"CSRD_CERT_FILE=" + filepath.Join(f.dir, "certs", fmt.Sprintf("csrd-%d.pem", next)), "-----BEGIN CERTIFICATE-----",
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("hook saw\n%s\nwithout %q", got, want)
		}
	}
	pemFile, _ := os.ReadFile(filepath.Join(f.dir, "certs", fmt.Sprintf("csrd-%d.pem", next)))
	if b, _ := pem.Decode(pemFile); b == nil || !sameCert(b.Bytes, nrec.Cert.DER) {
		t.Errorf("the hook's certificate file is not the new certificate")
	}

	waitFor(t, 20*time.Second, "the old key's retirement after expiry", func() bool {
		rec, _ := f.db.Get(ctx, old)
		return rec.State == store.StateRetired
	})
	rec, _ := f.db.Get(ctx, old)
	if objs, _ := testToken.ObjectsOf(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); len(objs) != 0 || rec.Cert.Thumbprint != oldRec.Cert.Thumbprint {
		t.Errorf("retired record: %v left in the token, thumbprint %q", objs, rec.Cert.Thumbprint)
	}
	if time.Now().Before(oldRec.Cert.NotAfter) {
		t.Errorf("retired at %s, before its certificate expired at %s", time.Now(), oldRec.Cert.NotAfter)
	}
	if !auditHas(t, f, "retire", old) {
		t.Error("no audit row for the retirement")
	}
	// The new certificate lives 8 s and renews at half-life: the loop has
	// renewed it again meanwhile, on its own.
	if v := counter(t, s, "csrd_renewals_total", "done"); v < 2 {
		t.Errorf("csrd_renewals_total{result=done} = %v, want the forced renewal and the loop's", v)
	}
}

// TestDeployHookRetried: a deploy hook that fails is logged and run again
// until it succeeds; meanwhile the new key and certificate stay married
// and the renewal stays done.
func TestDeployHookRetried(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	f := newFixture(t)
	dir := t.TempDir()
	hook, runs, out := filepath.Join(dir, "hook.sh"), filepath.Join(dir, "runs"), filepath.Join(dir, "hook.out")
	script := fmt.Sprintf("#!/bin/sh\necho run >> %q\n[ $(wc -l < %q) -ge 3 ] || { echo 'web server not ready' >&2; exit 1; }\n"+
		"env | grep '^CSRD_' | sort > %q\n", runs, runs, out)
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ca := pebbleCA(t, p, "pebble")
	ca.DeployHook = hook
	s := f.service(t, time.Minute, ca)
	old := f.enrolled(t, s, "hook-retry.example.test")
	next, err := s.RenewNow(ctx, old)
	if err != nil {
		t.Fatalf("RenewNow: %v", err)
	}

	if err := s.DeployHooks(ctx); err == nil {
		t.Fatal("the first run of a failing hook reported no error")
	}
	h, _ := f.db.PendingHooks(ctx)
	if len(h) != 1 || h[0].RecordID != next || !strings.Contains(h[0].LastError, "deploy hook") || h[0].NextAttempt.IsZero() {
		t.Fatalf("after a failed hook: %+v", h)
	}
	if rec, _ := f.db.Get(ctx, next); rec.State != store.StateMarried {
		t.Fatalf("after a failed hook the new key is %s", rec.State)
	}

	runLoop(t, s)
	waitFor(t, 20*time.Second, "the hook to succeed on a later run", func() bool {
		h, _ := f.db.PendingHooks(ctx)
		return len(h) == 0
	})
	if b, _ := os.ReadFile(runs); strings.Count(string(b), "run") != 3 {
		t.Errorf("the hook ran %d times, want 3 (two failures, one success)", strings.Count(string(b), "run"))
	}
	if got, _ := os.ReadFile(out); !strings.Contains(string(got), "CSRD_RECORD_ID="+itoa(next)) {
		t.Errorf("the successful run saw\n%s", got)
	}
	r, _ := f.db.GetRenewal(ctx, old)
	if rec, _ := f.db.Get(ctx, next); rec.State != store.StateMarried || r.State != store.RenewalRenewed || r.NewRecordID != next {
		t.Fatalf("after the hook: new key %s, old renewal %+v", rec.State, r)
	}
}

// TestRenewalRefusedByPolicy: the policy in force refuses the renewal's
// new key: nothing is made, the old certificate stays and is tried again
// later; allowed again, it renews.
func TestRenewalRefusedByPolicy(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	f := newFixture(t)
	s := f.service(t, time.Minute, pebbleCA(t, p, "pebble"))
	old := f.enrolled(t, s, "refused.example.test")
	f.policy.refuse.Store(true)
	var pe *policy.Error
	if _, err := s.RenewNow(ctx, old); !errors.As(err, &pe) {
		t.Fatalf("RenewNow under a refusing policy: %v", err)
	}
	r, _ := f.db.GetRenewal(ctx, old)
	made, _ := f.db.RenewalKeys(ctx, old)
	if r.State != store.RenewalScheduled || r.NextAttempt.IsZero() || !strings.Contains(r.LastError, "refused") || len(made) != 0 {
		t.Fatalf("after the refusal: %+v, %d new keys", r, len(made))
	}
	if v := counter(t, s, "csrd_renewals_total", "refused"); v != 1 {
		t.Errorf("csrd_renewals_total{result=refused} = %v", v)
	}
	f.policy.refuse.Store(false)
	if _, err := s.RenewNow(ctx, old); err != nil {
		t.Fatalf("RenewNow once allowed: %v", err)
	}
}

// TestRenewalRefusedByToken: the token refuses the renewal's new key
// (hsm.ErrRefused): counted and logged like a policy refusal, nothing is
// left pending in the token, the old certificate stays married and is
// tried again later; accepted again, it renews.
func TestRenewalRefusedByToken(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	f := newFixture(t)
	s := f.service(t, time.Minute, pebbleCA(t, p, "pebble"))
	old := f.enrolled(t, s, "token-refused.example.test")
	f.token.refuse.Store(true)
	if _, err := s.RenewNow(ctx, old); !errors.Is(err, hsm.ErrRefused) {
		t.Fatalf("RenewNow on a refusing token: %v", err)
	}
	r, _ := f.db.GetRenewal(ctx, old)
	if r.State != store.RenewalScheduled || r.NextAttempt.IsZero() || !strings.Contains(r.LastError, "refused") {
		t.Fatalf("after the refusal: %+v", r)
	}
	made, _ := f.db.RenewalKeys(ctx, old)
	for _, k := range made {
		if k.State != store.StateFailed {
			t.Errorf("new key %d is %s after the token refused it, want failed", k.ID, k.State)
		}
	}
	if rec, _ := f.db.Get(ctx, old); rec.State != store.StateMarried {
		t.Errorf("old record is %s, want married", rec.State)
	}
	if v := counter(t, s, "csrd_renewals_total", "refused"); v != 1 {
		t.Errorf("csrd_renewals_total{result=refused} = %v", v)
	}
	if v := counter(t, s, "csrd_renewals_total", "failed"); v != 0 {
		t.Errorf("csrd_renewals_total{result=failed} = %v, want the refusal counted as refused only", v)
	}
	f.token.refuse.Store(false)
	if _, err := s.RenewNow(ctx, old); err != nil {
		t.Fatalf("RenewNow once accepted: %v", err)
	}
}

// TestRenewalResumesWithItsKey: a renewal whose order fails (the CA is
// down) keeps its new key; when the CA is back the background loop
// finishes it with that key — one new key, one new certificate.
func TestRenewalResumesWithItsKey(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	f := newFixture(t)
	ca := pebbleCA(t, p, "pebble")
	old := f.enrolled(t, f.service(t, time.Minute, ca), "resume.example.test")
	down := ca
	down.ACME.Directory = fmt.Sprintf("https://127.0.0.1:%d/dir", fixture.FreePort(t))
	if _, err := f.service(t, time.Minute, down).RenewNow(ctx, old); err == nil {
		t.Fatal("renewal with the CA down succeeded")
	}
	made, _ := f.db.RenewalKeys(ctx, old)
	r, _ := f.db.GetRenewal(ctx, old)
	if len(made) != 1 || made[0].State != store.StatePending || r.State != store.RenewalRenewing || r.NextAttempt.IsZero() {
		t.Fatalf("after the failure: %d new keys, renewal %+v", len(made), r)
	}
	runLoop(t, f.service(t, time.Minute, ca))
	waitFor(t, 30*time.Second, "the renewal to finish", func() bool {
		r, _ := f.db.GetRenewal(ctx, old)
		return r.State == store.RenewalRenewed
	})
	made, _ = f.db.RenewalKeys(ctx, old)
	r, _ = f.db.GetRenewal(ctx, old)
	if len(made) != 1 || made[0].ID != r.NewRecordID {
		t.Fatalf("%d new keys, renewal chose %d", len(made), r.NewRecordID)
	}
	if rec, _ := f.db.Get(ctx, r.NewRecordID); rec.State != store.StateMarried {
		t.Fatalf("new key is %s", rec.State)
	}
}

// TestNoDoubleRenewal: two renewers (csrd and csrctl) start the same
// renewal at once; exactly one renews.
func TestNoDoubleRenewal(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	f := newFixture(t)
	ca := pebbleCA(t, p, "pebble")
	a, b := f.service(t, time.Minute, ca), f.service(t, time.Minute, ca)
	old := f.enrolled(t, a, "double.example.test")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*enroll.Service{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.RenewNow(ctx, old)
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("renewers' errors: %v, %v; want exactly one success", errs[0], errs[1])
	}
	if made, _ := f.db.RenewalKeys(ctx, old); len(made) != 1 {
		t.Fatalf("%d new keys", len(made))
	}
}

// TestRetireKeyRevokes: an operator retires an enrolled key before its
// certificate expires; with revoke_on_retire the CA revokes it first.
func TestRetireKeyRevokes(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	f := newFixture(t)
	ca := pebbleCA(t, p, "pebble")
	ca.RevokeOnRetire = true
	s := f.service(t, time.Minute, ca)
	id := f.enrolled(t, s, "revoke.example.test")
	rec, _ := f.db.Get(ctx, id)
	audit := &store.AuditEntry{Actor: "ops", AuthMethod: "local", Source: "test", Operation: "retire", Result: store.AuditOK,
		RecordID: id, KeyLabel: rec.KeyLabel, RequestID: "r"}
	if err := s.RetireKey(ctx, id, audit); err != nil {
		t.Fatal(err)
	}
	if !p.Revoked(t, rec.Cert.Serial) {
		t.Error("the CA did not revoke the certificate")
	}
	if got, _ := f.db.Get(ctx, id); got.State != store.StateRetired || audit.Hash == "" {
		t.Errorf("record %s, audit hash %q", got.State, audit.Hash)
	}
	if r, _ := f.db.GetRenewal(ctx, id); r.State != store.RenewalRetired {
		t.Errorf("renewal %s: a retired key's certificate must not be renewed", r.State)
	}
	if err := s.RetireKey(ctx, 99999, nil); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("RetireKey(unknown) = %v", err)
	}
}

// TestRenewalThroughput enrolls a dozen keys, then renews them all at once
// through the background loop, and reports the time per enrollment and the
// renewals per minute.
func TestRenewalThroughput(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	f := newFixture(t)
	s := f.service(t, time.Minute, pebbleCA(t, p, "pebble"))
	const n = 12
	ids := make([]int64, n)
	enrollStart := time.Now()
	for i := range ids {
		ids[i] = f.enrolled(t, s, fmt.Sprintf("bulk%d.example.test", i))
	}
	t.Logf("%d enrollments one after the other (key generation, order, marriage): %v each", n,
		(time.Since(enrollStart) / n).Round(time.Millisecond))
	for _, id := range ids {
		if err := s.Renew(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	runLoop(t, s)
	waitFor(t, 60*time.Second, "every renewal", func() bool {
		rs, _ := f.db.ListRenewals(ctx, store.RenewalRenewed)
		return len(rs) == n
	})
	d := time.Since(start)
	t.Logf("%d renewals in %v: %.0f renewals per minute", n, d.Round(time.Millisecond), float64(n)/d.Minutes())
}

func sameCert(a, b []byte) bool {
	ca, err1 := x509.ParseCertificate(a)
	cb, err2 := x509.ParseCertificate(b)
	return err1 == nil && err2 == nil && ca.Equal(cb)
}

func itoa(n int64) string { return fmt.Sprint(n) }

func auditHas(t *testing.T, f *env, op string, id int64) bool {
	t.Helper()
	rows, err := f.db.ListAudit(context.Background(), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Operation == op && r.RecordID == id {
			return true
		}
	}
	return false
}

// counter reads one labelled counter of the service's metrics.
func counter(t *testing.T, s *enroll.Service, name, result string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Metrics())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
