package acmeca

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/acme"
)

// Classes of CA errors, matched with errors.Is.
var (
	// ErrUnavailable: the CA could not be reached or failed on its side
	// (network error, timeout, 5xx, rate limit); trying again later may work.
	ErrUnavailable = errors.New("acmeca: CA unavailable")
	// ErrRefused: the CA answered and said no (an account it does not
	// accept, an identifier it will not certify, a failed challenge, a CSR
	// it rejects, an invalid order).
	ErrRefused = errors.New("acmeca: CA refused")
)

// Error is a failed exchange with a CA: which CA, what csrd was doing, the
// class, and the CA's own problem detail (RFC 8555 section 6.7).
type Error struct {
	CA     string
	Op     string
	Class  error
	Detail string
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("acmeca: CA %q: %s: %s", e.CA, e.Op, e.Detail)
}

// Unwrap exposes the class and the cause.
func (e *Error) Unwrap() []error { return []error{e.Class, e.Err} }

// Problem returns the CA's problem type (urn:ietf:params:acme:error:...)
// when the CA sent one.
func (e *Error) Problem() string {
	var ae *acme.Error
	if errors.As(e.Err, &ae) {
		return ae.ProblemType
	}
	return ""
}

// caErr classifies err from an exchange with CA ca during op.
func caErr(ca, op string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	detail, class := classify(err)
	return &Error{CA: ca, Op: op, Class: class, Detail: detail, Err: err}
}

// classify says what a failure means: the detail for the client, and the
// class (ErrRefused or ErrUnavailable).
func classify(err error) (detail string, class error) {
	var (
		ae   *acme.Error
		oe   *acme.OrderError
		aze  *acme.AuthorizationError
		nerr net.Error
	)
	switch {
	case errors.As(err, &oe):
		if oe.Problem != nil {
			return "order " + oe.Status + ": " + problemText(oe.Problem), ErrRefused
		}
		return "order " + oe.Status, ErrRefused
	case errors.As(err, &aze):
		return authzText(aze), ErrRefused
	case errors.As(err, &ae):
		if ae.StatusCode >= 500 || ae.StatusCode == 429 || ae.ProblemType == "urn:ietf:params:acme:error:rateLimited" {
			return problemText(ae), ErrUnavailable
		}
		return problemText(ae), ErrRefused
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr):
		return "the CA did not answer: " + trimURLErr(err), ErrUnavailable
	}
	return trimURLErr(err), ErrUnavailable
}

// problemText is a problem document as a sentence: detail, type, subproblems.
func problemText(p *acme.Error) string {
	var b strings.Builder
	b.WriteString(p.Detail)
	if p.ProblemType != "" {
		fmt.Fprintf(&b, " (%s)", strings.TrimPrefix(p.ProblemType, "urn:ietf:params:acme:error:"))
	}
	for _, sp := range p.Subproblems {
		fmt.Fprintf(&b, "; %s: %s", sp.Identifier.Value, sp.Detail)
	}
	if b.Len() == 0 {
		fmt.Fprintf(&b, "HTTP status %d", p.StatusCode)
	}
	return b.String()
}

func authzText(e *acme.AuthorizationError) string {
	var b strings.Builder
	fmt.Fprintf(&b, "authorization for %s failed", e.Identifier)
	for _, err := range e.Errors {
		var ae *acme.Error
		if errors.As(err, &ae) {
			fmt.Fprintf(&b, ": %s", problemText(ae))
		} else {
			fmt.Fprintf(&b, ": %v", err)
		}
	}
	return b.String()
}

// trimURLErr drops Go's "Post \"https://...\": " prefix, keeping the cause.
func trimURLErr(err error) string {
	s := err.Error()
	if i := strings.Index(s, "\": "); i >= 0 && (strings.HasPrefix(s, "Get ") || strings.HasPrefix(s, "Post ") || strings.HasPrefix(s, "Head ")) {
		return s[i+3:]
	}
	return s
}
