package hsm

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/rs/zerolog"
)

func TestOpenErrors(t *testing.T) {
	forEachKind(t, testOpenErrors)
}

func testOpenErrors(t *testing.T, k kind) {
	const wrongPIN = "Wrong-PIN-7f3a9c"
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		cfg     func(c *Config)
		want    error // sentinel; nil means "any error"
		wantStr string
	}{
		{"wrong PIN", nil, func(c *Config) { c.TokenLabel, c.PIN = k.other, wrongPIN }, ErrLogin, "CKR_PIN_INCORRECT"},
		{"unknown token", nil, func(c *Config) { c.TokenLabel = "no-such-token" }, ErrTokenNotFound, "no-such-token"},
		{"token already open", nil, func(c *Config) {}, ErrAlreadyOpen, ""},
		// Without the check, C_Login would answer CKR_USER_ALREADY_LOGGED_IN and any PIN would do.
		{"token already open, wrong PIN", nil, func(c *Config) { c.PIN = wrongPIN }, ErrAlreadyOpen, ""},
		{"cancelled", cancelled, func(c *Config) {}, context.Canceled, ""},
		{"one session", nil, func(c *Config) { c.MaxSessions = 1 }, nil, "MaxSessions"},
		{"no pool timeout", nil, func(c *Config) { c.PoolWaitTimeout = 0 }, nil, "PoolWaitTimeout"},
		{"no module", nil, func(c *Config) { c.Module = "/nonexistent/libnothing.so" }, nil, "module"},
		{"empty PIN", nil, func(c *Config) { c.PIN = "" }, nil, "PIN is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			cfg := k.config(k.label, k.pin)
			tt.cfg(&cfg)
			tok, err := Open(ctx, cfg, zerolog.Nop())
			if err == nil {
				tok.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Open: %v, want errors.Is %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.wantStr) {
				t.Errorf("Open: %q does not mention %q", err, tt.wantStr)
			}
			for _, pin := range []string{cfg.PIN, k.pin} {
				if pin != "" && strings.Contains(err.Error(), pin) {
					t.Errorf("error message contains the PIN: %q", err)
				}
			}
		})
	}
	// The shared token survived all of that.
	if err := k.tok.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after failed Opens: %v", err)
	}
}

// TestSecondToken opens another token in the same process and module, which
// must neither disturb the first one's login nor finalise the module on Close.
// On p11-kit's client, whose C_Initialize counts, it proves that every
// counted initialisation is finalised again: otherwise the logins would
// outlive Close and the wrong PIN below would read as ErrAlreadyOpen.
func TestSecondToken(t *testing.T) {
	forEachKind(t, testSecondToken)
}

func testSecondToken(t *testing.T, k kind) {
	ctx := context.Background()
	// A failed login first: crypto11 leaks its session then, and a leaked
	// session would keep the later login alive after Close.
	bad := k.config(k.other, "Wrong-PIN-0000000")
	if _, err := Open(ctx, bad, zerolog.Nop()); !errors.Is(err, ErrLogin) {
		t.Fatalf("Open with wrong PIN: %v, want ErrLogin", err)
	}
	other, err := Open(ctx, k.config(k.other, k.pin), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if other.Label() != k.other || other.Serial() == "" {
		t.Errorf("label %q serial %q", other.Label(), other.Serial())
	}
	// tpm2-pkcs11 gives every token the serial 0000000000000000.
	if k.name != "tpm" && other.Serial() == k.tok.Serial() {
		t.Errorf("second token's serial %q is the first's", other.Serial())
	}
	if err := other.Ping(ctx); err != nil {
		t.Error(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// A closed Token refuses work with ErrUnavailable and touches nothing.
	if err := other.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ping on closed token: %v, want ErrUnavailable", err)
	}
	if _, err := other.NewKeyID(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("NewKeyID on closed token: %v, want ErrUnavailable", err)
	}
	// Close really logged out: the PIN is checked again (not ErrAlreadyOpen).
	if _, err := Open(ctx, bad, zerolog.Nop()); !errors.Is(err, ErrLogin) {
		t.Errorf("Open with wrong PIN after Close: %v, want ErrLogin", err)
	}
	if err := k.tok.Ping(ctx); err != nil {
		t.Fatalf("first token after closing the second: %v", err)
	}
	if _, err := k.tok.NewKeyID(ctx); err != nil {
		t.Fatalf("first token's crypto11 pool after closing the second: %v", err)
	}
}

func TestPingSerial(t *testing.T) {
	if err := testTok.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if testTok.Label() != testLabel {
		t.Errorf("Label() = %q", testTok.Label())
	}
	if len(testTok.Serial()) == 0 {
		t.Error("empty serial")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := testTok.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping(cancelled) = %v", err)
	}
}

// TestRawSessionSharesLogin pins down the fact the raw handle relies on: a
// session opened on it is already logged in, because login state belongs to
// the application and the raw handle is crypto11's own module context. A
// private key crypto11 made is found and read through the raw handle, and
// destroyed by it.
func TestRawSessionSharesLogin(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		ctx := context.Background()
		moduleMu.Lock()
		held := heldModule(k.module)
		moduleMu.Unlock()
		if held == nil || held != k.tok.p11 {
			t.Fatalf("module context %p held for %s, the Token uses %p", held, k.module, k.tok.p11)
		}
		err := k.tok.withRawSession(ctx, "test", func(sh pkcs11.SessionHandle) error {
			info, err := k.tok.p11.GetSessionInfo(sh)
			if err != nil {
				return err
			}
			if info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
				t.Errorf("raw session state %d, want CKS_RW_USER_FUNCTIONS", info.State)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ref := refOn(t, k.tok, "shared-instance")
		key, err := k.tok.GenerateKeyPair(ctx, KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, ref)
		if err != nil {
			t.Fatal(err)
		}
		a, err := k.tok.KeyAttributes(ctx, ref)
		if err != nil {
			t.Fatalf("the raw handle does not see crypto11's private key: %v", err)
		}
		if !a.Private || !a.Sensitive || a.Extractable {
			t.Errorf("attributes %+v", a)
		}
		if err := k.tok.DestroyKey(ctx, ref); err != nil {
			t.Fatal(err)
		}
		if _, err := key.Sign(nil, make([]byte, 32), crypto.SHA256); !errors.Is(err, ErrNotFound) {
			t.Errorf("Sign with a key the raw handle destroyed: %v, want ErrNotFound", err)
		}
	})
}

// TestSecondHandle shows why the raw handle is crypto11's own context: a
// second pkcs11.New on p11-kit's client reaches a separate module instance
// (C_Initialize answers CKR_OK, and its sessions do not see csrd's login),
// while SoftHSM and tpm2-pkcs11 hand every handle the same one.
func TestSecondHandle(t *testing.T) {
	forEachKind(t, func(t *testing.T, k kind) {
		p := pkcs11.New(k.module)
		if p == nil {
			t.Fatal("cannot load the module")
		}
		defer p.Destroy()
		err := p.Initialize()
		separate := err == nil
		if separate {
			defer func() { _ = p.Finalize() }()
		} else if !isCKR(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			t.Fatal(err)
		}
		slot, _, err := findSlot(p, k.label)
		if err != nil {
			t.Fatal(err)
		}
		sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = p.CloseSession(sh) }()
		info, err := p.GetSessionInfo(sh)
		if err != nil {
			t.Fatal(err)
		}
		loggedIn := info.State == pkcs11.CKS_RO_USER_FUNCTIONS
		t.Logf("second C_Initialize: separate instance %v; its session logged in %v", separate, loggedIn)
		if want := k.name == "p11kit"; separate != want || loggedIn == want {
			t.Errorf("separate instance %v, logged in %v; want separate %v", separate, loggedIn, want)
		}
	})
}

func TestRawSessionWaitBounded(t *testing.T) {
	tok := &Token{wait: 50 * time.Millisecond, rawSem: make(chan struct{}, 1), log: zerolog.Nop()}
	tok.rawSem <- struct{}{} // the only slot is taken
	start := time.Now()
	err := tok.withRawSession(context.Background(), "test", func(pkcs11.SessionHandle) error { return nil })
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("waited %v", d)
	}
}
