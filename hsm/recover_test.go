package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/fixture"
)

const envRecoverChild = "CSRD_HSM_TEST_RECOVER_DIR"

// TestReconnect takes the token away under an open Token (the SoftHSM token
// directory is moved aside, as close as SoftHSM gets to unplugging a device)
// and brings it back. It runs in a child process: reconnecting must
// C_Finalize the module, which the shared testTok in this process prevents.
func TestReconnect(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envRecoverChild+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
}

// recoverChild is the body of TestReconnect, run in the child process. It
// returns the first thing that went wrong.
func recoverChild(dir string) error {
	st, err := fixture.Setup(filepath.Join(dir, "softhsm"), "csrd-recover-test")
	if err != nil {
		return err
	}
	ctx := context.Background()
	cfg := testConfigFor(st)
	cfg.HealthInterval = 50 * time.Millisecond
	cfg.ReconnectMin, cfg.ReconnectMax = 20*time.Millisecond, 200*time.Millisecond
	tok, err := Open(ctx, cfg, zerolog.New(os.Stderr).Level(zerolog.InfoLevel))
	if err != nil {
		return err
	}
	defer tok.Close()

	before, err := genP256(ctx, tok, "before")
	if err != nil {
		return fmt.Errorf("generate before: %w", err)
	}
	// Raw-handle state: an Edwards key's handles and the sealing key's
	// cached handle must not outlive the connection either.
	edID, err := tok.NewKeyID(ctx)
	if err != nil {
		return err
	}
	edBefore, err := tok.GenerateKeyPair(ctx, KeySpec{Type: KeyEd25519}, KeyRef{ID: edID, Label: "recover-ed"})
	if err != nil {
		return fmt.Errorf("generate Ed25519 before: %w", err)
	}
	binding := SealBinding{RecordID: 1, Label: "recover", Algorithm: "ML-DSA-44"}
	blob, err := tok.seal(ctx, []byte("seed before the outage"), binding)
	if err != nil {
		return fmt.Errorf("seal before: %w", err)
	}

	// Away: the monitor notices within a few health intervals without any
	// request being made, and everything fails fast with ErrUnavailable.
	tokens := filepath.Join(st.Dir, "tokens")
	ents, err := os.ReadDir(tokens)
	if err != nil || len(ents) != 1 {
		return fmt.Errorf("token dir: %v entries, %v", len(ents), err)
	}
	here, away := filepath.Join(tokens, ents[0].Name()), filepath.Join(dir, "away")
	if err := os.Rename(here, away); err != nil {
		return err
	}
	if err := waitFor(func() bool { return tok.Healthy() != nil }); err != nil {
		return fmt.Errorf("token away: %w", err)
	}
	start := time.Now()
	if err := tok.Ping(ctx); !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("Ping while away: %v, want ErrUnavailable", err)
	}
	if _, err := genP256(ctx, tok, "away"); !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("generate while away: %v, want ErrUnavailable", err)
	}
	if _, err := signWith(before); !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("sign while away: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		return fmt.Errorf("refusals while away took %v; they must not wait for the token", d)
	}

	// Back: the monitor reconnects (C_Finalize + C_Initialize makes SoftHSM
	// rescan), and old Keys find their handles again.
	if err := os.Rename(away, here); err != nil {
		return err
	}
	if err := waitFor(func() bool { return tok.Healthy() == nil }); err != nil {
		return fmt.Errorf("token back: %w", err)
	}
	if n := tok.Reconnects(); n != 1 {
		return fmt.Errorf("Reconnects = %d, want 1", n)
	}
	if err := tok.Ping(ctx); err != nil {
		return fmt.Errorf("Ping after reconnect: %w", err)
	}
	if ok, err := signWith(before); err != nil || !ok {
		return fmt.Errorf("sign with a key made before the reconnect: ok=%v err=%v", ok, err)
	}
	msg := []byte("after the outage")
	if sig, err := edBefore.Sign(rand.Reader, msg, crypto.Hash(0)); err != nil || !ed25519.Verify(edBefore.Public().(ed25519.PublicKey), msg, sig) {
		return fmt.Errorf("sign with an Ed25519 key made before the reconnect: %v", err)
	}
	if pt, err := tok.unseal(ctx, blob, binding); err != nil || string(pt) != "seed before the outage" {
		return fmt.Errorf("unseal after the reconnect: %q, %v", pt, err)
	}
	if _, err := tok.seal(ctx, []byte("seed after"), binding); err != nil {
		return fmt.Errorf("seal after the reconnect: %w", err)
	}
	after, err := genP256(ctx, tok, "after")
	if err != nil {
		return fmt.Errorf("generate after reconnect: %w", err)
	}
	if ok, err := signWith(after); err != nil || !ok {
		return fmt.Errorf("sign after reconnect: ok=%v err=%v", ok, err)
	}

	// Concurrent signers while the token goes away and comes back again:
	// no deadlock, no race, and every error is ErrUnavailable.
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	stop := make(chan struct{})
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := signWith(after); err != nil && !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotFound) {
					errc <- err
					return
				}
			}
		}()
	}
	if err := os.Rename(here, away); err != nil {
		return err
	}
	werr := waitFor(func() bool { return tok.Healthy() != nil })
	_ = os.Rename(away, here)
	if werr == nil {
		werr = waitFor(func() bool { return tok.Healthy() == nil })
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		return fmt.Errorf("signing during the outage: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("second outage: %w", werr)
	}
	if n := tok.Reconnects(); n != 2 {
		return fmt.Errorf("Reconnects = %d, want 2", n)
	}
	return nil
}

func testConfigFor(st *fixture.Token) Config {
	return Config{Module: st.Module, TokenLabel: st.Label, PIN: st.PIN, MaxSessions: 4, PoolWaitTimeout: 5 * time.Second}
}

func genP256(ctx context.Context, tok *Token, name string) (*Key, error) {
	id, err := tok.NewKeyID(ctx)
	if err != nil {
		return nil, err
	}
	return tok.GenerateKeyPair(ctx, KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, KeyRef{ID: id, Label: "recover-" + name})
}

// signWith signs a digest with k and reports whether the signature verifies.
func signWith(k *Key) (bool, error) {
	d := sha256.Sum256([]byte("csrd"))
	sig, err := k.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return false, err
	}
	return ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), d[:], sig), nil
}

// waitFor polls cond until it holds or 20s pass (the monitor's interval is
// 50ms; the bound only matters on a hopelessly overloaded machine).
func waitFor(cond func() bool) error {
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("condition not reached within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// TestPatience: a slow health check is waited on while csrd's other
// operations on the token keep finishing, however long that takes, and
// while nothing but the check is in flight (another process may be starving
// it, and nobody waits); it fails once operations are in flight and none
// has finished for healthPatience.
func TestPatience(t *testing.T) {
	type look struct {
		at       time.Duration // since the check began
		finished uint64        // operations finished so far (10 when it began)
		busy     bool          // others in flight
	}
	tick := healthTimeout
	tests := []struct {
		name  string
		looks []look
		want  bool // at the last look
	}{
		{"busy, an operation just finished", []look{{tick, 11, true}}, true},
		{"busy, nothing finished yet", []look{{tick, 10, true}}, true},
		{"busy, nothing finished for the patience", []look{{tick, 10, true}, {healthPatience, 10, true}}, false},
		{"busy and finishing for an hour", []look{{tick, 11, true}, {30 * time.Minute, 500, true}, {time.Hour, 900, true}}, true},
		{"busy, last finish just under the patience ago", []look{{tick, 11, true}, {tick + healthPatience - time.Second, 11, true}}, true},
		{"busy, last finish the patience ago", []look{{tick, 11, true}, {tick + healthPatience, 11, true}}, false},
		{"alone for an hour (another process may starve it)", []look{{tick, 10, false}, {time.Hour, 10, false}}, true},
		{"alone for an hour, then busy without progress: the clock starts with the work",
			[]look{{time.Hour, 10, false}, {time.Hour + tick, 10, true}}, true},
		{"alone, then busy and stalled for the patience",
			[]look{{time.Hour, 10, false}, {time.Hour + tick, 10, true}, {time.Hour + healthPatience, 10, true}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Unix(1_800_000_000, 0)
			p := newPatience(10, t0)
			var got bool
			for _, l := range tt.looks {
				got = p.keepWaiting(l.finished, l.busy, t0.Add(l.at))
			}
			if got != tt.want {
				t.Errorf("keepWaiting after %+v = %v, want %v", tt.looks, got, tt.want)
			}
		})
	}
}
