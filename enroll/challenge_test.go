package enroll_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/csrd/csrd/acmeca"
	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/fixture"
	"github.com/csrd/csrd/store"
)

// TestEnrollChallenges enrolls through csrd's configuration of each
// challenge, validated for real by Pebble: http-01 answered by the
// responder Run starts on its own listener, dns-01 published in bind9 with
// TSIG-signed RFC 2136 updates over UDP and over TCP.
func TestEnrollChallenges(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	b := fixture.StartBind(t, "example.test", map[string]string{"web": "127.0.0.1"})
	httpPort := fixture.FreePort(t)
	p := fixture.StartPebble(t, fixture.PebbleOptions{HTTPPort: httpPort, DNSServer: b.Addr})
	f := newFixture(t)
	for _, tc := range []struct {
		name string
		acme func(*config.ACME)
		host string
	}{
		{"http-01", func(a *config.ACME) {
			a.Challenge, a.HTTP01Listen = config.ChallengeHTTP01, fmt.Sprintf("127.0.0.1:%d", httpPort)
		}, "web.example.test"},
		{"dns-01 over udp", func(a *config.ACME) { a.Challenge, a.DNS01 = config.ChallengeDNS01, dns01(b, "udp") }, "udp.example.test"},
		{"dns-01 over tcp", func(a *config.ACME) { a.Challenge, a.DNS01 = config.ChallengeDNS01, dns01(b, "tcp") }, "tcp.example.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := pebbleCA(t, p, "pebble")
			tc.acme(&ca.ACME)
			s := f.service(t, time.Minute, ca)
			ctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			gen := f.generate(t, tc.host)
			var res *enroll.Result
			var err error
			// The responder's listener starts with Run: wait until it serves.
			waitFor(t, 10*time.Second, "the enrollment", func() bool {
				res, err = s.Enroll(ctx, enroll.Request{CSR: gen.CSRPEM})
				return err == nil
			})
			if rec, _ := f.db.Get(ctx, gen.ID); res.Disposition != enroll.Issued || rec.State != store.StateMarried {
				t.Fatalf("%+v; record %s", res, rec.State)
			}
		})
	}
	if txt, err := b.TXT("_acme-challenge.udp.example.test"); err != nil || len(txt) != 0 {
		t.Errorf("challenge record left behind: %v %v", txt, err)
	}
}

// TestEnrollChallengeFails: an http-01 challenge the CA cannot validate
// (nothing listens on the responder's address yet) fails the enrollment
// with the CA's problem detail naming the identifier; the key stays
// pending, the order is closed as failed, and once the responder listens
// the same CSR enrolls.
func TestEnrollChallengeFails(t *testing.T) {
	requireServers(t)
	ctx := context.Background()
	b := fixture.StartBind(t, "example.test", map[string]string{"retry": "127.0.0.1"})
	httpPort := fixture.FreePort(t)
	p := fixture.StartPebble(t, fixture.PebbleOptions{HTTPPort: httpPort, DNSServer: b.Addr})
	f := newFixture(t)
	ca := pebbleCA(t, p, "pebble")
	listen := fmt.Sprintf("127.0.0.1:%d", httpPort)
	ca.ACME.Challenge, ca.ACME.HTTP01Listen = config.ChallengeHTTP01, listen
	s := f.service(t, time.Minute, ca)
	gen := f.generate(t, "retry.example.test")

	_, err := s.Enroll(ctx, enroll.Request{CSR: gen.CSRPEM})
	var ce *acmeca.Error
	if !errors.As(err, &ce) || !errors.Is(err, acmeca.ErrRefused) || !contains(ce.Detail, "retry.example.test") {
		t.Fatalf("challenge nobody answers: %v, want the CA's refusal naming the identifier", err)
	}
	if rec, _ := f.db.Get(ctx, gen.ID); rec.State != store.StatePending {
		t.Fatalf("after the failed challenge the key is %s", rec.State)
	}
	if o, _ := f.db.LatestOrder(ctx, gen.ID); o == nil || o.State != store.OrderFailed || !contains(o.Error, "retry.example.test") {
		t.Fatalf("failed order %+v", o)
	}

	runLoop(t, s) // starts the responder's listener
	waitFor(t, 10*time.Second, "the responder to listen", func() bool {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	res, err := s.Enroll(ctx, enroll.Request{CSR: gen.CSRPEM})
	if err != nil || res.Disposition != enroll.Issued {
		t.Fatalf("retry with the responder listening: %+v, %v", res, err)
	}
}

func dns01(b *fixture.Bind, transport string) *config.DNS01 {
	return &config.DNS01{Server: b.Addr, Zone: b.Zone, TSIGName: b.TSIGName, TSIGAlgorithm: b.TSIGAlgorithm,
		TSIGSecretFile: b.TSIGSecretFile, Transport: transport}
}
