package acmeca

import (
	"errors"
	"testing"

	"golang.org/x/crypto/acme"
)

// TestForgetAccount: only the CA's accountDoesNotExist drops the
// registered client, so the next request registers the key again.
func TestForgetAccount(t *testing.T) {
	c := &CA{client: &acme.Client{}}
	for _, err := range []error{
		errors.New("connection refused"),
		caErr("ca", "order", &acme.Error{StatusCode: 403, ProblemType: "urn:ietf:params:acme:error:unauthorized"}),
	} {
		if c.forgetAccount(err) || c.client == nil || c.stale {
			t.Fatalf("forgetAccount(%v) dropped the account", err)
		}
	}
	gone := caErr("ca", "order", &acme.Error{StatusCode: 400, ProblemType: "urn:ietf:params:acme:error:accountDoesNotExist"})
	if !c.forgetAccount(gone) || c.client != nil || !c.stale {
		t.Fatal("accountDoesNotExist did not drop the account")
	}
}
