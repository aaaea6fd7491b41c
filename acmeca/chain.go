package acmeca

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// checkChain parses the chain the CA returned and checks that it certifies
// the CSR's key and names and that it verifies: to ChainRoots when the
// configuration names them, else certificate by certificate, each signed by
// the next. A chain that fails is the CA's fault (ErrRefused): nothing is
// married.
func (c *CA) checkChain(der [][]byte, csr *x509.CertificateRequest) ([]*x509.Certificate, error) {
	refuse := func(format string, args ...any) error {
		return &Error{CA: c.cfg.Name, Op: "check the issued chain", Class: ErrRefused, Detail: fmt.Sprintf(format, args...)}
	}
	if len(der) == 0 {
		return nil, refuse("the CA returned no certificate")
	}
	chain := make([]*x509.Certificate, len(der))
	for i, b := range der {
		cert, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, refuse("certificate %d does not parse: %v", i+1, err)
		}
		chain[i] = cert
	}
	leaf := chain[0]
	if pk, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pk.Equal(csr.PublicKey) {
		return nil, refuse("the certificate does not certify the CSR's public key")
	}
	if missing := missingNames(leaf, csr); missing != "" {
		return nil, refuse("the certificate lacks %s, which the CSR asked for", missing)
	}
	if c.cfg.ChainRoots != nil {
		inter := x509.NewCertPool()
		for _, ic := range chain[1:] {
			inter.AddCert(ic)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: c.cfg.ChainRoots, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: time.Now()})
		if err != nil {
			return nil, refuse("the chain does not verify to chain_roots_file: %v", err)
		}
		return chain, nil
	}
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return nil, refuse("certificate %d (%s) is not signed by the next (%s): %v", i+1, chain[i].Subject, chain[i+1].Subject, err)
		}
	}
	return chain, nil
}

// missingNames lists the CSR's DNS names and IP addresses the certificate
// does not carry.
func missingNames(leaf *x509.Certificate, csr *x509.CertificateRequest) string {
	var missing []string
	for _, n := range csr.DNSNames {
		if !slices.ContainsFunc(leaf.DNSNames, func(m string) bool { return strings.EqualFold(m, n) }) {
			missing = append(missing, "DNS:"+n)
		}
	}
	for _, ip := range csr.IPAddresses {
		if !slices.ContainsFunc(leaf.IPAddresses, func(m net.IP) bool { return m.Equal(ip) }) {
			missing = append(missing, "IP:"+ip.String())
		}
	}
	return strings.Join(missing, ", ")
}
