package daemontest

import (
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/csrd/csrd/loadgen"
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

// TestKillNineUnderTraffic runs the real csrd, fires concurrent Generate
// traffic at it and SIGKILLs it at a random moment, then restarts it on the
// same token and database, many times over. Some kills instead land during
// start-up, i.e. in the middle of reconciling the previous crash. After
// every successful restart checkInvariants proves that every 200 answer
// survived with its key, that no csrd-labelled object lacks a record and
// that the database is intact.
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
	var (
		sent, answered, lostInFlight atomic.Int64
		startupKills, interrupted    int
		keysDestroyed                int
		bad                          sync.Map // unexpected statuses: status → example message
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
			interrupted += d.logField("start-up reconciliation finished interrupted generates", "interrupted")
			keysDestroyed += d.logField("start-up reconciliation finished interrupted generates", "keys_destroyed")
			startupKills++
		}
		d := in.start(t)
		interrupted += d.logField("start-up reconciliation finished interrupted generates", "interrupted")
		keysDestroyed += d.logField("start-up reconciliation finished interrupted generates", "keys_destroyed")
		cen := checkInvariants(t, in, led)
		if t.Failed() {
			d.kill()
			t.Fatalf("round %d: invariants broken after restart (seed %d); log %s", round, seed, d.log)
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
					a := client.Generate(context.Background(), mix.Body(wr, n))
					switch {
					case a.Status == http.StatusOK && a.Err == nil:
						answered.Add(1)
						led.ack(t, a.ID, a.CSR)
					case a.Status == 0:
						lostInFlight.Add(1) // killed mid-request: outcome unknown to the client
					default:
						bad.LoadOrStore(a.Status, a.Message+" "+errText(a.Err))
					}
				}
			}()
		}
		time.Sleep(time.Duration(30+r.IntN(700)) * time.Millisecond)
		stop.Store(true)
		d.kill()
		wg.Wait()
		d.checkNoRace(t)
		client.HTTP.CloseIdleConnections()
	}
	bad.Range(func(k, v any) bool {
		t.Errorf("unexpected answer %v: %v", k, v)
		return true
	})
	t.Logf("%d rounds survived (%d kills under traffic, %d during start-up): %d requests, %d answered 200, "+
		"%d cut off by the kill; reconciliation finished %d interrupted generates, destroying %d keys",
		rounds, rounds-1, startupKills, sent.Load(), answered.Load(), lostInFlight.Load(), interrupted, keysDestroyed)
	if answered.Load() == 0 {
		t.Error("no request was ever answered 200: the test proved nothing")
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
