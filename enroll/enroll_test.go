package enroll_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/csrd/csrd/acmeca"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// TestEnrollIssued enrolls a pending key with Pebble (challenge none):
// ISSUED, the chain verified to Pebble's root, the certificate married
// next to the key, the order closed and the renewal scheduled. The ACME
// account key was generated in the token, sign-only and never extractable,
// and serves every later enrollment. The same call again returns the
// result, not a second certificate.
func TestEnrollIssued(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	f := newFixture(t)
	s := f.service(t, time.Minute, pebbleCA(t, p, "pebble"))
	gen := f.generate(t, "issued.example.test")

	start := time.Now()
	res, err := s.Enroll(ctx, enroll.Request{CSR: gen.CSRPEM, CA: `ca01\pebble`})
	if err != nil {
		t.Fatalf("Enroll: %v\n%s", err, p.Log())
	}
	t.Logf("one enrollment against Pebble: %v", time.Since(start))
	rec, _ := f.db.Get(ctx, gen.ID)
	if res.Disposition != enroll.Issued || res.RecordID != gen.ID || res.OrderID < 1 || len(res.Chain) < 2 ||
		rec.State != store.StateMarried || rec.Cert.Thumbprint != lifecycle.Thumbprint(res.Chain[0].Raw) {
		t.Fatalf("result %+v; record %s %s", res, rec.State, rec.Cert.Thumbprint)
	}
	if objs, _ := testToken.ObjectsOf(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel}); len(objs) != 3 {
		t.Errorf("token holds %v for the key, want the pair and its certificate", objs)
	}
	o, _ := f.db.LatestOrder(ctx, gen.ID)
	r, err := f.db.GetRenewal(ctx, gen.ID)
	if o.State != store.OrderMarried || o.URL == "" || err != nil || r.State != store.RenewalScheduled || r.RenewAt.IsZero() ||
		!r.RenewAt.Before(rec.Cert.NotAfter) {
		t.Fatalf("order %+v, renewal %+v, %v", o, r, err)
	}
	onToken := store.AccountOf{CA: "pebble", TokenLabel: testToken.Label(), TokenSerial: testToken.Serial()}
	acct, _ := f.db.GetAccount(ctx, onToken)
	attrs, err := testToken.KeyAttributes(ctx, hsm.KeyRef{ID: acct.KeyID, Label: enroll.AccountLabel("pebble")})
	if err != nil || acct.URL == "" || attrs.Extractable || !attrs.NeverExtractable || !attrs.Sensitive || !attrs.Sign || attrs.Decrypt || attrs.Derive {
		t.Fatalf("account %+v; key attributes %+v, %v", acct, attrs, err)
	}
	again, err := s.Enroll(ctx, enroll.Request{CSR: gen.CSRPEM, CA: "pebble"})
	if err != nil || again.Disposition != enroll.Issued || again.OrderID != res.OrderID || !again.Chain[0].Equal(res.Chain[0]) {
		t.Fatalf("the same call again: %+v, %v", again, err)
	}
	second := f.generate(t, "second.example.test")
	if _, err := s.Enroll(ctx, enroll.Request{CSR: second.CSRPEM}); err != nil {
		t.Fatalf("second key: %v", err)
	}
	if a, _ := f.db.GetAccount(ctx, onToken); a.URL != acct.URL || string(a.KeyID) != string(acct.KeyID) {
		t.Errorf("the account changed: %+v -> %+v", acct, a)
	}
}

// TestEnrollRefusals: every request csrd cannot enroll is a clear error
// and changes nothing.
func TestEnrollRefusals(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	one := config.CA{Name: "one", ACME: config.ACME{Directory: "https://127.0.0.1:1/dir"}}
	two := config.CA{Name: "two", ACME: config.ACME{Directory: "https://127.0.0.1:1/dir"}}
	s := f.service(t, time.Second, one, two)
	gen := f.generate(t, "refused.example.test")
	stranger, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}, DNSNames: []string{"x.example.test"}}, stranger)
	foreign := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	email, err := f.keys.Generate(ctx, lifecycle.GenerateRequest{Subject: "CN=mail", Key: ecc(), SANs: map[string][]string{"rfc822": {"a@example.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  enroll.Request
		says string
	}{
		{"no CSR", enroll.Request{CA: "one"}, "CSR is required"},
		{"not PEM", enroll.Request{CSR: "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----", CA: "one"}, "not a CERTIFICATE REQUEST"},
		{"no CA of two", enroll.Request{CSR: gen.CSRPEM}, "CertificateAuthority is required"},
		{"unknown CA", enroll.Request{CSR: gen.CSRPEM, CA: "three"}, `"three" is not a CA`},
		{"a key csrd does not hold", enroll.Request{CSR: foreign, CA: "one"}, "csrd enrolls only keys it holds"},
		{"another template", enroll.Request{CSR: gen.CSRPEM, CA: "one", Template: "WebServer"}, "Template"},
		{"other SANs", enroll.Request{CSR: gen.CSRPEM, CA: "one", SANs: map[string][]string{"dns": {"other.example.test"}}}, "differ from the CSR's"},
		{"e-mail SAN", enroll.Request{CSR: email.CSRPEM, CA: "one"}, "e-mail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Enroll(ctx, tc.req)
			if !errors.Is(err, enroll.ErrInvalid) || !contains(err.Error(), tc.says) {
				t.Fatalf("err = %v, want ErrInvalid saying %q", err, tc.says)
			}
		})
	}
	if rec, _ := f.db.Get(ctx, gen.ID); rec.State != store.StatePending {
		t.Errorf("record is %s", rec.State)
	}
	if _, err := f.db.LatestOrder(ctx, gen.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a refused request left an order: %v", err)
	}
}

// TestEnrollCAFailures: a CA that is down, or that refuses the account
// (wrong EAB), fails the enrollment with its problem detail; the key stays
// pending, and once the configuration is right (csrd restarted) the same
// CSR enrolls.
func TestEnrollCAFailures(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	mac := []byte("0123456789abcdef0123456789abcdef")
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true,
		EAB: map[string]string{"kid-1": base64URL(mac)}})
	f := newFixture(t)
	gen := f.generate(t, "eab.example.test")

	down := pebbleCA(t, p, "pebble")
	down.ACME.Directory = fmt.Sprintf("https://127.0.0.1:%d/dir", fixture.FreePort(t))
	_, err := f.service(t, time.Minute, down).Enroll(ctx, enroll.Request{CSR: gen.CSRPEM})
	if !errors.Is(err, acmeca.ErrUnavailable) || !contains(err.Error(), "connection refused") {
		t.Fatalf("CA down: %v", err)
	}
	wrong := pebbleCA(t, p, "pebble")
	wrong.ACME.EAB = &config.EAB{KID: "kid-1", HMACFile: eabFile(t, []byte("not the key, not the key, not it"))}
	_, err = f.service(t, time.Minute, wrong).Enroll(ctx, enroll.Request{CSR: gen.CSRPEM})
	var ce *acmeca.Error
	if !errors.As(err, &ce) || !errors.Is(err, acmeca.ErrRefused) || !contains(ce.Detail, "unauthorized") {
		t.Fatalf("wrong EAB: %v", err)
	}
	if rec, _ := f.db.Get(ctx, gen.ID); rec.State != store.StatePending {
		t.Fatalf("after the failures the key is %s", rec.State)
	}
	if o, _ := f.db.LatestOrder(ctx, gen.ID); o.State != store.OrderFailed || o.Error == "" {
		t.Errorf("failed order %+v", o)
	}
	right := pebbleCA(t, p, "pebble")
	right.ACME.EAB = &config.EAB{KID: "kid-1", HMACFile: eabFile(t, mac)}
	res, err := f.service(t, time.Minute, right).Enroll(ctx, enroll.Request{CSR: gen.CSRPEM})
	if err != nil || res.Disposition != enroll.Issued {
		t.Fatalf("retry with the right EAB: %+v, %v", res, err)
	}
}

// TestEnrollPendingThenIssued: a CA slower than the wait is answered
// PENDING with the request id; the order goes on and the same call later
// returns ISSUED. An open order nobody is driving (a restart's) is resumed
// by the background loop.
func TestEnrollPendingThenIssued(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	p := fixture.StartPebble(t, fixture.PebbleOptions{AlwaysValid: true})
	f := newFixture(t)
	s := f.service(t, time.Nanosecond, pebbleCA(t, p, "pebble"))
	gen := f.generate(t, "pending.example.test")
	res, err := s.Enroll(ctx, enroll.Request{CSR: gen.CSRPEM})
	if err != nil || res.Disposition != enroll.Pending || res.OrderID < 1 || len(res.Chain) != 0 {
		t.Fatalf("Enroll = %+v, %v; want PENDING", res, err)
	}
	waitFor(t, 30*time.Second, "the order to finish in the background", func() bool {
		rec, _ := f.db.Get(ctx, gen.ID)
		return rec.State == store.StateMarried
	})
	again, err := s.Enroll(ctx, enroll.Request{CSR: gen.CSRPEM})
	if err != nil || again.Disposition != enroll.Issued || again.OrderID != res.OrderID {
		t.Fatalf("the same call later = %+v, %v", again, err)
	}

	// An order a crash left open, not running anywhere: Run resumes it.
	orphan := f.generate(t, "resumed.example.test")
	if _, _, err := f.db.OpenOrder(ctx, orphan.ID, "pebble", 0); err != nil {
		t.Fatal(err)
	}
	runLoop(t, f.service(t, time.Minute, pebbleCA(t, p, "pebble")))
	waitFor(t, 30*time.Second, "the open order to be resumed", func() bool {
		rec, _ := f.db.Get(ctx, orphan.ID)
		return rec.State == store.StateMarried
	})
}

func ecc() policy.KeyRequest { return policy.KeyRequest{KeyType: "ECC", KeyLength: 256} }

func base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
