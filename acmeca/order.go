package acmeca

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/acme"
)

// Identifiers are what an order asks the CA to certify: a CSR's DNS names
// and IP addresses (RFC 8555 7.1.4, RFC 8738). Anything else in the CSR's
// subjectAltName is an error: an ACME CA certifies only these.
func Identifiers(csr *x509.CertificateRequest) ([]acme.AuthzID, error) {
	switch {
	case len(csr.EmailAddresses) > 0:
		return nil, fmt.Errorf("acmeca: the CSR names e-mail addresses (%s); an ACME CA certifies only DNS names and IP addresses", csr.EmailAddresses[0])
	case len(csr.URIs) > 0:
		return nil, fmt.Errorf("acmeca: the CSR names URIs (%s); an ACME CA certifies only DNS names and IP addresses", csr.URIs[0])
	}
	var ids []acme.AuthzID
	for _, n := range csr.DNSNames {
		ids = append(ids, acme.AuthzID{Type: "dns", Value: n})
	}
	for _, ip := range csr.IPAddresses {
		ids = append(ids, acme.AuthzID{Type: "ip", Value: ip.String()})
	}
	if len(ids) == 0 {
		return nil, errors.New("acmeca: the CSR has no DNS name or IP address in its subjectAltName; an ACME CA certifies only those")
	}
	return ids, nil
}

// Order creates an order for ids and returns its URL. replaces, when not
// "", is the ARI identifier (CertID) of the certificate the new one
// replaces (RFC 9773 5); it is sent only to a CA whose directory offers
// renewalInfo, and a CA that refuses it is asked again without it: a
// renewal must not fail over its bookkeeping.
func (c *CA) Order(ctx context.Context, ids []acme.AuthzID, replaces string) (string, error) {
	url, err := c.order(ctx, ids, replaces)
	if c.forgetAccount(err) {
		url, err = c.order(ctx, ids, replaces)
	}
	return url, caErr(c.cfg.Name, "create the order", err)
}

func (c *CA) order(ctx context.Context, ids []acme.AuthzID, replaces string) (string, error) {
	cl, p, err := c.ready(ctx)
	if err != nil {
		return "", err
	}
	d, err := c.dir(ctx)
	if err != nil {
		return "", caErr(c.cfg.Name, "create the order", err)
	}
	if d.RenewalInfo == "" {
		replaces = ""
	}
	url, err := c.newOrder(ctx, cl, p, d.NewOrder, ids, replaces)
	if ae := (*acme.Error)(nil); replaces != "" && errors.As(err, &ae) && ae.ProblemType != "urn:ietf:params:acme:error:accountDoesNotExist" {
		url, err = c.newOrder(ctx, cl, p, d.NewOrder, ids, "")
	}
	return url, err
}

func (c *CA) newOrder(ctx context.Context, cl *acme.Client, p *poster, newOrderURL string, ids []acme.AuthzID, replaces string) (string, error) {
	type ident struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	}
	req := struct {
		Identifiers []ident `json:"identifiers"`
		Replaces    string  `json:"replaces,omitempty"`
		Profile     string  `json:"profile,omitempty"`
	}{Replaces: replaces, Profile: c.cfg.Profile}
	for _, id := range ids {
		req.Identifiers = append(req.Identifiers, ident{id.Type, id.Value})
	}
	_, hdr, err := p.post(ctx, string(cl.KID), newOrderURL, req)
	if err != nil {
		return "", err
	}
	url := hdr.Get("Location")
	if url == "" {
		return "", errors.New("the CA created the order without giving its URL")
	}
	return url, nil
}

// maxOrderSteps bounds the round trips Complete makes for one order.
const maxOrderSteps = 200

// Complete drives the order at url to an issued certificate: it answers
// the pending authorizations, finalizes with csrDER once the order is
// ready, waits while the CA processes it, and returns the chain (leaf
// first) after checking it. It can be called again on the same order after
// an interruption: each step starts from the order's state at the CA.
func (c *CA) Complete(ctx context.Context, url string, csrDER []byte) ([]*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("acmeca: CSR: %w", err)
	}
	cl, p, err := c.ready(ctx)
	if err != nil {
		return nil, err
	}
	wait := newPoll()
	for range maxOrderSteps {
		o, err := cl.GetOrder(ctx, url)
		if err != nil {
			return nil, caErr(c.cfg.Name, "read the order", err)
		}
		switch o.Status {
		case acme.StatusPending:
			err = c.authorize(ctx, cl, o.AuthzURLs)
		case acme.StatusReady:
			err = c.finalize(ctx, cl, p, o.FinalizeURL, csrDER)
		case acme.StatusProcessing:
			err = wait.sleep(ctx, 0)
		case acme.StatusValid:
			der, err := cl.FetchCert(ctx, o.CertURL, true)
			if err != nil {
				return nil, caErr(c.cfg.Name, "download the certificate", err)
			}
			return c.checkChain(der, csr)
		default:
			return nil, caErr(c.cfg.Name, "order", &acme.OrderError{OrderURL: url, Status: o.Status, Problem: o.Error})
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, &Error{CA: c.cfg.Name, Op: "order", Class: ErrUnavailable, Detail: "the order did not complete in " + fmt.Sprint(maxOrderSteps) + " steps"}
}

// finalize submits the CSR (RFC 8555 7.4). Complete polls the order after.
func (c *CA) finalize(ctx context.Context, cl *acme.Client, p *poster, finalizeURL string, csrDER []byte) error {
	req := struct {
		CSR string `json:"csr"`
	}{base64.RawURLEncoding.EncodeToString(csrDER)}
	_, _, err := p.post(ctx, string(cl.KID), finalizeURL, req)
	return caErr(c.cfg.Name, "finalize the order", err)
}

// authorize answers every authorization of an order that is not valid yet,
// one after the other, with the configured Solver.
func (c *CA) authorize(ctx context.Context, cl *acme.Client, urls []string) error {
	for _, u := range urls {
		z, err := cl.GetAuthorization(ctx, u)
		if err != nil {
			return caErr(c.cfg.Name, "read an authorization", err)
		}
		switch z.Status {
		case acme.StatusValid:
			continue
		case acme.StatusPending:
		default:
			return caErr(c.cfg.Name, "authorization", authzError(z))
		}
		if err := c.answer(ctx, cl, z); err != nil {
			return err
		}
	}
	return nil
}

// answer presents one challenge of z, tells the CA to validate it and
// waits for the outcome; the answer is withdrawn afterwards either way.
func (c *CA) answer(ctx context.Context, cl *acme.Client, z *acme.Authorization) error {
	ch := pickChallenge(z, c.cfg.Solver.Type())
	if ch == nil {
		return &Error{CA: c.cfg.Name, Op: "authorization", Class: ErrRefused,
			Detail: fmt.Sprintf("the CA offers no %s challenge for %s (it offers %s)", c.cfg.Solver.Type(), z.Identifier.Value, offered(z))}
	}
	cleanup, err := c.cfg.Solver.Present(ctx, cl, z, ch)
	if err != nil {
		return caErr(c.cfg.Name, "prepare the "+ch.Type+" answer for "+z.Identifier.Value, err)
	}
	defer cleanup()
	if _, err := cl.Accept(ctx, ch); err != nil {
		return caErr(c.cfg.Name, "answer the "+ch.Type+" challenge for "+z.Identifier.Value, err)
	}
	wait := newPoll()
	for {
		z, err := cl.GetAuthorization(ctx, z.URI)
		if err != nil {
			return caErr(c.cfg.Name, "read an authorization", err)
		}
		switch z.Status {
		case acme.StatusValid:
			return nil
		case acme.StatusPending, acme.StatusProcessing:
		default:
			return caErr(c.cfg.Name, "authorization", authzError(z))
		}
		if err := wait.sleep(ctx, 0); err != nil {
			return err
		}
	}
}

// pickChallenge returns z's challenge of type typ, or for typ "" (challenge
// none) the first offered in the order of preference.
func pickChallenge(z *acme.Authorization, typ string) *acme.Challenge {
	prefs := []string{typ}
	if typ == "" {
		prefs = []string{"http-01", "dns-01", "tls-alpn-01"}
	}
	for _, t := range prefs {
		for _, ch := range z.Challenges {
			if ch.Type == t {
				return ch
			}
		}
	}
	if typ == "" && len(z.Challenges) > 0 {
		return z.Challenges[0]
	}
	return nil
}

func offered(z *acme.Authorization) string {
	s := ""
	for i, ch := range z.Challenges {
		if i > 0 {
			s += ", "
		}
		s += ch.Type
	}
	if s == "" {
		return "none"
	}
	return s
}

func authzError(z *acme.Authorization) error {
	e := &acme.AuthorizationError{URI: z.URI, Identifier: z.Identifier.Value}
	for _, ch := range z.Challenges {
		if ch.Error != nil {
			e.Errors = append(e.Errors, ch.Error)
		}
	}
	if len(e.Errors) == 0 {
		e.Errors = append(e.Errors, fmt.Errorf("authorization is %s", z.Status))
	}
	return e
}

// poll spaces the reads of an order or authorization the CA is working on:
// 100 ms at first (a CA like Pebble finishes in milliseconds), doubling to
// 2 s.
type poll struct{ d time.Duration }

func newPoll() *poll { return &poll{d: 100 * time.Millisecond} }

func (p *poll) sleep(ctx context.Context, hint time.Duration) error {
	d := p.d
	if hint > 0 {
		d = hint
	}
	p.d = min(2*p.d, 2*time.Second)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
