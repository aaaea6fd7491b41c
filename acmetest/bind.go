package acmetest

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Bind is a running bind9 (named) that is primary for one zone and takes
// RFC 2136 updates signed with its TSIG key.
type Bind struct {
	// Addr is where named answers, on UDP and TCP (127.0.0.1:port).
	Addr string
	// Zone is the zone's name, fully qualified ("example.test.").
	Zone string
	// TSIGName and TSIGAlgorithm name the key updates must be signed with;
	// TSIGSecretFile holds its secret (base64, mode 0600).
	TSIGName, TSIGAlgorithm, TSIGSecretFile string
	log                                     *syncBuffer
}

// namedPath is Debian's bind9 daemon (make deps installs the package).
const namedPath = "/usr/sbin/named"

// StartBind starts named as primary for zone with the given A records
// (name relative to the zone → IPv4 address) in a directory of t's, and
// stops it when t ends. named runs unconfined: where AppArmor enforces
// Debian's profile for it, that profile would confine it to /etc/bind and
// /var/{lib,cache}/bind and it could not read the test's files.
func StartBind(t testing.TB, zone string, a map[string]string) *Bind {
	t.Helper()
	if _, err := os.Stat(namedPath); err != nil {
		t.Fatalf("acmetest: bind9 is not installed (make deps installs it): %v", err)
	}
	dir := t.TempDir()
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	b := &Bind{
		Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), Zone: dns.Fqdn(zone),
		TSIGName: "csrd-test.", TSIGAlgorithm: "hmac-sha256",
		TSIGSecretFile: filepath.Join(dir, "tsig.secret"), log: &syncBuffer{},
	}
	b64 := base64.StdEncoding.EncodeToString(secret)
	if err := os.WriteFile(b.TSIGSecretFile, []byte(b64+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf, err := b.writeFiles(dir, b64, a)
	if err != nil {
		t.Fatal(err)
	}
	cmd := unconfined(namedPath, "-g", "-4", "-c", conf)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, b.log, b.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("acmetest: start named: %v", err)
	}
	t.Cleanup(func() { stop(cmd) })
	if err := b.waitServing(15 * time.Second); err != nil {
		t.Fatalf("acmetest: named did not answer: %v\n%s", err, b.log.String())
	}
	return b
}

// Log returns what named has printed so far.
func (b *Bind) Log() string { return b.log.String() }

// TXT asks named (over TCP, as Pebble does) for the TXT records at name.
func (b *Bind) TXT(name string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	r, _, err := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(m, b.Addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out, nil
}

func (b *Bind) writeFiles(dir, secret string, a map[string]string) (string, error) {
	_, port, _ := strings.Cut(b.Addr, ":")
	zoneFile := filepath.Join(dir, "zone.db")
	conf := fmt.Sprintf(`options {
	directory %[1]q;
	pid-file %[2]q;
	session-keyfile %[3]q;
	managed-keys-directory %[1]q;
	listen-on port %[4]s { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
	allow-query { any; };
};
controls { };
key %[5]q { algorithm %[6]s; secret %[7]q; };
zone %[8]q {
	type primary;
	file %[9]q;
	journal %[10]q;
	allow-update { key %[5]q; };
};
`, dir, filepath.Join(dir, "named.pid"), filepath.Join(dir, "session.key"), port,
		b.TSIGName, b.TSIGAlgorithm, secret, b.Zone, zoneFile, zoneFile+".jnl")
	var zone strings.Builder
	fmt.Fprintf(&zone, "$TTL 60\n@ IN SOA ns.%[1]s hostmaster.%[1]s 1 60 60 600 60\n@ IN NS ns.%[1]s\nns IN A 127.0.0.1\n", b.Zone)
	names := make([]string, 0, len(a))
	for n := range a {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&zone, "%s IN A %s\n", n, a[n])
	}
	path := filepath.Join(dir, "named.conf")
	if err := os.WriteFile(zoneFile, []byte(zone.String()), 0o600); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

// waitServing waits until named answers the zone's SOA on UDP and on TCP.
func (b *Bind) waitServing(d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		last = nil
		for _, network := range []string{"udp", "tcp"} {
			m := new(dns.Msg)
			m.SetQuestion(b.Zone, dns.TypeSOA)
			r, _, err := (&dns.Client{Net: network, Timeout: time.Second}).Exchange(m, b.Addr)
			if err == nil && (r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0) {
				err = fmt.Errorf("%s: %s, %d answers", network, dns.RcodeToString[r.Rcode], len(r.Answer))
			}
			if err != nil {
				last = err
			}
		}
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// unconfined returns the command to run path outside any AppArmor profile
// that would otherwise attach to it (aa-exec -p unconfined), or path itself
// where AppArmor enforces nothing for it.
func unconfined(path string, args ...string) *exec.Cmd {
	profiles, err := os.ReadFile("/sys/kernel/security/apparmor/profiles")
	if err != nil || !strings.Contains(string(profiles), path+" (enforce)") && !strings.Contains(string(profiles), "named (enforce)") {
		return exec.Command(path, args...)
	}
	return exec.Command("aa-exec", append([]string{"-p", "unconfined", "--", path}, args...)...)
}
