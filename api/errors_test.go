package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/csrd/csrd/hsm"
)

// TestClassifyHSM: what a token refuses is not an outage — no 503, no
// Retry-After — and the client learns which token, which operation and
// which PKCS#11 return value; an outage stays a 503.
func TestClassifyHSM(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   string
		says   []string
	}{
		{"template refused", &hsm.Error{Op: "generate key pair", Token: "tpm-a", CKR: 0xD1, Err: hsm.ErrRefused},
			http.StatusInternalServerError, CodeHSMRefused, []string{`"tpm-a"`, "generate key pair", "CKR_TEMPLATE_INCONSISTENT", "will fail again"}},
		{"general error, token answers", fmt.Errorf("lifecycle: %w", &hsm.Error{Op: "sign", Token: "tpm-a", CKR: 0x5, Err: hsm.ErrRefused}),
			http.StatusInternalServerError, CodeHSMRefused, []string{`"tpm-a"`, "sign", "CKR_GENERAL_ERROR"}},
		{"key size", &hsm.Error{Op: "generate key pair", Token: "tpm-a", CKR: 0x62, Err: hsm.ErrUnsupported},
			http.StatusBadRequest, CodeNotSupported, []string{`"tpm-a"`, "CKR_KEY_SIZE_RANGE"}},
		{"outage", &hsm.Error{Op: "generate key pair", Token: "tpm-a", CKR: 0x30, Err: hsm.ErrUnavailable},
			http.StatusServiceUnavailable, CodeHSMUnavailable, []string{"try again later"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := classify(tt.err)
			if m.status != tt.status || m.code != tt.code {
				t.Errorf("%d %s, want %d %s", m.status, m.code, tt.status, tt.code)
			}
			for _, s := range tt.says {
				if !strings.Contains(m.msg, s) {
					t.Errorf("message %q does not say %q", m.msg, s)
				}
			}
		})
	}
}
