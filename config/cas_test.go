package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoadCAs reads the example cas: entry with every key.
func TestLoadCAs(t *testing.T) {
	p := write(t, "csrd.yaml", `
hsm: {token_label: t}
cas:
  - name: internal-acme
    acme:
      directory: https://ca.example.net/acme/directory
      roots_file: /etc/csrd/acme-roots.pem
      chain_roots_file: /etc/csrd/ca-roots.pem
      contact: [mailto:pki@example.net]
      eab: {kid: KID, hmac_file: /etc/csrd/eab-hmac}
      challenge: dns-01
      dns01: {server: 192.0.2.53:53, zone: example.net., tsig_name: csrd., tsig_algorithm: hmac-sha256, tsig_secret_file: /etc/csrd/tsig}
    renew_before: 720h
    retire_after_expiry: 168h
    revoke_on_retire: true
    deploy_hook: /usr/local/bin/reload-web
  - name: web
    acme: {directory: https://acme.example.org/dir, challenge: http-01, http01_listen: 0.0.0.0:80}
`, 0o600)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ca, ok := c.FindCA(`ca01.example.net\INTERNAL-ACME`)
	if !ok {
		t.Fatal("FindCA with Keyfactor's host\\name form found nothing")
	}
	if ca.ACME.EAB == nil || ca.ACME.EAB.KID != "KID" || ca.ACME.DNS01 == nil || ca.ACME.DNS01.Zone != "example.net." ||
		ca.RenewBefore != 720*time.Hour || ca.RetireAfter() != 168*time.Hour || !ca.RevokeOnRetire ||
		ca.DeployHook != "/usr/local/bin/reload-web" || ca.ACME.ChallengeType() != ChallengeDNS01 {
		t.Errorf("loaded %+v", ca)
	}
	web, _ := c.FindCA("web")
	if web.RetireAfter() != DefaultRetireAfterExpiry || web.ACME.HTTP01Listen != "0.0.0.0:80" {
		t.Errorf("defaults: %+v", web)
	}
	if _, ok := c.FindCA("other"); ok {
		t.Error("FindCA found an unknown CA")
	}
}

func TestValidateCAs(t *testing.T) {
	ok := func() CA {
		return CA{Name: "ca", ACME: ACME{Directory: "https://ca.example/dir"}}
	}
	neg := -time.Hour
	cases := []struct {
		name    string
		mutate  func(*CA)
		wantErr string
	}{
		{"valid, challenge none by default", func(*CA) {}, ""},
		{"no name", func(c *CA) { c.Name = "" }, "name"},
		{"name with a space", func(c *CA) { c.Name = "my ca" }, "name"},
		{"http directory", func(c *CA) { c.ACME.Directory = "http://ca.example/dir" }, "https"},
		{"no directory", func(c *CA) { c.ACME.Directory = "" }, "acme.directory"},
		{"contact not mailto", func(c *CA) { c.ACME.Contact = []string{"pki@example.net"} }, "mailto"},
		{"eab without file", func(c *CA) { c.ACME.EAB = &EAB{KID: "k"} }, "hmac_file"},
		{"unknown challenge", func(c *CA) { c.ACME.Challenge = "tls-alpn-01" }, "acme.challenge"},
		{"http-01 without listener", func(c *CA) { c.ACME.Challenge = ChallengeHTTP01 }, "http01_listen"},
		{"dns-01 without dns01", func(c *CA) { c.ACME.Challenge = ChallengeDNS01 }, "acme.dns01"},
		{"dns-01 unsigned", func(c *CA) {
			c.ACME.Challenge, c.ACME.DNS01 = ChallengeDNS01, &DNS01{Server: "127.0.0.1:53", Zone: "example."}
		}, "tsig"},
		{"dns-01 md5", func(c *CA) {
			c.ACME.Challenge = ChallengeDNS01
			c.ACME.DNS01 = &DNS01{Server: "127.0.0.1:53", Zone: "example.", TSIGName: "k.", TSIGSecretFile: "/s", TSIGAlgorithm: "hmac-md5"}
		}, "tsig_algorithm"},
		{"negative renew_before", func(c *CA) { c.RenewBefore = -time.Hour }, "renew_before"},
		{"negative retire", func(c *CA) { c.RetireAfterExpiry = &neg }, "retire_after_expiry"},
		{"relative hook", func(c *CA) { c.DeployHook = "reload.sh" }, "deploy_hook"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Defaults()
			c.HSM.TokenLabel = "t"
			ca := ok()
			tc.mutate(&ca)
			c.CAs = []CA{ca}
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
	t.Run("duplicate names", func(t *testing.T) {
		c := Defaults()
		c.HSM.TokenLabel = "t"
		a, b := ok(), ok()
		b.Name = "CA"
		c.CAs = []CA{a, b}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "twice") {
			t.Fatalf("error %v, want a duplicate name", err)
		}
	})
}

func TestReadSecrets(t *testing.T) {
	dir := t.TempDir()
	put := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Pebble's and most CAs' EAB keys are base64url without padding.
	key, err := ReadEABKey(put("eab", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W\n", 0o600))
	if err != nil || len(key) != 48 {
		t.Fatalf("ReadEABKey: %d bytes, %v", len(key), err)
	}
	if _, err := ReadEABKey(put("open", "c2VjcmV0", 0o644)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable key file: %v", err)
	}
	if _, err := ReadEABKey(put("junk", "not base64 !!", 0o600)); err == nil || strings.Contains(err.Error(), "not base64 !!") {
		t.Errorf("junk: %v (the error must not repeat the file's content)", err)
	}
	s, err := ReadTSIGSecret(put("tsig", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", 0o600))
	if err != nil || s != "c2VjcmV0LXNlY3JldC1zZWNyZXQ=" {
		t.Fatalf("ReadTSIGSecret = %q, %v", s, err)
	}
}
