package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	cases := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "token pool", yaml: `
hsm:
  tokens:
    - token_label: csrd-a
    - token_label: csrd-b
      pin_file: /etc/csrd/b-pin
`, check: func(t *testing.T, c Config) {
			if len(c.HSM.Tokens) != 2 || c.HSM.Tokens[0].TokenLabel != "csrd-a" || c.HSM.Tokens[1].PINFile != "/etc/csrd/b-pin" {
				t.Errorf("hsm.tokens = %+v", c.HSM.Tokens)
			}
		}},
		{name: "require_sign_only: default true, per pool token", yaml: `
hsm:
  require_sign_only: false
  tokens:
    - token_label: csrd-a
    - token_label: csrd-tpm
      require_sign_only: true
`, check: func(t *testing.T, c Config) {
			ts := c.HSM.TokenList()
			if c.HSM.SignOnly(ts[0]) || !c.HSM.SignOnly(ts[1]) {
				t.Errorf("sign-only %v, %v; want false (hsm's), true (the token's)", c.HSM.SignOnly(ts[0]), c.HSM.SignOnly(ts[1]))
			}
			if !Defaults().HSM.RequireSignOnly {
				t.Error("hsm.require_sign_only does not default to true")
			}
		}},
		{name: "keys_per_login: default the profile's, per pool token", yaml: `
hsm:
  keys_per_login: -1
  tokens:
    - token_label: csrd-a
    - token_label: csrd-tpm
      keys_per_login: 4
`, check: func(t *testing.T, c Config) {
			ts := c.HSM.TokenList()
			if c.HSM.LoginKeys(ts[0]) != -1 || c.HSM.LoginKeys(ts[1]) != 4 || Defaults().HSM.KeysPerLogin != 0 {
				t.Errorf("keys per login %d, %d, default %d; want -1 (hsm's), 4 (the token's), 0", c.HSM.LoginKeys(ts[0]), c.HSM.LoginKeys(ts[1]), Defaults().HSM.KeysPerLogin)
			}
		}},
		{name: "empty file is all defaults", yaml: "", check: func(t *testing.T, c Config) {
			if c.Listen != "127.0.0.1:8080" || c.BasePath != "/KeyfactorAPI" || c.HSM.MaxSessions != 64 {
				t.Errorf("defaults not applied: %+v", c)
			}
		}},
		{name: "issue example", yaml: `
listen: 127.0.0.1:9090
base_path: /KeyfactorApi
hsm:
  module: /usr/lib/softhsm/libsofthsm2.so
  token_label: csrd-dev
  pin_file: .dev/hsm-pin
  max_sessions: 4
database: .dev/csrd.db
log_level: debug
shutdown_timeout: 5s
`, check: func(t *testing.T, c Config) {
			if c.Listen != "127.0.0.1:9090" || c.HSM.TokenLabel != "csrd-dev" || c.HSM.MaxSessions != 4 ||
				c.LogLevel != "debug" || c.ShutdownTimeout != 5*time.Second || c.HSM.SessionWaitTimeout != 30*time.Second {
				t.Errorf("not loaded: %+v", c)
			}
		}},
		{name: "unknown key refused", yaml: "listn: 127.0.0.1:1\n", wantErr: "listn"},
		{name: "per-identity generation cap", yaml: "limits:\n  max_generations_per_identity: 3\n", check: func(t *testing.T, c Config) {
			if c.Limits.MaxGenerationsPerIdentity != 3 || c.Limits.GenerationWait != Defaults().Limits.GenerationWait {
				t.Errorf("limits %+v", c.Limits)
			}
		}},
		{name: "pin in the file is refused", yaml: "hsm:\n  pin: 1234\n", wantErr: "pin"},
		{name: "wrong type names the line", yaml: "hsm:\n  max_sessions: many\n", wantErr: "line 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(write(t, "c.yaml", tc.yaml, 0o600))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestValidate(t *testing.T) {
	valid := func() Config {
		c := Defaults()
		c.HSM.TokenLabel = "t"
		return c
	}
	cases := []struct {
		name    string
		mutate  func(c *Config)
		wantErr string
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "ipv6 loopback", mutate: func(c *Config) { c.Listen = "[::1]:8080" }},
		{name: "localhost", mutate: func(c *Config) { c.Listen = "localhost:8080" }},
		{name: "public address", mutate: func(c *Config) { c.Listen = "0.0.0.0:8080" }, wantErr: "loopback"},
		{name: "no port", mutate: func(c *Config) { c.Listen = "127.0.0.1" }, wantErr: "listen"},
		{name: "base path without slash", mutate: func(c *Config) { c.BasePath = "KeyfactorAPI" }, wantErr: "base_path"},
		{name: "base path trailing slash", mutate: func(c *Config) { c.BasePath = "/KeyfactorAPI/" }, wantErr: "base_path"},
		{name: "no token", mutate: func(c *Config) { c.HSM.TokenLabel = "" }, wantErr: "token_label"},
		{name: "one session", mutate: func(c *Config) { c.HSM.MaxSessions = 1 }, wantErr: "max_sessions"},
		{name: "memory database", mutate: func(c *Config) { c.Database = ":memory:" }, wantErr: "database"},
		{name: "bad log level", mutate: func(c *Config) { c.LogLevel = "loud" }, wantErr: "log_level"},
		{name: "public address with TLS", mutate: func(c *Config) {
			c.Listen, c.TLS.CertFile, c.TLS.KeyFile = "0.0.0.0:8443", "/etc/csrd/tls.crt", "pkcs11:object=tls"
		}},
		{name: "TLS cert without key", mutate: func(c *Config) { c.TLS.CertFile = "/etc/csrd/tls.crt" }, wantErr: "together"},
		{name: "mTLS without TLS", mutate: func(c *Config) { c.TLS.ClientCAFile = "/etc/csrd/ca.pem" }, wantErr: "client_ca_file"},
		{name: "negative generations", mutate: func(c *Config) { c.Limits.MaxGenerations = -1 }, wantErr: "max_generations"},
		{name: "no generation wait", mutate: func(c *Config) { c.Limits.GenerationWait = 0 }, wantErr: "generation_wait"},
		{name: "generations per identity", mutate: func(c *Config) { c.Limits.MaxGenerationsPerIdentity = 2 }},
		{name: "negative generations per identity", mutate: func(c *Config) { c.Limits.MaxGenerationsPerIdentity = -1 }, wantErr: "max_generations_per_identity"},
		{name: "generations per identity without identities", mutate: func(c *Config) {
			c.Auth.Mode, c.Limits.MaxGenerationsPerIdentity = AuthNone, 2
		}, wantErr: "max_generations_per_identity: needs auth.mode file"},
		{name: "no health interval", mutate: func(c *Config) { c.HSM.HealthInterval = 0 }, wantErr: "health_interval"},
		{name: "auth none on loopback", mutate: func(c *Config) { c.Auth.Mode = AuthNone }},
		{name: "auth none off loopback", mutate: func(c *Config) { c.Auth.Mode = AuthNone; c.Listen = "192.0.2.1:8443" }, wantErr: "auth.mode none"},
		{name: "auth file missing", mutate: func(c *Config) { c.Auth.File = "" }, wantErr: "auth.file"},
		{name: "auth mode unknown", mutate: func(c *Config) { c.Auth.Mode = "ldap" }, wantErr: "auth.mode"},
		{name: "throttle without lockout", mutate: func(c *Config) { c.Auth.Lockout = 0 }, wantErr: "auth.lockout"},
		{name: "trusted proxies", mutate: func(c *Config) { c.TrustedProxies = []string{"127.0.0.1", "10.0.0.0/8", "::1"} }},
		{name: "trusted proxy not an address", mutate: func(c *Config) { c.TrustedProxies = []string{"proxy.local"} }, wantErr: "trusted_proxies"},
		{name: "throttle off", mutate: func(c *Config) { c.Auth.FailureLimit = 0; c.Auth.Lockout = 0 }},
		{name: "no verification queue", mutate: func(c *Config) { c.Auth.VerifyQueue = 0 }, wantErr: "auth.verify_queue"},
		{name: "huge verification queue", mutate: func(c *Config) { c.Auth.VerifyQueue = 1 << 20 }, wantErr: "auth.verify_queue"},
		{name: "no verifications per source", mutate: func(c *Config) { c.Auth.VerifyPerSource = 0 }, wantErr: "auth.verify_per_source"},
		{name: "verification limits", mutate: func(c *Config) { c.Auth.VerifyQueue, c.Auth.VerifyPerSource = 64, 4 }},
		{name: "all errors together", mutate: func(c *Config) { c.LogLevel = "loud"; c.HSM.TokenLabel = "" }, wantErr: "token_label"},
		{name: "pool", mutate: func(c *Config) {
			c.HSM.TokenLabel = ""
			c.HSM.Tokens = []Token{{TokenLabel: "a"}, {TokenLabel: "b", PINFile: "/etc/csrd/b-pin"}}
		}},
		{name: "pool and single token", mutate: func(c *Config) { c.HSM.Tokens = []Token{{TokenLabel: "a"}} }, wantErr: "not both"},
		{name: "pool token without label", mutate: func(c *Config) {
			c.HSM.TokenLabel = ""
			c.HSM.Tokens = []Token{{TokenLabel: "a"}, {PINFile: "/p"}}
		}, wantErr: "hsm.tokens[1].token_label: required"},
		{name: "pool token twice", mutate: func(c *Config) {
			c.HSM.TokenLabel = ""
			c.HSM.Tokens = []Token{{TokenLabel: "a"}, {TokenLabel: "a"}}
		}, wantErr: "listed twice"},
		{name: "pool without any PIN file", mutate: func(c *Config) {
			c.HSM.TokenLabel, c.HSM.PINFile = "", ""
			c.HSM.Tokens = []Token{{TokenLabel: "a", PINFile: "/p"}, {TokenLabel: "b"}}
		}, wantErr: "hsm.pin_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}

func TestGenerationSlots(t *testing.T) {
	for _, tc := range []struct{ sessions, max, want int }{{8, 0, 7}, {2, 0, 1}, {8, 3, 3}, {8, 20, 20}} {
		c := Defaults()
		c.HSM.MaxSessions, c.Limits.MaxGenerations = tc.sessions, tc.max
		if got := c.GenerationSlots(); got != tc.want {
			t.Errorf("sessions %d max %d: %d slots, want %d", tc.sessions, tc.max, got, tc.want)
		}
	}
}

func TestGenerationSlotsPool(t *testing.T) {
	c := Defaults()
	c.HSM.MaxSessions = 8
	c.HSM.Tokens = []Token{{TokenLabel: "a"}, {TokenLabel: "b"}}
	if got := c.GenerationSlots(); got != 14 {
		t.Errorf("two tokens of 8 sessions: %d slots, want 14", got)
	}
}

func TestTokenList(t *testing.T) {
	single := HSM{TokenLabel: "one", PINFile: "/p"}
	if got := single.TokenList(); len(got) != 1 || got[0] != (Token{TokenLabel: "one"}) {
		t.Errorf("single token: %+v", got)
	}
	pool := HSM{Tokens: []Token{{TokenLabel: "a"}, {TokenLabel: "b", PINFile: "/b"}}}
	if got := pool.TokenList(); len(got) != 2 || got[1].PINFile != "/b" {
		t.Errorf("pool: %+v", got)
	}
	cfg := Defaults()
	cfg.HSM.PINFile = write(t, "default-pin", "1111\n", 0o600)
	own := write(t, "b-pin", "2222", 0o600)
	for _, tc := range []struct {
		tok  Token
		want string
	}{{Token{TokenLabel: "a"}, "1111"}, {Token{TokenLabel: "b", PINFile: own}, "2222"}} {
		if pin, err := cfg.ReadTokenPIN(tc.tok); err != nil || pin != tc.want {
			t.Errorf("ReadTokenPIN(%+v) = %q, %v; want %q", tc.tok, pin, err, tc.want)
		}
	}
}

func TestReadPIN(t *testing.T) {
	t.Run("trims newline", func(t *testing.T) {
		c := Defaults()
		c.HSM.PINFile = write(t, "pin", "s3cret\n", 0o600)
		pin, err := c.ReadPIN()
		if err != nil || pin != "s3cret" {
			t.Fatalf("pin %q err %v", pin, err)
		}
	})
	t.Run("world readable refused without leaking", func(t *testing.T) {
		c := Defaults()
		c.HSM.PINFile = write(t, "pin", "s3cret", 0o644)
		_, err := c.ReadPIN()
		if err == nil || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("empty refused", func(t *testing.T) {
		c := Defaults()
		c.HSM.PINFile = write(t, "pin", "\n", 0o600)
		if _, err := c.ReadPIN(); err == nil {
			t.Fatal("empty PIN accepted")
		}
	})
	t.Run("missing file", func(t *testing.T) {
		c := Defaults()
		c.HSM.PINFile = filepath.Join(t.TempDir(), "nope")
		if _, err := c.ReadPIN(); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("systemd credential wins", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "hsm-pin"), []byte("fromcred"), 0o400); err != nil {
			t.Fatal(err)
		}
		t.Setenv("CREDENTIALS_DIRECTORY", dir)
		c := Defaults()
		c.HSM.PINFile = write(t, "pin", "fromfile", 0o600)
		pin, err := c.ReadPIN()
		if err != nil || pin != "fromcred" {
			t.Fatalf("pin %q err %v", pin, err)
		}
	})
}

func TestDatabasePassword(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "db-password")
	if err := os.WriteFile(pwFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(credentialsEnv, "")
	tests := []struct {
		name, database, file string
		want, wantErr        string
	}{
		{"postgres with a file", "postgres://csrd@127.0.0.1/csrd", pwFile, "s3cret", ""},
		{"postgresql scheme", "postgresql://csrd@127.0.0.1/csrd", pwFile, "s3cret", ""},
		{"postgres without a file (PGPASSFILE)", "postgres://csrd@127.0.0.1/csrd", "", "", ""},
		{"readable by others", "postgres://csrd@127.0.0.1/csrd", loose, "", "readable by group or others"},
		{"missing", "postgres://csrd@127.0.0.1/csrd", filepath.Join(dir, "nope"), "", "database password file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			c.Database, c.DatabasePasswordFile = tt.database, tt.file
			got, err := c.ReadDatabasePassword()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Fatalf("the error shows the password: %v", err)
			case got != tt.want:
				t.Fatalf("password %q, want %q", got, tt.want)
			}
		})
	}
	c := Defaults()
	c.HSM.TokenLabel, c.DatabasePasswordFile = "t", pwFile
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "database_password_file: only for a PostgreSQL database") {
		t.Errorf("Validate with a password file for SQLite: %v", err)
	}
	c.Database = "postgres://csrd@127.0.0.1/csrd"
	if err := c.Validate(); err != nil {
		t.Errorf("Validate with PostgreSQL: %v", err)
	}
}

func TestClusterConfig(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *Config)
		wantErr string
		advert  string
	}{
		{"defaults", func(c *Config) {}, "", "http://127.0.0.1:8080"},
		{"listen on all addresses with TLS", func(c *Config) {
			c.Listen, c.TLS.CertFile, c.TLS.KeyFile = "0.0.0.0:8443", "c", "k"
		}, "", "https://127.0.0.1:8443"},
		{"advertised https", func(c *Config) {
			c.Listen, c.TLS.CertFile, c.TLS.KeyFile = "0.0.0.0:8443", "c", "k"
			c.Cluster.AdvertiseURL = "https://csrd-a.example.com:8443/"
		}, "", "https://csrd-a.example.com:8443"},
		{"plain http off the machine", func(c *Config) { c.Cluster.AdvertiseURL = "http://10.0.0.5:8080" }, "plain http only on a loopback address", ""},
		{"https without TLS", func(c *Config) { c.Cluster.AdvertiseURL = "https://127.0.0.1:8080" }, "https needs tls.cert_file", ""},
		{"a path", func(c *Config) { c.Cluster.AdvertiseURL = "http://127.0.0.1:8080/api" }, "scheme://host:port and nothing else", ""},
		{"timeout too short", func(c *Config) { c.Cluster.NodeTimeout = 6 * time.Second }, "at least twice cluster.heartbeat_interval", ""},
		{"node name with a space", func(c *Config) { c.Cluster.NodeName = "node a" }, "no spaces", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults()
			c.HSM.TokenLabel = "t"
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate = %v, want %q", err, tt.wantErr)
			case tt.wantErr == "" && c.Advertise() != tt.advert:
				t.Errorf("Advertise() = %q, want %q", c.Advertise(), tt.advert)
			}
		})
	}
	c := Defaults()
	if n, err := c.Node(); err != nil || n == "" {
		t.Errorf("default node name %q, %v; want the host name", n, err)
	}
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Cluster.SecretFile = short
	t.Setenv(credentialsEnv, "")
	if _, err := c.ReadClusterSecret(); err == nil || !strings.Contains(err.Error(), "shorter than 16") {
		t.Errorf("short secret: %v", err)
	}
}
