package lifecycle

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/store"
)

// clockSkew is how far in the future a certificate's notBefore may be: a CA
// stamps notBefore with its own clock, often "now", and csrd's may lag.
const clockSkew = 5 * time.Minute

// parseCertificates reads certificates sent as PEM (one or more
// CERTIFICATE blocks) or as base64 of one DER certificate, the two forms
// Keyfactor's import endpoint takes. Anything else — a private key, a
// PKCS#12 bundle, garbage — is refused with a message that says which.
func parseCertificates(field, s string) ([]*x509.Certificate, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if strings.Contains(s, "-----BEGIN") {
		var out []*x509.Certificate
		rest := []byte(s)
		for i := 0; ; i++ {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				if len(bytes.TrimSpace(rest)) > 0 && i == 0 {
					return nil, newErr(ErrInvalidCertificate, "%s: the PEM text does not decode", field)
				}
				break
			}
			switch {
			case block.Type == "CERTIFICATE":
			case strings.Contains(block.Type, "PRIVATE KEY"):
				return nil, newErr(ErrInvalidCertificate, "%s: PEM block %d is a private key; csrd never takes private keys (its keys are generated in the HSM)", field, i+1)
			default:
				return nil, newErr(ErrInvalidCertificate, "%s: PEM block %d is %q, not CERTIFICATE", field, i+1, block.Type)
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, newErr(ErrInvalidCertificate, "%s: PEM certificate %d is not a well-formed X.509 certificate: %s", field, i+1, trimX509(err))
			}
			out = append(out, c)
		}
		return out, nil
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		return nil, newErr(ErrInvalidCertificate, "%s is neither PEM nor base64 (%v)", field, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, newErr(ErrInvalidCertificate, "%s is not a base64 DER X.509 certificate (PKCS#12/PFX and PKCS#7 are not accepted): %s", field, trimX509(err))
	}
	return []*x509.Certificate{c}, nil
}

func trimX509(err error) string { return strings.TrimPrefix(err.Error(), "x509: ") }

// checkCertificate checks that leaf is currently valid and that each chain
// certificate signed the one before it.
func checkCertificate(leaf *x509.Certificate, chain []*x509.Certificate, now time.Time) error {
	const layout = time.RFC3339
	switch {
	case now.After(leaf.NotAfter):
		return newErr(ErrInvalidCertificate, "the certificate expired at %s (valid %s to %s); only a currently valid certificate is married to a key",
			leaf.NotAfter.UTC().Format(layout), leaf.NotBefore.UTC().Format(layout), leaf.NotAfter.UTC().Format(layout))
	case now.Add(clockSkew).Before(leaf.NotBefore):
		return newErr(ErrInvalidCertificate, "the certificate is not valid before %s (now %s); import it once it is",
			leaf.NotBefore.UTC().Format(layout), now.UTC().Format(layout))
	}
	prev := leaf
	for i, c := range chain {
		if err := prev.CheckSignatureFrom(c); err != nil {
			return newErr(ErrInvalidCertificate, "chain certificate %d (%s) did not issue %s: %s",
				i+1, c.Subject, prev.Subject, trimX509(err))
		}
		prev = c
	}
	return nil
}

// spkiHash is the hash records are indexed by. Public keys Go parses are
// re-encoded exactly as Generate hashed them, so a CA that re-encodes the
// SPKI still matches; others are hashed as the CA wrote them.
func spkiHash(c *x509.Certificate) []byte {
	if c.PublicKey != nil {
		if h, err := csr.SPKISHA256(c.PublicKey); err == nil {
			return h
		}
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return sum[:]
}

// Thumbprint is the SHA-1 of the DER certificate in upper-case hex, the
// identifier Keyfactor (and Windows) show.
func Thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// serialHex is the serial number in upper-case hex, two digits per byte.
func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%X", c.SerialNumber.Bytes()) }

func certInfo(leaf *x509.Certificate, chain []*x509.Certificate) store.CertInfo {
	var pemChain strings.Builder
	for _, c := range chain {
		_ = pem.Encode(&pemChain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return store.CertInfo{
		DER:        leaf.Raw,
		ChainPEM:   pemChain.String(),
		Serial:     serialHex(leaf),
		Issuer:     leaf.Issuer.String(),
		Subject:    leaf.Subject.String(),
		Thumbprint: Thumbprint(leaf.Raw),
		NotBefore:  leaf.NotBefore.UTC(),
		NotAfter:   leaf.NotAfter.UTC(),
	}
}
