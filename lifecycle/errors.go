package lifecycle

import (
	"fmt"
	"strings"

	"github.com/csrd/csrd/store"
)

// Sentinel classes of the lifecycle errors a client can cause. Each typed
// error below unwraps to one, and its message is written for the client
// (after the "lifecycle: " prefix): it says what was wrong and what to do.
var (
	// ErrNotFound: no record (pending CSR, key, certificate) matches.
	ErrNotFound = sentinel("not found")
	// ErrConflict: the record exists but its state forbids the operation.
	ErrConflict = sentinel("conflict")
	// ErrInvalidCertificate: an imported certificate is malformed, not
	// currently valid, or comes with a chain that does not fit it.
	ErrInvalidCertificate = sentinel("invalid certificate")
	// ErrNotExtractable: a private key was asked for; csrd's never leave the HSM.
	ErrNotExtractable = sentinel("key not extractable")
	// ErrUnavailable: no HSM token can do it now (none connected and
	// reconciled yet); the message says which and why. Retry later.
	ErrUnavailable = sentinel("unavailable")
)

type sentinelError string

func sentinel(s string) error         { return sentinelError("lifecycle: " + s) }
func (e sentinelError) Error() string { return string(e) }

// Error is a lifecycle refusal: a class (one of the sentinels) and the
// message for the client.
type Error struct {
	Class error
	Msg   string
}

func (e *Error) Error() string { return "lifecycle: " + e.Msg }
func (e *Error) Unwrap() error { return e.Class }

func newErr(class error, format string, args ...any) *Error {
	return &Error{Class: class, Msg: fmt.Sprintf(format, args...)}
}

// NotExtractableError answers a request for a private key: csrd keys are
// generated non-extractable in the HSM, so the only way to use one is
// through the token, named by URI.
type NotExtractableError struct {
	ID  int64
	URI string
}

func (e *NotExtractableError) Error() string {
	return fmt.Sprintf("lifecycle: the private key of certificate %d was generated in the HSM as non-extractable "+
		"and can never be exported (no PFX, PEM or JKS with a key exists); use it in place through its PKCS#11 URI %s",
		e.ID, e.URI)
}

func (e *NotExtractableError) Unwrap() error { return ErrNotExtractable }

// ElsewhereError reports a record whose key is on a token this csrd does
// not use. It matches ErrConflict; in a fleet another node may reach the
// token, and the API forwards the request there.
type ElsewhereError struct {
	ID                      int64
	TokenLabel, TokenSerial string
}

func (e *ElsewhereError) Error() string {
	return fmt.Sprintf("lifecycle: the key of record %d is on token %q (serial %s), not on a token this csrd uses",
		e.ID, e.TokenLabel, e.TokenSerial)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ElsewhereError) Unwrap() error { return ErrConflict }

// BatchError reports a bulk operation that stopped part way: which ids were
// done, which one failed and why, and which were not attempted. It unwraps
// to the failure, so the failure's class decides the status.
type BatchError struct {
	Done      []int64
	Failed    int64
	Err       error
	Remaining []int64
}

func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lifecycle: Id %d failed (%s)", e.Failed, strings.TrimPrefix(e.Err.Error(), "lifecycle: "))
	if len(e.Done) > 0 {
		fmt.Fprintf(&b, "; already deleted: %s", joinIDs(e.Done))
	}
	if len(e.Remaining) > 0 {
		fmt.Fprintf(&b, "; not attempted: %s", joinIDs(e.Remaining))
	}
	return b.String()
}

func (e *BatchError) Unwrap() error { return e.Err }

func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ", ")
}

// notPending explains why record rec is not a pending CSR.
func notPending(rec *store.KeyRecord) *Error {
	switch {
	case rec.State == store.StatePending && rec.Intent == store.IntentDelete:
		return newErr(ErrNotFound, "no pending CSR with Id %d: it is being deleted", rec.ID)
	case rec.State == store.StatePending && rec.Intent == store.IntentMarry:
		return newErr(ErrNotFound, "no pending CSR with Id %d: its certificate is being imported", rec.ID)
	case rec.State == store.StateMarried:
		return newErr(ErrNotFound, "no pending CSR with Id %d: a certificate has been issued and imported for it (thumbprint %s)", rec.ID, rec.Cert.Thumbprint)
	}
	return newErr(ErrNotFound, "no pending CSR with Id %d: the request is %s", rec.ID, rec.State)
}
