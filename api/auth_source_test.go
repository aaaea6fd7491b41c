package api

import (
	"net"
	"net/http/httptest"
	"testing"
)

func TestClientIP(t *testing.T) {
	_, lo, _ := net.ParseCIDR("127.0.0.1/32")
	_, proxies, _ := net.ParseCIDR("10.1.0.0/16")
	tests := []struct {
		name    string
		trusted []*net.IPNet
		peer    string
		xff     string
		want    string
	}{
		{"no trusted proxies: header ignored", nil, "127.0.0.1:5000", "203.0.113.5", "127.0.0.1"},
		{"trusted local proxy", []*net.IPNet{lo}, "127.0.0.1:5000", "203.0.113.5", "203.0.113.5"},
		{"client-written prefix is not believed", []*net.IPNet{lo}, "127.0.0.1:5000", "198.51.100.1, 203.0.113.5", "203.0.113.5"},
		{"chain of trusted proxies", []*net.IPNet{lo, proxies}, "127.0.0.1:5000", "203.0.113.5, 10.1.2.3", "203.0.113.5"},
		{"peer not a proxy: header ignored", []*net.IPNet{lo}, "192.0.2.9:5000", "203.0.113.5", "192.0.2.9"},
		{"private addresses are not trusted by default", []*net.IPNet{lo}, "127.0.0.1:5000", "203.0.113.5, 10.9.9.9", "10.9.9.9"},
		{"garbage in the header", []*net.IPNet{lo}, "127.0.0.1:5000", "not-an-ip", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.peer
			r.Header.Set("X-Forwarded-For", tt.xff)
			if got := clientIP(tt.trusted)(r); got != tt.want {
				t.Errorf("clientIP = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestThrottleKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":            "192.0.2.1",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"::ffff:192.0.2.1":     "::ffff:192.0.2.1",
		"":                     "",
	} {
		if got := throttleKey(in); got != want {
			t.Errorf("throttleKey(%q) = %q, want %q", in, got, want)
		}
	}
}
