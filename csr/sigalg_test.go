package csr

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"testing"

	"github.com/cloudflare/circl/sign/ed448"
)

func TestSignatureAlgorithm(t *testing.T) {
	tests := []struct {
		key       string
		oid       asn1.ObjectIdentifier
		hash      crypto.Hash
		nullParam bool
	}{
		{"RSA-2048", asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, crypto.SHA256, true},
		{"P-256", asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}, crypto.SHA256, false},
		{"P-384", asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}, crypto.SHA384, false},
		{"P-521", asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}, crypto.SHA512, false},
		{"Ed25519", asn1.ObjectIdentifier{1, 3, 101, 112}, 0, false},
		{"Ed448", asn1.ObjectIdentifier{1, 3, 101, 113}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			alg, opts, err := SignatureAlgorithm(testKeys()[tt.key].Public())
			if err != nil {
				t.Fatal(err)
			}
			if !alg.Algorithm.Equal(tt.oid) || opts.HashFunc() != tt.hash {
				t.Errorf("got %v/%v, want %v/%v", alg.Algorithm, opts.HashFunc(), tt.oid, tt.hash)
			}
			der, err := asn1.Marshal(alg)
			if err != nil {
				t.Fatal(err)
			}
			oidDER, _ := asn1.Marshal(tt.oid)
			want := len(oidDER) + 2
			if tt.nullParam {
				want += 2 // NULL, RFC 4055 2.1
			}
			if len(der) != want {
				t.Errorf("AlgorithmIdentifier %x: parameters wrong", der)
			}
		})
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for name, pub := range map[string]crypto.PublicKey{"P-224": p224.Public(), "nil": nil, "string": "key"} {
		t.Run("unsupported "+name, func(t *testing.T) {
			if _, _, err := SignatureAlgorithm(pub); !errors.Is(err, ErrUnsupportedKey) {
				t.Errorf("err = %v", err)
			}
			if _, err := SPKISHA256(pub); !errors.Is(err, ErrUnsupportedKey) {
				t.Errorf("SPKISHA256 err = %v", err)
			}
		})
	}
}

func TestSPKISHA256(t *testing.T) {
	for _, name := range keyNames {
		t.Run(name, func(t *testing.T) {
			pub := testKeys()[name].Public()
			got, err := SPKISHA256(pub)
			if err != nil {
				t.Fatal(err)
			}
			var spki []byte
			if name == "Ed448" {
				// RFC 8410 10.1 layout: 30 43 30 05 06 03 2b 65 71 03 3a 00 || key.
				spki = append([]byte{0x30, 0x43, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71, 0x03, 0x3a, 0x00}, pub.(ed448.PublicKey)...)
			} else if spki, err = x509.MarshalPKIXPublicKey(pub); err != nil {
				t.Fatal(err)
			}
			if want := sha256.Sum256(spki); string(got) != string(want[:]) {
				t.Errorf("SPKISHA256 = %x, want %x", got, want)
			}
		})
	}
	if _, err := SPKI(ed448.PublicKey(make([]byte, 10))); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("short Ed448 key: %v", err)
	}
}
