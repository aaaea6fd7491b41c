package checkpoint

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/store"
)

// The audit key is the token's (hsm tests prove that one); here a software
// P-256 key stands in at the KeySource seam, and the database is real.

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "csrd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendRows(t *testing.T, s *store.Store, n int) {
	t.Helper()
	for range n {
		if err := s.AppendAudit(context.Background(), &store.AuditEntry{Actor: "alice", Source: "::1", Operation: "generate",
			Result: store.AuditOK, Status: 200, RequestID: "r"}); err != nil {
			t.Fatal(err)
		}
	}
}

// keySource serves k, or err while it is set (the token away).
type keySource struct {
	k   crypto.Signer
	err error
}

func (ks *keySource) get(context.Context) (crypto.Signer, error) {
	if ks.err != nil {
		return nil, ks.err
	}
	return ks.k, nil
}

// TestCheckpointer: new rows are signed, nothing is signed twice unless the
// heartbeat is due, and while the key is away the chain goes on and the
// next checkpoint covers the rows written meanwhile.
func TestCheckpointer(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	ks := &keySource{k: newKey(t)}
	c := New(zerolog.Nop(), s, ks.get, Options{Node: "node-a", Heartbeat: time.Hour})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }

	step := func(wantID int64, wantSigned bool) {
		t.Helper()
		cp, err := c.Checkpoint(ctx)
		switch {
		case err != nil:
			t.Fatalf("Checkpoint: %v", err)
		case wantSigned && (cp == nil || cp.AuditID != wantID):
			t.Fatalf("Checkpoint = %+v, want one of row %d", cp, wantID)
		case !wantSigned && cp != nil:
			t.Fatalf("Checkpoint signed row %d with nothing new", cp.AuditID)
		}
	}
	step(0, true) // the empty log, at start
	step(0, false)
	appendRows(t, s, 3)
	step(3, true)
	step(3, false)
	now = now.Add(time.Hour)
	step(3, true) // heartbeat

	signedAt := now
	ks.err = errors.New("token away")
	appendRows(t, s, 2)
	if cp, err := c.Checkpoint(ctx); err == nil || cp != nil {
		t.Fatalf("Checkpoint with the key away = %+v, %v", cp, err)
	}
	if st := c.Status(); st.SignedThrough != 3 || st.Head != 5 || st.Unsigned() != 2 || !st.LastAt.Equal(signedAt) {
		t.Errorf("Status with the key away = %+v (unsigned %d), want rows 4-5 unsigned since %v", st, st.Unsigned(), signedAt)
	}
	appendRows(t, s, 1) // the chain goes on
	ks.err = nil
	now = now.Add(time.Minute)
	step(6, true)
	if st := c.Status(); st.Unsigned() != 0 || st.SignedThrough != 6 || !st.LastAt.Equal(now) {
		t.Errorf("Status after the key came back = %+v", st)
	}

	rep, err := s.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(rep, []*ecdsa.PublicKey{&ks.k.(*ecdsa.PrivateKey).PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Pinned || res.Trusted != 4 || res.SignedThrough != 6 || res.Unsigned() != 0 || res.Newest.AuditID != 6 || res.Newest.Node != "node-a" {
		t.Errorf("Verify = %+v", res)
	}
	if !res.NewestTime().Equal(now) {
		t.Errorf("NewestTime %v, want %v", res.NewestTime(), now)
	}
}

// signedLog is a log of 10 rows with checkpoints by key a at rows 4 and 8.
func signedLog(t *testing.T, a *ecdsa.PrivateKey) (*store.Store, store.AuditReport) {
	t.Helper()
	s := openStore(t)
	c := New(zerolog.Nop(), s, (&keySource{k: a}).get, Options{Node: "node-a"})
	for _, n := range []int{4, 4, 2} {
		appendRows(t, s, n)
		if s, _, _ := s.AuditHead(context.Background()); s < 10 {
			if _, err := c.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	rep, err := s.VerifyAudit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s, rep
}

func TestVerify(t *testing.T) {
	a, b, mallory := newKey(t), newKey(t), newKey(t)
	pinA := []*ecdsa.PublicKey{&a.PublicKey}
	_, rep := signedLog(t, a)

	t.Run("intact", func(t *testing.T) {
		res, err := Verify(rep, pinA)
		if err != nil || res.Trusted != 2 || res.SignedThrough != 8 || res.Unsigned() != 2 || len(res.UnpinnedKeys) != 0 {
			t.Fatalf("Verify = %+v, %v", res, err)
		}
		res, err = Verify(rep, nil) // the keys the database records
		if err != nil || res.Pinned || res.Trusted != 2 {
			t.Fatalf("Verify unpinned = %+v, %v", res, err)
		}
	})
	t.Run("another key pinned", func(t *testing.T) {
		res, err := Verify(rep, []*ecdsa.PublicKey{&b.PublicKey})
		if err != nil || res.Trusted != 0 || res.SignedThrough != 0 || res.Unsigned() != 10 || len(res.UnpinnedKeys) != 1 {
			t.Fatalf("Verify = %+v, %v", res, err)
		}
	})

	tamper := func(edit func(cps []store.AuditCheckpoint)) store.AuditReport {
		r := rep
		r.Checkpoints = append([]store.AuditCheckpoint(nil), rep.Checkpoints...)
		for i := range r.Checkpoints {
			c := &r.Checkpoints[i]
			c.Signature, c.PublicKey = bytes.Clone(c.Signature), bytes.Clone(c.PublicKey)
		}
		edit(r.Checkpoints)
		return r
	}
	for _, tc := range []struct {
		name string
		rep  store.AuditReport
		pin  []*ecdsa.PublicKey
		want string
	}{
		// What store.VerifyAudit reports after rows up to 8 were deleted,
		// edited or re-hashed, or the tail from 5 on cut off.
		{"row of a checkpoint rewritten", tamper(func(c []store.AuditCheckpoint) { c[1].InLog = false }), pinA, "no longer has that row"},
		{"row of a checkpoint rewritten, unpinned", tamper(func(c []store.AuditCheckpoint) { c[1].InLog = false }), nil, "no longer has that row"},
		{"checkpoint moved to another row", tamper(func(c []store.AuditCheckpoint) { c[1].AuditID = 9 }), pinA, "does not verify"},
		{"checkpoint time edited", tamper(func(c []store.AuditCheckpoint) { c[0].Time = "2020-01-01T00:00:00Z" }), pinA, "does not verify"},
		{"signature edited", tamper(func(c []store.AuditCheckpoint) { c[0].Signature[len(c[0].Signature)-1] ^= 1 }), pinA, "does not verify"},
		{"recorded key swapped, unpinned", tamper(func(c []store.AuditCheckpoint) {
			c[0].PublicKey, _ = x509.MarshalPKIXPublicKey(&mallory.PublicKey)
		}), nil, "not the key its key id names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.rep, tc.pin)
			var ce *Error
			if !errors.Is(err, store.ErrAuditTampered) || !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want a checkpoint *Error saying %q", err, tc.want)
			}
		})
	}
	// A writer signs checkpoints of their own over a rewritten log: under
	// the recorded keys they verify (which is why keys must be pinned), under
	// the pinned key they are not trusted.
	t.Run("forger's own key", func(t *testing.T) {
		s := openStore(t)
		appendRows(t, s, 3)
		if _, err := New(zerolog.Nop(), s, (&keySource{k: mallory}).get, Options{Node: "node-a"}).Checkpoint(context.Background()); err != nil {
			t.Fatal(err)
		}
		forged, err := s.VerifyAudit(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if res, err := Verify(forged, nil); err != nil || res.Pinned || res.Trusted != 1 {
			t.Fatalf("unpinned: %+v, %v", res, err)
		}
		if res, err := Verify(forged, pinA); err != nil || res.Trusted != 0 || res.Unsigned() != 3 {
			t.Fatalf("pinned: %+v, %v", res, err)
		}
	})
}

// Two nodes share a database, each signing with its own key: with both
// pinned all checkpoints are trusted; with one, the other's are named.
func TestVerifySeveralNodes(t *testing.T) {
	ctx := context.Background()
	a, b := newKey(t), newKey(t)
	s := openStore(t)
	ca := New(zerolog.Nop(), s, (&keySource{k: a}).get, Options{Node: "node-a"})
	cb := New(zerolog.Nop(), s, (&keySource{k: b}).get, Options{Node: "node-b"})
	for range 3 {
		appendRows(t, s, 2)
		if _, err := ca.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		appendRows(t, s, 2)
		if _, err := cb.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Verify(rep, []*ecdsa.PublicKey{&a.PublicKey, &b.PublicKey})
	if err != nil || res.Trusted != 6 || res.SignedThrough != 12 || res.Newest.Node != "node-b" {
		t.Fatalf("both pinned: %+v, %v", res, err)
	}
	res, err = Verify(rep, []*ecdsa.PublicKey{&a.PublicKey})
	idB, _ := KeyID(&b.PublicKey)
	if err != nil || res.Trusted != 3 || res.SignedThrough != 10 || res.UnpinnedKeys[idB] != 3 {
		t.Fatalf("a pinned: %+v, %v", res, err)
	}
}

func TestPublicKeyPEM(t *testing.T) {
	a, b := newKey(t), newKey(t)
	pa, err := EncodePublicKey(&a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := EncodePublicKey(&b.PublicKey)
	keys, err := ParsePublicKeys(append(append([]byte("audit key of node a\n"), pa...), pb...))
	if err != nil || len(keys) != 2 || !keys[0].Equal(&a.PublicKey) || !keys[1].Equal(&b.PublicKey) {
		t.Fatalf("ParsePublicKeys = %d keys, %v", len(keys), err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	for name, data := range map[string][]byte{
		"empty":  nil,
		"no key": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}),
		"RSA":    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}),
		"junk":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2}}),
	} {
		if _, err := ParsePublicKeys(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if !bytes.HasPrefix(pa, []byte("-----BEGIN PUBLIC KEY-----")) {
		t.Errorf("PEM %q", pa)
	}
}
