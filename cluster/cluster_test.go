package cluster

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/store"
)

func TestSignVerify(t *testing.T) {
	secret := []byte("0123456789abcdef-shared")
	now := time.Unix(1_700_000_000, 0)
	id := auth.Identity{Name: `CORP\alice`, Method: auth.MethodBasic,
		Grants: auth.Grants{Operations: []auth.Operation{auth.OpPendingDelete}, Templates: []string{"Web"}}}
	body := []byte(`[1,2,3]`)
	signed := func() *httptestReq {
		r := httptest.NewRequest("DELETE", "/keyfactorapi/csrgeneration/pending?x=1", strings.NewReader(string(body)))
		if err := sign(r, secret, "node-a", body, id, "192.0.2.7", now); err != nil {
			t.Fatal(err)
		}
		return &httptestReq{r}
	}
	r := signed()
	got, client, node, err := Verify(r.Request, secret, body, now.Add(30*time.Second))
	if err != nil || got.Name != id.Name || !got.Grants.Allows(auth.OpPendingDelete) || got.Grants.Templates[0] != "Web" ||
		client != "192.0.2.7" || node != "node-a" {
		t.Fatalf("Verify = %+v %q %q %v", got, client, node, err)
	}
	tests := []struct {
		name   string
		change func(r *httptestReq) ([]byte, []byte, time.Time)
	}{
		{"another body", func(r *httptestReq) ([]byte, []byte, time.Time) { return secret, []byte(`[4]`), now }},
		{"another secret", func(r *httptestReq) ([]byte, []byte, time.Time) { return []byte("not the secret!!"), body, now }},
		{"no secret here", func(r *httptestReq) ([]byte, []byte, time.Time) { return nil, body, now }},
		{"too old", func(r *httptestReq) ([]byte, []byte, time.Time) { return secret, body, now.Add(2 * time.Minute) }},
		{"another identity", func(r *httptestReq) ([]byte, []byte, time.Time) {
			r.Header.Set(HeaderIdentity, "eyJOYW1lIjoibWFsbG9yeSJ9")
			return secret, body, now
		}},
		{"another client", func(r *httptestReq) ([]byte, []byte, time.Time) {
			r.Header.Set(HeaderClient, "203.0.113.9")
			return secret, body, now
		}},
		{"another path", func(r *httptestReq) ([]byte, []byte, time.Time) {
			r.URL.RawQuery = "x=2"
			return secret, body, now
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := signed()
			sec, b, at := tt.change(r)
			if _, _, _, err := Verify(r.Request, sec, b, at); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
}

type httptestReq struct{ *http.Request }

// fakeDir is a registry in memory.
type fakeDir struct{ nodes []store.Node }

func (f *fakeDir) RegisterNode(_ context.Context, n store.Node, _ time.Duration) error {
	f.nodes = append(f.nodes, n)
	return nil
}
func (f *fakeDir) Heartbeat(context.Context, string, string, []store.NodeToken) error { return nil }
func (f *fakeDir) ListNodes(context.Context) ([]store.Node, error)                    { return f.nodes, nil }

func TestPeersAndLeases(t *testing.T) {
	now := time.Now().UTC()
	dir := &fakeDir{nodes: []store.Node{
		{Name: "a", Heartbeat: now, Tokens: []store.NodeToken{{Label: "tok-a", Serial: "01"}, {Label: "shared", Serial: "99"}}},
		{Name: "b", Heartbeat: now.Add(-2 * time.Second), Tokens: []store.NodeToken{{Label: "tok-b", Serial: "02"}, {Label: "shared", Serial: "99"}}},
		{Name: "c", Heartbeat: now.Add(-time.Second), Tokens: []store.NodeToken{{Label: "shared", Serial: "99"}}},
		{Name: "dead", Heartbeat: now.Add(-time.Minute), Tokens: []store.NodeToken{{Label: "tok-d", Serial: "04"}, {Label: "shared", Serial: "99"}}},
	}}
	reg := NewRegistry(dir, Options{Name: "a", Interval: time.Second, Timeout: 20 * time.Second,
		Tokens: func() []store.NodeToken { return nil }, Log: zerolog.Nop()})
	ctx := context.Background()
	names := func(ns []store.Node) (out []string) {
		for _, n := range ns {
			out = append(out, n.Name)
		}
		return strings.Fields(strings.Join(out, " "))
	}
	for _, tt := range []struct {
		label, serial, want string
	}{
		{"shared", "99", "c b"}, // live, not self, freshest first
		{"tok-b", "02", "b"},
		{"tok-b", "", "b"},
		{"tok-a", "01", ""}, // only this node
		{"tok-d", "04", ""}, // only a dead node
		{"tok-b", "77", ""}, // the label's token, but another serial
	} {
		peers, err := reg.Peers(ctx, tt.label, tt.serial)
		if got := strings.Join(names(peers), " "); err != nil || got != tt.want {
			t.Errorf("Peers(%s, %s) = %q, %v; want %q", tt.label, tt.serial, got, err, tt.want)
		}
	}
	for node, want := range map[string]bool{"a": false, "b": true, "dead": false, "": false, "unknown": false} {
		if got, err := reg.HeldElsewhere(ctx, node); err != nil || got != want {
			t.Errorf("HeldElsewhere(%q) = %v, %v; want %v", node, got, err, want)
		}
	}
}

// TestSoleRegistration: on a database no other node can share, csrd
// restarted on another address within the node timeout takes its row
// over; a fleet node in that case is refused (two nodes, one name).
func TestSoleRegistration(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "csrd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := func(url string, sole bool) *Registry {
		return NewRegistry(db, Options{Name: "n", URL: url, Interval: time.Second, Timeout: time.Minute, Sole: sole,
			Tokens: func() []store.NodeToken { return nil }, Log: zerolog.Nop()})
	}
	if err := reg("http://127.0.0.1:1", false).Register(ctx); err != nil {
		t.Fatal(err)
	}
	var inUse *store.NodeInUseError
	if err := reg("http://127.0.0.1:2", false).Register(ctx); !errors.As(err, &inUse) {
		t.Errorf("a fleet node on a live node's name: %v, want *store.NodeInUseError", err)
	}
	if err := reg("http://127.0.0.1:3", true).Register(ctx); err != nil {
		t.Errorf("a sole node restarted on another address: %v", err)
	}
}
