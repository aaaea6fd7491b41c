package acmeca

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/acme"
)

// DNS01 answers dns-01 challenges (RFC 8555 8.4) by adding the TXT record
// at _acme-challenge.<name> with an RFC 2136 dynamic update, signed with
// TSIG (RFC 8945), to the zone's primary, and deleting it afterwards.
type DNS01 struct {
	// Server is the primary that takes updates (host:port).
	Server string
	// Zone is the zone updated; every name answered must be inside it.
	Zone string
	// KeyName, Algorithm ("hmac-sha256") and Secret (base64) are the TSIG key.
	KeyName, Algorithm, Secret string
	// Net is "udp" (the default) or "tcp".
	Net string
}

// dnsTTL is the TTL of the challenge record: resolvers must not keep a
// stale answer for the next challenge on the same name.
const dnsTTL = 60

// Type is "dns-01".
func (*DNS01) Type() string { return "dns-01" }

// Present adds the challenge's TXT record; cleanup deletes it.
func (d *DNS01) Present(ctx context.Context, cl *acme.Client, z *acme.Authorization, ch *acme.Challenge) (func(), error) {
	if z.Identifier.Type != "dns" {
		return nil, fmt.Errorf("dns-01 cannot prove control of the %s identifier %s", z.Identifier.Type, z.Identifier.Value)
	}
	value, err := cl.DNS01ChallengeRecord(ch.Token)
	if err != nil {
		return nil, err
	}
	name := "_acme-challenge." + dns.Fqdn(strings.TrimPrefix(z.Identifier.Value, "*."))
	zone := dns.Fqdn(d.Zone)
	if !dns.IsSubDomain(zone, name) {
		return nil, fmt.Errorf("%s is not in the zone %s that acme.dns01.zone names", name, zone)
	}
	rr := &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: dnsTTL}, Txt: []string{value}}
	if err := d.update(ctx, func(m *dns.Msg) { m.Insert([]dns.RR{rr}) }); err != nil {
		return nil, fmt.Errorf("RFC 2136 update adding %s TXT at %s: %w", name, d.Server, err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.update(ctx, func(m *dns.Msg) { m.Remove([]dns.RR{rr}) })
	}, nil
}

// update sends one signed update of the zone and checks the answer.
func (d *DNS01) update(ctx context.Context, change func(*dns.Msg)) error {
	zone, key := dns.Fqdn(d.Zone), dns.Fqdn(d.KeyName)
	m := new(dns.Msg)
	m.SetUpdate(zone)
	change(m)
	alg := dns.Fqdn(strings.ToLower(d.Algorithm))
	if d.Algorithm == "" {
		alg = dns.HmacSHA256
	}
	m.SetTsig(key, alg, 300, time.Now().Unix())
	network := d.Net
	if network == "" {
		network = "udp"
	}
	c := &dns.Client{Net: network, Timeout: 10 * time.Second, TsigSecret: map[string]string{key: d.Secret}}
	r, _, err := c.ExchangeContext(ctx, m, d.Server)
	if err != nil {
		return err
	}
	if r.Rcode != dns.RcodeSuccess {
		return errors.New("the server answered " + dns.RcodeToString[r.Rcode])
	}
	return nil
}
