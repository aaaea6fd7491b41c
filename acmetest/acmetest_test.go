package acmetest

import (
	"io"
	"strings"
	"testing"
)

// TestServersStart starts each server and checks it serves: Pebble its
// directory with the ARI endpoint, named the zone over UDP and TCP.
func TestServersStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Pebble and bind9")
	}
	b := StartBind(t, "example.test", map[string]string{"www": "127.0.0.1"})
	p := StartPebble(t, PebbleOptions{DNSServer: b.Addr})
	res, err := p.client.Get(p.Directory)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	buf := new(strings.Builder)
	_, _ = io.Copy(buf, res.Body)
	if !strings.Contains(buf.String(), "renewalInfo") || !strings.Contains(buf.String(), "newOrder") {
		t.Errorf("directory without newOrder and renewalInfo:\n%s", buf)
	}
	if roots := p.ChainRoots(t); !strings.Contains(string(roots), "BEGIN CERTIFICATE") {
		t.Errorf("chain roots: %q", roots)
	}
	if txt, err := b.TXT("_acme-challenge.www.example.test"); err != nil || len(txt) != 0 {
		t.Errorf("TXT before any update: %v, %v", txt, err)
	}
}
