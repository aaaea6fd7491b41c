package csr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"errors"
	"io"
	"testing"
)

// badSigner wraps a key and tampers with what Sign returns.
type badSigner struct {
	crypto.Signer
	pub    crypto.PublicKey
	mangle func([]byte) []byte
	err    error
}

func (b badSigner) Public() crypto.PublicKey {
	if b.pub != nil {
		return b.pub
	}
	return b.Signer.Public()
}

func (b badSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	sig, err := b.Signer.Sign(r, d, o)
	if b.mangle != nil {
		sig = b.mangle(sig)
	}
	return sig, err
}

func TestBuildErrors(t *testing.T) {
	dn, _ := ParseDN("CN=x")
	p256 := testKeys()["P-256"].(*ecdsa.PrivateKey)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	hsmDown := errors.New("device removed")
	rawRS := func(sig []byte) []byte { // what a PKCS#11 token returns without crypto11's conversion
		var rs struct{ R, S asn1.RawValue }
		if _, err := asn1.Unmarshal(sig, &rs); err != nil {
			t.Errorf("the signer's output is not an ECDSA-Sig-Value: %v", err)
		}
		return append(append([]byte{}, rs.R.Bytes...), rs.S.Bytes...)
	}
	tests := []struct {
		name   string
		req    *Request
		signer crypto.Signer
		want   error
	}{
		{"nil request", nil, p256, ErrInvalidRequest},
		{"nil signer", &Request{Subject: dn}, nil, ErrInvalidRequest},
		{"no subject no SANs", &Request{}, p256, ErrInvalidRequest},
		{"unsupported curve", &Request{Subject: dn}, p224, ErrUnsupportedKey},
		{"raw r||s signature", &Request{Subject: dn}, badSigner{Signer: p256, mangle: rawRS}, ErrBadSignature},
		{"signature by another key", &Request{Subject: dn}, badSigner{Signer: other, pub: p256.Public()}, ErrBadSignature},
		{"flipped RSA signature bit", &Request{Subject: dn}, badSigner{Signer: testKeys()["RSA-2048"], mangle: func(s []byte) []byte { s[10] ^= 1; return s }}, ErrBadSignature},
		{"signer error", &Request{Subject: dn}, badSigner{Signer: p256, err: hsmDown}, hsmDown},
		{"extensionRequest in ExtraAttributes", &Request{Subject: dn, SANs: &SANs{DNS: []string{"a"}}, ExtraAttributes: []Attribute{{Type: oidExtensionRequest, Values: []asn1.RawValue{{Tag: 5}}}}}, p256, ErrInvalidRequest},
		{"attribute without values", &Request{Subject: dn, ExtraAttributes: []Attribute{{Type: asn1.ObjectIdentifier{2, 5, 29, 72}}}}, p256, ErrInvalidRequest},
		{"bad DN", &Request{Subject: DN{{}}}, p256, ErrInvalidDN},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(rand.Reader, tt.req, tt.signer)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Build err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignCRIRejectsNonDER(t *testing.T) {
	for _, cri := range [][]byte{nil, {0x30}, {0x30, 0x00, 0x00}, {0x04, 0x00}} {
		if _, err := SignCRI(rand.Reader, cri, testKeys()["P-256"]); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("SignCRI(%x) err = %v", cri, err)
		}
	}
}
