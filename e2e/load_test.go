package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/csrd/csrd/store"
	"github.com/csrd/csrd/tools/loadgen"
)

// TestLoadShort is the short version of `make load`: 8 clients for 3 s
// against a fresh csrd. Every answer must be a 200 or a 503 backpressure
// answer with Retry-After; every 200's record and key must be there; and
// there must be exactly as many pending records as 200 answers (a pending
// record nobody was told about would be a key the client cannot use).
func TestLoadShort(t *testing.T) {
	fullRunOnly(t, "8 clients for 3 s with every answer, record and key checked")
	in := newInstance(t, "load", "")
	d := in.start(t)
	defer func() { d.kill() }()
	mix, err := loadgen.ParseMix(loadgen.DefaultMix)
	if err != nil {
		t.Fatal(err)
	}
	led := newLedger()
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		Client:   loadgen.Client{HTTP: &http.Client{Timeout: time.Minute}, Base: d.Base},
		Clients:  8,
		Duration: 3 * time.Second,
		Mix:      mix,
		Seed:     1,
		Pid:      d.Pid(),
		OnAnswer: func(a loadgen.Answer) {
			if a.Status == http.StatusOK && a.Err == nil {
				led.ack(t, a.ID, a.CSR)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var rep strings.Builder
	res.WriteReport(&rep)
	t.Log("\n" + rep.String())
	if res.Unexpected > 0 {
		t.Errorf("%d answers were neither 200 nor 503: statuses %v, errors %v", res.Unexpected, res.Status, res.Errors)
	}
	if len(res.Accepted) == 0 {
		t.Fatal("no request accepted")
	}
	if err := d.stop(20 * time.Second); err != nil {
		t.Errorf("clean stop after load: %v", err)
	}
	d.checkNoRace(t)
	d = in.start(t)
	cen := checkInvariants(t, in, led)
	if got := cen.Records[store.StatePending]; got != len(res.Accepted) {
		t.Errorf("%d pending records, %d answers 200", got, len(res.Accepted))
	}
	if cen.Objects != 2*len(res.Accepted) {
		t.Errorf("%d csrd objects on the token for %d keys", cen.Objects, len(res.Accepted))
	}
}
