package acmeca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"

	"golang.org/x/crypto/acme"
)

// poster sends the signed requests x/crypto/acme cannot express: a
// newOrder with "replaces" (RFC 9773) and "profile", and finalize without
// that package's fixed one-second wait. Requests are JWS with the account's
// kid (RFC 8555 6.2), ES256: the account key csrd makes is always P-256.
type poster struct {
	hc       *http.Client
	key      crypto.Signer
	nonceURL string
	ua       string

	mu     sync.Mutex
	nonces []string
}

// maxBadNonce bounds the retries of a request the CA answered badNonce
// (Pebble rejects some valid nonces on purpose; RFC 8555 6.5 says retry).
const maxBadNonce = 5

// post sends payload to url signed under kid and returns the answer's body
// and headers; a problem document becomes an *acme.Error.
func (p *poster) post(ctx context.Context, kid, url string, payload any) ([]byte, http.Header, error) {
	var last error
	for range maxBadNonce {
		body, hdr, err := p.postOnce(ctx, kid, url, payload)
		var ae *acme.Error
		if !errors.As(err, &ae) || ae.ProblemType != "urn:ietf:params:acme:error:badNonce" {
			return body, hdr, err
		}
		last = err
	}
	return nil, nil, last
}

func (p *poster) postOnce(ctx context.Context, kid, url string, payload any) ([]byte, http.Header, error) {
	nonce, err := p.nonce(ctx)
	if err != nil {
		return nil, nil, err
	}
	msg, err := signJWS(p.key, kid, nonce, url, payload)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(msg))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/jose+json")
	req.Header.Set("User-Agent", p.ua)
	res, err := p.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	p.keep(res.Header.Get("Replay-Nonce"))
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, nil, err
	}
	if res.StatusCode >= 400 {
		return nil, nil, problem(res, body)
	}
	return body, res.Header, nil
}

// nonce takes a nonce kept from an earlier answer, or asks newNonce.
func (p *poster) nonce(ctx context.Context) (string, error) {
	p.mu.Lock()
	if n := len(p.nonces); n > 0 {
		v := p.nonces[n-1]
		p.nonces = p.nonces[:n-1]
		p.mu.Unlock()
		return v, nil
	}
	p.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, p.nonceURL, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("User-Agent", p.ua)
	res, err := p.hc.Do(req)
	if err != nil {
		return "", err
	}
	res.Body.Close()
	v := res.Header.Get("Replay-Nonce")
	if v == "" {
		return "", fmt.Errorf("newNonce answered %d without a Replay-Nonce", res.StatusCode)
	}
	return v, nil
}

func (p *poster) keep(nonce string) {
	if nonce == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.nonces) < 16 {
		p.nonces = append(p.nonces, nonce)
	}
}

// problem decodes an RFC 7807 problem document into x/crypto/acme's type,
// so errors from both paths are classified alike.
func problem(res *http.Response, body []byte) error {
	var p struct {
		Type        string
		Detail      string
		Subproblems []acme.Subproblem
	}
	_ = json.Unmarshal(body, &p)
	return &acme.Error{StatusCode: res.StatusCode, ProblemType: p.Type, Detail: p.Detail, Header: res.Header, Subproblems: p.Subproblems}
}

// signJWS is the flattened JSON serialization of a JWS over payload with
// protected header {alg: ES256, kid, nonce, url}.
func signJWS(key crypto.Signer, kid, nonce, url string, payload any) ([]byte, error) {
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("acmeca: the account key must be ECDSA P-256")
	}
	header, err := json.Marshal(struct {
		Alg   string `json:"alg"`
		KID   string `json:"kid"`
		Nonce string `json:"nonce"`
		URL   string `json:"url"`
	}{"ES256", kid, nonce, url})
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	protected := base64.RawURLEncoding.EncodeToString(header)
	encoded := base64.RawURLEncoding.EncodeToString(body)
	digest := sha256.Sum256([]byte(protected + "." + encoded))
	der, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("acmeca: signing with the account key: %w", err)
	}
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(der, &rs); err != nil {
		return nil, fmt.Errorf("acmeca: account key signature: %w", err)
	}
	sig := make([]byte, 64)
	rs.R.FillBytes(sig[:32])
	rs.S.FillBytes(sig[32:])
	return json.Marshal(struct {
		Protected string `json:"protected"`
		Payload   string `json:"payload"`
		Signature string `json:"signature"`
	}{protected, encoded, base64.RawURLEncoding.EncodeToString(sig)})
}
