package enroll

import "fmt"

// Classes of the errors a caller can cause, matched with errors.Is; the
// message after "enroll: " is written for the client. CA failures are
// acmeca's ErrUnavailable and ErrRefused.
var (
	// ErrInvalid: the request cannot be enrolled as sent (a CSR csrd did
	// not make, an unknown CA, names ACME cannot certify).
	ErrInvalid = sentinel("invalid request")
	// ErrNotFound: no such key or enrolled certificate.
	ErrNotFound = sentinel("not found")
	// ErrConflict: the key or certificate is not in a state that allows it.
	ErrConflict = sentinel("conflict")
)

type sentinelError string

func sentinel(s string) error         { return sentinelError("enroll: " + s) }
func (e sentinelError) Error() string { return string(e) }

// Error is a refusal: a class and the message for the client.
type Error struct {
	Class error
	Msg   string
}

func (e *Error) Error() string { return "enroll: " + e.Msg }
func (e *Error) Unwrap() error { return e.Class }

func newErr(class error, format string, args ...any) *Error {
	return &Error{Class: class, Msg: fmt.Sprintf(format, args...)}
}
