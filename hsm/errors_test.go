package hsm

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
	pkgerrors "github.com/pkg/errors"
	"github.com/rs/zerolog"
	"github.com/thales-e-security/pool"
)

func TestWrap(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		want     error // sentinel
		ckr      uint
		code     string
		contains string
	}{
		{"pin incorrect", pkcs11.Error(pkcs11.CKR_PIN_INCORRECT), ErrLogin, pkcs11.CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT", "login failed"},
		{"pin locked", pkcs11.Error(pkcs11.CKR_PIN_LOCKED), ErrLogin, pkcs11.CKR_PIN_LOCKED, "CKR_PIN_LOCKED", ""},
		{"pin len", pkcs11.Error(pkcs11.CKR_PIN_LEN_RANGE), ErrLogin, pkcs11.CKR_PIN_LEN_RANGE, "CKR_PIN_LEN_RANGE", ""},
		{"not logged in", pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN), ErrLogin, pkcs11.CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN", ""},
		// crypto11 wraps with github.com/pkg/errors and with %w; both must be seen through.
		{"pkg/errors wrapped", pkgerrors.WithMessage(pkcs11.Error(pkcs11.CKR_PIN_INCORRECT), "failed to log into long term session"),
			ErrLogin, pkcs11.CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT", "failed to log into long term session"},
		{"%w wrapped", fmt.Errorf("failed to initialize module: %w", pkcs11.Error(pkcs11.CKR_DEVICE_ERROR)),
			ErrUnavailable, pkcs11.CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR", "failed to initialize module"},
		{"session invalid", pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID), ErrUnavailable, pkcs11.CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID", "unavailable"},
		{"session closed", pkcs11.Error(pkcs11.CKR_SESSION_CLOSED), ErrUnavailable, pkcs11.CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED", ""},
		{"device removed", pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED), ErrUnavailable, pkcs11.CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED", ""},
		{"token not present", pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT), ErrUnavailable, pkcs11.CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT", ""},
		{"general error", pkcs11.Error(pkcs11.CKR_GENERAL_ERROR), ErrUnavailable, pkcs11.CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR", ""},
		{"pool timeout", pool.ErrTimeout, ErrUnavailable, 0, "", "resource pool timed out"},
		{"device memory", pkcs11.Error(pkcs11.CKR_DEVICE_MEMORY), ErrTokenFull, pkcs11.CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY", "token full"},
		{"mechanism", pkcs11.Error(pkcs11.CKR_MECHANISM_INVALID), ErrUnsupported, pkcs11.CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID", ""},
		{"key size", pkcs11.Error(pkcs11.CKR_KEY_SIZE_RANGE), ErrUnsupported, pkcs11.CKR_KEY_SIZE_RANGE, "CKR_KEY_SIZE_RANGE", ""},
		{"curve", pkcs11.Error(pkcs11.CKR_CURVE_NOT_SUPPORTED), ErrUnsupported, pkcs11.CKR_CURVE_NOT_SUPPORTED, "CKR_CURVE_NOT_SUPPORTED", ""},
		{"handle invalid", pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID), ErrNotFound, pkcs11.CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID", ""},
		{"unclassified", pkcs11.Error(pkcs11.CKR_ARGUMENTS_BAD), nil, pkcs11.CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD", ""},
		{"vendor code", pkcs11.Error(0x80000123), nil, 0x80000123, "CKR_0x80000123", ""},
		{"plain error", errors.New("boom"), nil, 0, "", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wrap("test op", tt.err)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("wrap returned %T", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.want)
			}
			if tt.want == nil && e.Err != nil {
				t.Errorf("class %v, want none", e.Err)
			}
			if e.CKR != tt.ckr || e.CodeName() != tt.code {
				t.Errorf("CKR %#x %q, want %#x %q", e.CKR, e.CodeName(), tt.ckr, tt.code)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "hsm: test op: "+tt.code) || !strings.Contains(msg, tt.contains) {
				t.Errorf("message %q", msg)
			}
			// Nothing outside hsm gets to see the pkcs11.Error.
			var p11 pkcs11.Error
			if errors.As(err, &p11) {
				t.Errorf("pkcs11.Error reachable through %q", msg)
			}
		})
	}
}

func TestWrapPassThrough(t *testing.T) {
	if wrap("x", nil) != nil {
		t.Error("wrap(nil) != nil")
	}
	he := &Error{Op: "inner", Err: ErrNotFound}
	if got := wrap("outer", fmt.Errorf("ctx: %w", he)); !errors.Is(got, ErrNotFound) || !strings.Contains(got.Error(), "inner") {
		t.Errorf("wrap(*Error) = %v", got)
	}
	if got := wrap("x", context.Canceled); !errors.Is(got, context.Canceled) {
		t.Errorf("wrap(Canceled) = %v", got)
	}
}

func TestErrorMessage(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{Op: "open", CKR: pkcs11.CKR_PIN_INCORRECT, Err: ErrLogin}, "hsm: open: CKR_PIN_INCORRECT: login failed"},
		{&Error{Op: "find key", Err: ErrNotFound}, "hsm: find key: not found"},
		{&Error{Op: "sign"}, "hsm: sign"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	const pin = "s3cret-PIN-123456"
	err := redact(wrap("open", fmt.Errorf("module said %s", pin)), pin)
	if strings.Contains(err.Error(), pin) {
		t.Errorf("PIN in %q", err)
	}
}

// TestSpurious: only the codes SoftHSM's object-store race produces (and a
// real HSM's transient failures) are retried by GenerateKeyPair.
func TestSpurious(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&Error{Op: "generate key pair", CKR: pkcs11.CKR_GENERAL_ERROR}, true},
		{&Error{Op: "generate key pair", CKR: pkcs11.CKR_FUNCTION_FAILED}, true},
		{&Error{Op: "generate key pair", CKR: pkcs11.CKR_TEMPLATE_INCONSISTENT, Err: ErrUnsupported}, true},
		{&Error{Op: "generate key pair", CKR: pkcs11.CKR_PIN_INCORRECT, Err: ErrLogin}, false},
		{&Error{Op: "generate key pair", CKR: pkcs11.CKR_DEVICE_MEMORY, Err: ErrTokenFull}, false},
		{&Error{Op: "generate key pair", Err: ErrUnavailable}, false},
		{errors.New("other"), false},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			if got := spurious(tt.err); got != tt.want {
				t.Errorf("spurious(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestGenerateErrRetriesGarbledReadBack: a crypto11 generation that failed
// without a PKCS#11 code decoding the new public key is retried like a
// spurious code; a session-pool timeout, a lost device, a cancelled context
// or a refused login still are not.
func TestGenerateErrRetriesGarbledReadBack(t *testing.T) {
	tests := []struct {
		name string
		raw  error
		want bool
	}{
		{"crypto11 could not decode the curve", errors.New("unsupported elliptic curve"), true},
		{"spurious code", pkcs11.Error(pkcs11.CKR_GENERAL_ERROR), true},
		{"no session in time", pool.ErrTimeout, false},
		{"device removed", pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED), false},
		{"not logged in", pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN), false},
		{"cancelled", context.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := generateErr(wrap("generate key pair", tt.raw))
			if got := spurious(err); got != tt.want {
				t.Errorf("spurious(%v) = %v, want %v", err, got, tt.want)
			}
			if tt.want && tt.raw.Error() == "unsupported elliptic curve" && !strings.Contains(err.Error(), "read back unreadable: unsupported elliptic curve") {
				t.Errorf("message %q does not say what happened", err)
			}
		})
	}
}

func TestWrapRefused(t *testing.T) {
	for _, rv := range []uint{pkcs11.CKR_TEMPLATE_INCONSISTENT, pkcs11.CKR_TEMPLATE_INCOMPLETE, pkcs11.CKR_ATTRIBUTE_TYPE_INVALID,
		pkcs11.CKR_ATTRIBUTE_VALUE_INVALID, pkcs11.CKR_ATTRIBUTE_READ_ONLY, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED} {
		err := testTok.wrap("generate key pair", pkcs11.Error(rv))
		var e *Error
		if !errors.Is(err, ErrRefused) || !errors.As(err, &e) || e.Token != testLabel || e.CKR != rv {
			t.Errorf("%s: %v, want ErrRefused on token %q", ckrName(rv), err, testLabel)
		}
		if errors.Is(err, ErrUnavailable) {
			t.Errorf("%s reads as unavailable", ckrName(rv))
		}
		if want := `hsm: generate key pair on token "` + testLabel + `": ` + ckrName(rv); !strings.HasPrefix(err.Error(), want) {
			t.Errorf("message %q, want prefix %q", err, want)
		}
	}
}

// TestJudge: a CKR_GENERAL_ERROR (or CKR_FUNCTION_FAILED) of a request the
// token has never carried out, from a token that otherwise answers, is a
// refusal of the request; of one it has carried out (its trial proved
// RSA-2048), or from a token that does not answer, an outage.
func TestJudge(t *testing.T) {
	ctx := context.Background()
	unproven := generateProof(KeySpec{Type: KeyRSA, Bits: 8192})
	for _, rv := range []uint{pkcs11.CKR_GENERAL_ERROR, pkcs11.CKR_FUNCTION_FAILED} {
		err := testTok.judge(ctx, wrap("generate key pair", pkcs11.Error(rv)), unproven)
		var e *Error
		if !errors.Is(err, ErrRefused) || !errors.As(err, &e) || e.CKR != rv || e.Token != testLabel {
			t.Errorf("%s on an answering token: %v, want ErrRefused naming the token and the code", ckrName(rv), err)
		}
	}
	proven := generateProof(KeySpec{Type: KeyRSA, Bits: 2048})
	if err := testTok.judge(ctx, wrap("generate key pair", pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)), proven); !errors.Is(err, ErrUnavailable) {
		t.Errorf("CKR_GENERAL_ERROR of a request the token carried out before: %v, want ErrUnavailable", err)
	}
	other, err := Open(ctx, testConfig(otherLabel, testHSM.PIN), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	err = other.judge(ctx, wrap("generate key pair", pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)), unproven)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRefused) {
		t.Errorf("CKR_GENERAL_ERROR on a token that does not answer: %v, want ErrUnavailable", err)
	}
	// Anything else passes unchanged.
	in := wrap("sign", pkcs11.Error(pkcs11.CKR_PIN_INCORRECT))
	if got := testTok.judge(ctx, in, unproven); got != in { //nolint:errorlint // judge must hand back the very error it was given
		t.Errorf("judge changed %v to %v", in, got)
	}
}
