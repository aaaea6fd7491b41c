package csr

import (
	"errors"
	"fmt"
)

var (
	// ErrInvalidDN is matched (errors.Is) by every *DNError.
	ErrInvalidDN = errors.New("csr: invalid subject")
	// ErrInvalidSAN is matched (errors.Is) by every *SANError.
	ErrInvalidSAN = errors.New("csr: invalid subject alternative name")
	// ErrUnsupportedKey is returned for public key types csr cannot put in a
	// SubjectPublicKeyInfo or sign for.
	ErrUnsupportedKey = errors.New("csr: unsupported public key")
	// ErrBadSignature is returned when the signer produced a signature that is
	// malformed or does not verify under its own public key (a faulty HSM or
	// a signer/key mismatch); such a CSR must never leave the daemon.
	ErrBadSignature = errors.New("csr: signer produced an invalid signature")
	// ErrInvalidRequest is returned by Build for a request that cannot be
	// encoded (no names at all, conflicting attributes, ...).
	ErrInvalidRequest = errors.New("csr: invalid request")
)

// DNError describes why a subject DN was rejected. Pos is the 0-based byte
// offset in the input string where the problem was found, or -1 when the DN
// did not come from a string (DN.With, DN.DER). Attr is the attribute type as
// written (or its short name), empty when the problem is not tied to one.
type DNError struct {
	Pos    int
	Attr   string
	Reason string
}

func (e *DNError) Error() string {
	switch {
	case e.Attr != "" && e.Pos >= 0:
		return fmt.Sprintf("csr: subject: %s at position %d: %s", e.Attr, e.Pos, e.Reason)
	case e.Attr != "":
		return fmt.Sprintf("csr: subject: %s: %s", e.Attr, e.Reason)
	case e.Pos >= 0:
		return fmt.Sprintf("csr: subject: position %d: %s", e.Pos, e.Reason)
	default:
		return "csr: subject: " + e.Reason
	}
}

// Is makes errors.Is(err, ErrInvalidDN) true for every *DNError.
func (e *DNError) Is(target error) bool { return target == ErrInvalidDN }

// SANError describes why a subject alternative name was rejected. Key is the
// SAN type key as the caller sent it ("dns", "ip4", ...), Value the offending
// value (empty when the key itself is the problem).
type SANError struct {
	Key    string
	Value  string
	Reason string

	keyOnly bool // the key is the problem, not a value: message omits Value
}

func (e *SANError) Error() string {
	if e.keyOnly {
		return fmt.Sprintf("csr: SANs: key %q: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("csr: SANs: %s value %q: %s", e.Key, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidSAN) true for every *SANError.
func (e *SANError) Is(target error) bool { return target == ErrInvalidSAN }
