package daemontest

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/csrd/csrd/loadgen"
	"github.com/csrd/csrd/store"
)

// Crash test knobs: CSRD_CRASH_SEED replays a run (the seed is logged, and
// printed with every failure), CSRD_CRASH_ROUNDS runs more rounds.
const (
	envCrashSeed   = "CSRD_CRASH_SEED"
	envCrashRounds = "CSRD_CRASH_ROUNDS"
)

// crashWorkers is the number of concurrent clients per round: more than
// the token's sessions, so kills land while generations queue as well as
// while they run.
const crashWorkers = 10

// TestKillNineUnderTraffic runs the real csrd, fires concurrent Generate,
// Delete and Import traffic at it and SIGKILLs it at a random moment, then
// restarts it on the same token and database, many times over. Some kills
// instead land during start-up, i.e. in the middle of reconciling the
// previous crash. After every successful restart checkInvariants proves
// that every answered request survived (a 200 Generate's record and key, a
// 204 Delete's destroyed key, a 200 Import's married certificate), that a
// request cut off by the kill ended in one of its two possible states, that
// no csrd-labelled object lacks a record and that the database is intact;
// csrd's own reconciliation report must show no orphan and no lost key.
func TestKillNineUnderTraffic(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(envCrashSeed); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", envCrashSeed, s, err)
		}
	}
	rounds := 30
	if s := os.Getenv(envCrashRounds); s != "" {
		var err error
		if rounds, err = strconv.Atoi(s); err != nil || rounds < 1 {
			t.Fatalf("%s=%q: want a positive number", envCrashRounds, s)
		}
	}
	t.Logf("seed %d (replay with %s=%d), %d rounds", seed, envCrashSeed, seed, rounds)
	defer func() {
		if t.Failed() {
			t.Logf("FAILED with seed %d: replay with %s=%d", seed, envCrashSeed, seed)
		}
	}()
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	mix, err := loadgen.ParseMix("p256=80,p384=15,rsa2048=5")
	if err != nil {
		t.Fatal(err)
	}

	in := newInstance(t, "crash", "")
	led := newLedger()
	ca := newTestCA(t)
	var (
		sent, answered, cutOff atomic.Int64
		unavailable            sync.Map // 503s with Retry-After: "op code" → count
		deleted, married       atomic.Int64
		startupKills, badSeen  int
		rec                    reconciled
		bad                    sync.Map // unexpected answers: "op status" → example message
	)
	for round := 1; round <= rounds; round++ {
		// One round in five kills the daemon while it starts, which is
		// while it reconciles the records the previous kill interrupted.
		if round > 1 && r.IntN(5) == 0 {
			d, err := in.spawn()
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(r.IntN(60)) * time.Millisecond)
			d.kill()
			d.checkNoRace(t)
			rec.add(t, d)
			startupKills++
		}
		d := in.start(t)
		rec.add(t, d)
		cen := checkInvariants(t, in, led)
		if t.Failed() {
			d.kill()
			bad.Range(func(k, v any) bool { t.Logf("unexpected answer so far: %v: %v", k, v); return true })
			t.Fatalf("round %d: invariants broken after restart (seed %d); logs and database kept in %s",
				round, seed, keepForLook(t, in.Dir, seed))
		}
		if round == rounds {
			// The last round ends with a clean stop instead of a kill.
			if err := d.stop(20 * time.Second); err != nil {
				t.Errorf("clean stop: %v\n%s", err, d.tail(20))
			}
			d.checkNoRace(t)
			t.Logf("after %d rounds: records %v, %d csrd objects on the token", rounds, cen.Records, cen.Objects)
			break
		}

		client := &loadgen.Client{HTTP: &http.Client{Timeout: 30 * time.Second}, Base: d.Base}
		var (
			stop atomic.Bool
			wg   sync.WaitGroup
		)
		for w := range crashWorkers {
			wr := rand.New(rand.NewPCG(seed, uint64(round*1000+w)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					n := sent.Add(1)
					op := wr.IntN(10)
					var (
						id int64
						cr *x509.CertificateRequest
						ok bool
					)
					if op >= 6 {
						id, cr, ok = led.claim(wr)
					}
					switch {
					case !ok: // Generate, or nothing pending to delete or import yet
						a := client.Generate(context.Background(), mix.Body(wr, n))
						switch {
						case a.Status == http.StatusOK && a.Err == nil:
							answered.Add(1)
							led.ack(t, a.ID, a.CSR)
						case a.Status == 0:
							cutOff.Add(1) // killed mid-request: the client does not know
						default:
							unexpected(&bad, &unavailable, "generate", a)
						}
					case op < 8:
						a := client.Delete(context.Background(), id)
						switch {
						case a.Status == http.StatusNoContent && a.Err == nil:
							deleted.Add(1)
							led.settle(id, store.StateDeleted)
						case a.Status == 0:
							cutOff.Add(1)
							led.settle(id, store.StatePending, store.StateDeleted)
						default:
							unexpected(&bad, &unavailable, "delete", a)
							led.settle(id, store.StatePending, store.StateDeleted)
						}
					default:
						a := client.Import(context.Background(), ca.issue(t, cr))
						switch {
						case a.Status == http.StatusOK && a.Err == nil:
							if a.ID != id {
								t.Errorf("certificate for record %d married to record %d", id, a.ID)
							}
							married.Add(1)
							led.settle(id, store.StateMarried)
						case a.Status == 0:
							cutOff.Add(1)
							led.settle(id, store.StatePending, store.StateMarried)
						default:
							unexpected(&bad, &unavailable, "import", a)
							led.settle(id, store.StatePending, store.StateMarried)
						}
					}
				}
			}()
		}
		time.Sleep(time.Duration(30+r.IntN(700)) * time.Millisecond)
		stop.Store(true)
		d.kill()
		wg.Wait()
		d.checkNoRace(t)
		if n := badCount(&bad) + badCount(&unavailable); n > badSeen {
			badSeen = n
			t.Logf("round %d: new kinds of error answers; csrd's warnings and errors:\n%s", round, d.problems())
		}
		client.HTTP.CloseIdleConnections()
	}
	bad.Range(func(k, v any) bool {
		t.Errorf("unexpected answer %v: %v", k, v)
		return true
	})
	unavailable.Range(func(k, v any) bool {
		t.Logf("503 with Retry-After: %v x%d", k, v.(*atomic.Int64).Load())
		return true
	})
	t.Logf("%d rounds survived (%d kills under traffic, %d during start-up): %d requests: %d keys generated, "+
		"%d deleted, %d married, %d cut off by the kill; start-up reconciliation: %s",
		rounds, rounds-1, startupKills, sent.Load(), answered.Load(), deleted.Load(), married.Load(), cutOff.Load(), rec)
	if answered.Load() == 0 || deleted.Load() == 0 || married.Load() == 0 {
		t.Error("some operation never succeeded: the test proved little")
	}
}

// reconciled sums csrd's start-up reconciliation reports ("reconciliation
// done" log lines) over the restarts.
type reconciled struct {
	interrupted, keysDestroyed, deletes, marriages int
	lost                                           int // records the token lost part of
}

// add adds d's report, and fails t if csrd found a marriage it could not
// finish, or more orphans than the halves of the keys the token lost.
func (r *reconciled) add(t testing.TB, d *daemon) {
	t.Helper()
	const msg = "reconciliation done"
	r.interrupted += d.logField(msg, "interrupted")
	r.keysDestroyed += d.logField(msg, "keys_destroyed")
	r.deletes += d.logField(msg, "deletes_finished")
	r.marriages += d.logField(msg, "marriages_finished")
	if n := d.logField(msg, "marriages_aborted"); n != 0 {
		t.Errorf("csrd's reconciliation reported %d marriages_aborted (log %s)", n, d.log)
	}
	// Lost keys and orphans are allowed only as the token's own loss
	// (tokenLostHalf): checkInvariants fails a lost record whose pair is
	// whole and any orphan that does not belong to a lost record.
	lost, orphans := d.logField(msg, "lost"), d.logField(msg, "orphans")
	if lost != 0 || orphans != 0 {
		t.Logf("csrd's reconciliation reported %d lost and %d orphans (log %s)", lost, orphans, d.log)
	}
	if orphans > 2*(r.lost+lost) {
		t.Errorf("csrd's reconciliation reported %d orphans for %d lost records (log %s)", orphans, lost, d.log)
	}
	r.lost += lost
}

func (r reconciled) String() string {
	return fmt.Sprintf("%d interrupted generates failed (%d keys destroyed), %d deletes and %d marriages finished, %d keys lost by the token",
		r.interrupted, r.keysDestroyed, r.deletes, r.marriages, r.lost)
}

// unexpected files an answer that is neither success nor a cut-off. A 503
// with Retry-After (and the error body loadgen checked) is a correct answer
// to a transient fault — SoftHSM, churned by kill -9 under load, now and
// then fails a C_GenerateKeyPair with CKR_GENERAL_ERROR — so it is counted
// and reported, and the invariants prove its clean-up; anything else fails.
func unexpected(bad, unavailable *sync.Map, op string, a loadgen.Answer) {
	if a.Status == http.StatusServiceUnavailable && a.Err == nil {
		n, _ := unavailable.LoadOrStore(op+" "+a.ErrorCode, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		return
	}
	bad.LoadOrStore(fmt.Sprintf("%s %d", op, a.Status), a.Message+" "+errText(a.Err))
}

// keepForLook copies the instance's directory (every daemon's log, the
// database) out of t.TempDir, which is removed when the test ends.
func keepForLook(t *testing.T, dir string, seed uint64) string {
	dst := filepath.Join(os.TempDir(), fmt.Sprintf("csrd-crash-%d", seed))
	if out, err := exec.Command("cp", "-a", dir, dst).CombinedOutput(); err != nil {
		t.Logf("keep %s: %v %s", dir, err, out)
		return dir + " (removed when the test ends)"
	}
	return dst
}

func badCount(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
