package acmeca

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrNoARI: the CA's directory offers no renewalInfo (RFC 9773).
var ErrNoARI = errors.New("acmeca: the CA does not offer ACME Renewal Information")

// directory holds the directory fields x/crypto/acme's Directory lacks or
// that poster needs.
type directory struct {
	NewNonce    string `json:"newNonce"`
	NewOrder    string `json:"newOrder"`
	RenewalInfo string `json:"renewalInfo"`
}

func (c *CA) fetchDirectory(ctx context.Context) (directory, error) {
	var d directory
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.Directory, nil)
	if err != nil {
		return d, err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return d, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return d, fmt.Errorf("directory: HTTP status %d", res.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&d); err != nil {
		return d, fmt.Errorf("directory: %w", err)
	}
	if d.NewNonce == "" || d.NewOrder == "" {
		return d, errors.New("directory: newNonce or newOrder missing")
	}
	return d, nil
}

// CertID is cert's identifier in RFC 9773 (section 4.1): the base64url
// keyIdentifier of its Authority Key Identifier, ".", and the base64url of
// its serial number's DER content octets (with the leading zero a positive
// serial with the high bit set carries).
func CertID(cert *x509.Certificate) (string, error) {
	if len(cert.AuthorityKeyId) == 0 {
		return "", errors.New("acmeca: the certificate has no Authority Key Identifier, so it has no ARI identifier")
	}
	der, err := asn1.Marshal(cert.SerialNumber)
	if err != nil {
		return "", fmt.Errorf("acmeca: serial number: %w", err)
	}
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(der, &raw); err != nil {
		return "", fmt.Errorf("acmeca: serial number: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(cert.AuthorityKeyId) + "." + base64.RawURLEncoding.EncodeToString(raw.Bytes), nil
}

// RenewalInfo is the CA's suggested renewal window for a certificate.
type RenewalInfo struct {
	Start, End     time.Time
	ExplanationURL string
	// RetryAfter is when the CA suggests asking again (0: not said).
	RetryAfter time.Duration
}

// RenewalInfo asks the CA when cert should be renewed (RFC 9773 4.2).
// ErrNoARI when the CA offers no renewalInfo.
func (c *CA) RenewalInfo(ctx context.Context, cert *x509.Certificate) (*RenewalInfo, error) {
	d, err := c.dir(ctx)
	if err != nil {
		return nil, caErr(c.cfg.Name, "renewal info", err)
	}
	if d.RenewalInfo == "" {
		return nil, ErrNoARI
	}
	id, err := CertID(cert)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(d.RenewalInfo, "/")+"/"+id, nil)
	if err != nil {
		return nil, err
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, caErr(c.cfg.Name, "renewal info", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	if err != nil {
		return nil, caErr(c.cfg.Name, "renewal info", err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, caErr(c.cfg.Name, "renewal info", problem(res, body))
	}
	return parseRenewalInfo(body, res.Header.Get("Retry-After"))
}

func parseRenewalInfo(body []byte, retryAfter string) (*RenewalInfo, error) {
	var v struct {
		SuggestedWindow struct{ Start, End time.Time } `json:"suggestedWindow"`
		ExplanationURL  string                         `json:"explanationURL"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("acmeca: renewal info: %w", err)
	}
	w := v.SuggestedWindow
	if w.Start.IsZero() || !w.Start.Before(w.End) {
		return nil, fmt.Errorf("acmeca: renewal info: window %s to %s is not a window", w.Start, w.End)
	}
	ri := &RenewalInfo{Start: w.Start, End: w.End, ExplanationURL: v.ExplanationURL}
	if s, err := strconv.Atoi(retryAfter); err == nil && s > 0 {
		ri.RetryAfter = time.Duration(s) * time.Second
	}
	return ri, nil
}
