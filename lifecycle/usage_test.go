package lifecycle_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
)

// decryptingToken is a real token whose profile says its keys may also
// decrypt, as on a token that cannot restrict keys to signing (its
// CanGenerate allows them: hsm.require_sign_only false).
type decryptingToken struct{ lifecycle.Token }

func (decryptingToken) Usage(hsm.KeySpec) hsm.Usage { return hsm.Usage{Sign: true, Decrypt: true} }

// TestUsageRecorded: a key that may do more than sign says so on its
// record from the start, and in the key views; a sign-only key's record
// names no usage.
func TestUsageRecorded(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		tok  lifecycle.Token
		want string
	}{{decryptingToken{lifecycle.HSMToken{Token: testToken}}, "sign, decrypt"}, {lifecycle.HSMToken{Token: testToken}, ""}} {
		db := openStore(t, filepath.Join(t.TempDir(), "csrd.db"))
		svc := lifecycle.New(tc.tok, db, policy.Default(), testLog)
		res := generate(t, svc, "CN=usage.example.com", ecc256, nil)
		info, err := svc.GetKey(ctx, res.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.Record.KeyUsage != tc.want {
			t.Errorf("record usage %q, want %q", info.Record.KeyUsage, tc.want)
		}
		if err := svc.Delete(ctx, res.ID, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
}
