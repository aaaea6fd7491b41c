package daemontest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/pem"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	_ "github.com/mattn/go-sqlite3" // the driver store uses; integrity_check runs below store
	"github.com/miekg/pkcs11"

	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/store"
)

// ledger remembers what clients were told: every 200 answer's record id and
// the SHA-256 of the SubjectPublicKeyInfo in the CSR they received. Those
// are promises csrd must keep across any crash.
type ledger struct {
	mu    sync.Mutex
	acked map[int64][]byte
	// verified ids had their token key's public key compared with the
	// client's CSR once; later checks only prove the key is still there
	// (C_FindObjects per key per check would grow quadratically).
	verified map[int64]bool
}

func newLedger() *ledger { return &ledger{acked: map[int64][]byte{}, verified: map[int64]bool{}} }

// ack records a 200 answer; it fails t if the CSR is not a valid request.
func (l *ledger) ack(t testing.TB, id int64, csrPEM string) {
	blk, _ := pem.Decode([]byte(csrPEM))
	if blk == nil {
		t.Errorf("record %d: 200 answer's CSR is not PEM", id)
		return
	}
	cr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil || cr.CheckSignature() != nil {
		t.Errorf("record %d: 200 answer's CSR does not parse or verify: %v", id, err)
		return
	}
	sum := sha256.Sum256(cr.RawSubjectPublicKeyInfo)
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.acked[id]; dup {
		t.Errorf("record id %d answered twice", id)
	}
	l.acked[id] = sum[:]
}

func (l *ledger) snapshot() map[int64][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[int64][]byte, len(l.acked))
	for k, v := range l.acked {
		m[k] = v
	}
	return m
}

// census is what checkInvariants counted.
type census struct {
	Records map[store.State]int
	Objects int // csrd-labelled token objects
}

// checkInvariants checks, with no request in flight, everything csrd
// promises after any crash and restart:
//   - the database passes PRAGMA integrity_check;
//   - no record is left "generating" (start-up reconciliation ran);
//   - every 200 answer's record exists, still has a key-bearing state, and
//     its key is in the token with the public key the client's CSR carries;
//   - every csrd-labelled token object belongs to a record in a key-bearing
//     state with the same CKA_ID, and each such record has both halves.
func checkInvariants(t testing.TB, in *instance, l *ledger) census {
	t.Helper()
	ctx := context.Background()
	checkIntegrity(t, in.Database)

	db, err := store.Open(ctx, in.Database)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	defer db.Close()
	counts, err := db.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := census{Records: counts}
	var classes map[string][]uint
	if n := counts[store.StateGenerating]; n != 0 {
		t.Errorf("%d records still generating after start-up reconciliation", n)
	}

	c.Objects, classes = ownedObjects(t, ctx, in, db)
	for id, spki := range l.snapshot() {
		rec, err := db.Get(ctx, id)
		if err != nil {
			t.Errorf("record %d was answered 200 and is gone: %v", id, err)
			continue
		}
		if !keyBearing(rec.State) {
			t.Errorf("record %d was answered 200 and is now %s (%s)", id, rec.State, rec.FailReason)
			continue
		}
		if !bytes.Equal(rec.SPKISHA256, spki) {
			t.Errorf("record %d: stored SPKI hash %x, the client's CSR has %x", id, rec.SPKISHA256, spki)
		}
		if !hasBothHalves(classes[rec.KeyLabel]) {
			t.Errorf("record %d was answered 200; token has classes %v of its key %s", id, classes[rec.KeyLabel], rec.KeyLabel)
			continue
		}
		l.mu.Lock()
		done := l.verified[id]
		l.mu.Unlock()
		if done {
			continue
		}
		key, err := in.View.FindKey(ctx, hsm.KeyRef{ID: rec.KeyID, Label: rec.KeyLabel})
		if err != nil {
			t.Errorf("record %d was answered 200; its key %s: %v", id, rec.KeyLabel, err)
			continue
		}
		if got, err := csr.SPKISHA256(key.Public()); err != nil || !bytes.Equal(got, spki) {
			t.Errorf("record %d: token key's SPKI hash %x (%v), the client's CSR has %x", id, got, err, spki)
			continue
		}
		l.mu.Lock()
		l.verified[id] = true
		l.mu.Unlock()
	}
	return c
}

// checkOwned checks the token against the records while csrd runs (no
// request in flight): every csrd-labelled object belongs to a record in a
// key-bearing state, and every such record has both halves. Records left
// "generating" by a failure are allowed here (reconciliation at the next
// start finishes them) but must not own a key.
func checkOwned(t testing.TB, in *instance) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, in.Database)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	defer db.Close()
	ownedObjects(t, ctx, in, db)
}

// ownedObjects is the token half of the invariants; it returns the number
// of csrd-labelled objects and the object classes present per label.
func ownedObjects(t testing.TB, ctx context.Context, in *instance, db *store.Store) (n int, classes map[string][]uint) {
	t.Helper()
	objs, err := in.View.ListObjects(ctx, lifecycle.LabelPrefix)
	if err != nil {
		t.Fatalf("list token objects: %v", err)
	}
	classes = map[string][]uint{} // label → classes present
	for _, o := range objs {
		classes[o.Label] = append(classes[o.Label], o.Class)
		rec, err := recordForLabel(ctx, db, o.Label)
		if err != nil {
			t.Errorf("token object %v (class %d) has no record: %v", o.KeyRef, o.Class, err)
			continue
		}
		if !keyBearing(rec.State) || !bytes.Equal(rec.KeyID, o.ID) {
			t.Errorf("token object %v (class %d) belongs to record %d in state %s with CKA_ID %x",
				o.KeyRef, o.Class, rec.ID, rec.State, rec.KeyID)
		}
	}
	for _, st := range []store.State{store.StatePending, store.StateMarried} {
		recs, err := db.ListByState(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !hasBothHalves(classes[r.KeyLabel]) {
				t.Errorf("record %d (%s) points at key %s, token has classes %v", r.ID, r.State, r.KeyLabel, classes[r.KeyLabel])
			}
		}
	}

	return len(objs), classes
}

func keyBearing(s store.State) bool { return s == store.StatePending || s == store.StateMarried }

// hasBothHalves: a live key is a private and a public key object (and,
// once married, a certificate).
func hasBothHalves(classes []uint) bool {
	var pub, priv bool
	for _, c := range classes {
		pub = pub || c == pkcs11.CKO_PUBLIC_KEY
		priv = priv || c == pkcs11.CKO_PRIVATE_KEY
	}
	return pub && priv
}

// recordForLabel finds the record a csrd label names (csrd-<id>).
func recordForLabel(ctx context.Context, db *store.Store, label string) (*store.KeyRecord, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(label, lifecycle.LabelPrefix), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("label %q is not csrd-<id>", label)
	}
	rec, err := db.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if rec.KeyLabel != label {
		return nil, fmt.Errorf("record %d has label %q", id, rec.KeyLabel)
	}
	return rec, nil
}

// checkIntegrity runs PRAGMA integrity_check on its own connection.
func checkIntegrity(t testing.TB, dbPath string) {
	t.Helper()
	conn, err := sql.Open("sqlite3", dbPath+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rows, err := conn.Query("PRAGMA integrity_check")
	if err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0] != "ok" {
		t.Errorf("PRAGMA integrity_check: %q", msgs)
	}
}
