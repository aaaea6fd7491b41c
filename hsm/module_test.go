package hsm

import (
	"testing"

	"github.com/ThalesGroup/crypto11"
)

// TestModuleOf pins the crypto11 internals moduleOf reads: an upgrade that
// changes them fails here (and Open refuses to run), never silently.
func TestModuleOf(t *testing.T) {
	p, err := moduleOf(testTok.c11)
	if err != nil {
		t.Fatal(err)
	}
	if p != testTok.p11 {
		t.Errorf("moduleOf = %p, Token's raw handle %p", p, testTok.p11)
	}
	if _, err := moduleOf(nil); err == nil {
		t.Error("moduleOf(nil) succeeded")
	}
	if _, err := moduleOf(&crypto11.Context{}); err == nil {
		t.Error("moduleOf of a Context without a module succeeded")
	}
}
