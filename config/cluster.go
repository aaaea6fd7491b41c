package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// validate checks the node's name, heartbeat and advertised URL.
func (c Cluster) validate(p *problems, tls bool) {
	add := p.add
	if c.HeartbeatInterval <= 0 {
		add("cluster.heartbeat_interval: must be positive")
	}
	if c.NodeTimeout < 2*c.HeartbeatInterval {
		add("cluster.node_timeout %v: must be at least twice cluster.heartbeat_interval (%v)", c.NodeTimeout, c.HeartbeatInterval)
	}
	if len(c.NodeName) > 64 || strings.ContainsAny(c.NodeName, " \t\r\n/") {
		add("cluster.node_name %q: at most 64 characters, no spaces or slashes", c.NodeName)
	}
	if c.AdvertiseURL == "" {
		return
	}
	u, err := url.Parse(c.AdvertiseURL)
	switch {
	case err != nil || u.Host == "" || u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil:
		add("cluster.advertise_url %q: want scheme://host:port and nothing else", c.AdvertiseURL)
	case u.Scheme == "https" && !tls:
		add("cluster.advertise_url %q: https needs tls.cert_file and tls.key_file", c.AdvertiseURL)
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		// Forwarded requests carry what the client was allowed to do:
		// in plaintext only on the machine itself.
		add("cluster.advertise_url %q: plain http only on a loopback address; serve TLS and advertise https", c.AdvertiseURL)
	case u.Scheme != "http" && u.Scheme != "https":
		add("cluster.advertise_url %q: scheme must be http or https", c.AdvertiseURL)
	}
}

// Node returns the node name: cluster.node_name, or the host name.
func (c *Config) Node() (string, error) {
	if c.Cluster.NodeName != "" {
		return c.Cluster.NodeName, nil
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "", fmt.Errorf("config: cluster.node_name is not set and the host name is unknown: %v", err)
	}
	return h, nil
}

// Advertise returns cluster.advertise_url, or the URL of listen (whose
// unspecified address, 0.0.0.0 or ::, becomes the loopback one).
func (c *Config) Advertise() string {
	if c.Cluster.AdvertiseURL != "" {
		return strings.TrimRight(c.Cluster.AdvertiseURL, "/")
	}
	scheme := "http"
	if c.TLS.Enabled() {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return scheme + "://" + c.Listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// ReadClusterSecret returns the nodes' shared secret from
// cluster.secret_file (the systemd credential cluster-secret wins), or ""
// when none is configured. It is checked like a PIN file.
func (c *Config) ReadClusterSecret() (string, error) {
	path := c.Cluster.SecretFile
	if dir := os.Getenv(credentialsEnv); dir != "" {
		if cred := filepath.Join(dir, "cluster-secret"); fileExists(cred) {
			path = cred
		}
	}
	if path == "" {
		return "", nil
	}
	s, err := readSecretFile("cluster secret file", path)
	if err == nil && len(s) < 16 {
		return "", fmt.Errorf("config: cluster secret file %s: shorter than 16 characters", path)
	}
	return s, err
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}
