package hsm

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
	"github.com/rs/zerolog"
)

func TestOpenErrors(t *testing.T) {
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
		{"wrong PIN", nil, func(c *Config) { c.TokenLabel, c.PIN = otherLabel, wrongPIN }, ErrLogin, "CKR_PIN_INCORRECT"},
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
			cfg := testConfig(testLabel, testHSM.PIN)
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
			for _, pin := range []string{cfg.PIN, testHSM.PIN} {
				if pin != "" && strings.Contains(err.Error(), pin) {
					t.Errorf("error message contains the PIN: %q", err)
				}
			}
		})
	}
	// The shared token survived all of that.
	if err := testTok.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after failed Opens: %v", err)
	}
}

// TestSecondToken opens another token in the same process and module, which
// must neither disturb the first one's login nor finalise the module on Close.
func TestSecondToken(t *testing.T) {
	ctx := context.Background()
	// A failed login first: crypto11 leaks its session then, and a leaked
	// session would keep the later login alive after Close.
	bad := testConfig(otherLabel, "Wrong-PIN-0000000")
	if _, err := Open(ctx, bad, zerolog.Nop()); !errors.Is(err, ErrLogin) {
		t.Fatalf("Open with wrong PIN: %v, want ErrLogin", err)
	}
	other, err := Open(ctx, testConfig(otherLabel, testHSM.PIN), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if other.Label() != otherLabel || other.Serial() == "" || other.Serial() == testTok.Serial() {
		t.Errorf("label %q serial %q (first token serial %q)", other.Label(), other.Serial(), testTok.Serial())
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
	if err := testTok.Ping(ctx); err != nil {
		t.Fatalf("first token after closing the second: %v", err)
	}
	if _, err := testTok.NewKeyID(ctx); err != nil {
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
// session opened on it is already logged in, because SoftHSM (like PKCS#11
// says) keeps login state per application, and dlopen gave both handles the
// same library instance.
func TestRawSessionSharesLogin(t *testing.T) {
	err := testTok.withRawSession(context.Background(), "test", func(sh pkcs11.SessionHandle) error {
		info, err := testTok.p11.GetSessionInfo(sh)
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
