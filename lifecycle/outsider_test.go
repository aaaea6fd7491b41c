package lifecycle_test

import (
	"encoding/hex"
	"fmt"
	"os/exec"

	"github.com/csrd/csrd/hsm"
)

// destroyObjects deletes objects under ref with pkcs11-tool, in another
// process, the way an operator working behind csrd's back would. (The PIN
// goes on pkcs11-tool's argv: acceptable for a throw-away test token only.)
func destroyObjects(tok *hsm.Token, ref hsm.KeyRef, classes ...hsm.ObjectClass) error {
	for _, c := range classes {
		typ := map[hsm.ObjectClass]string{hsm.ClassPrivateKey: "privkey", hsm.ClassPublicKey: "pubkey", hsm.ClassCertificate: "cert"}[c]
		out, err := exec.Command("pkcs11-tool", "--module", testTok.Module, "--token-label", tok.Label(),
			"--login", "--pin", testTok.PIN, "--delete-object", "--type", typ,
			"--id", hex.EncodeToString(ref.ID), "--label", ref.Label).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pkcs11-tool --delete-object %s %v: %v\n%s", typ, ref, err, out)
		}
	}
	return nil
}
