package api

import (
	"net"

	"github.com/labstack/echo/v4"
)

// clientIP says which address a request comes from, for throttling, the
// audit log and the access log. Without trusted proxies it is the TCP peer
// and X-Forwarded-For is ignored (anyone can write it). With them, the
// header is walked from the right past the trusted proxies only, and only
// when the peer itself is one; echo's defaults (trust every loopback,
// link-local and private address) are switched off.
func clientIP(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// throttleKey groups IPv6 sources by /64, the block one host or customer
// usually gets: throttling single addresses there would let a client rotate
// through 2^64 of them.
func throttleKey(ip string) string {
	p := net.ParseIP(ip)
	if p == nil || p.To4() != nil {
		return ip
	}
	return (&net.IPNet{IP: p.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}
