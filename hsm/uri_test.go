package hsm

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"testing"
)

func TestParseURI(t *testing.T) {
	tests := []struct {
		in   string
		want URI
		bad  bool
	}{
		{in: "pkcs11:token=csrd;object=tls;type=private", want: URI{Token: "csrd", Object: "tls", Type: "private"}},
		{in: "PKCS11:id=%01%02%ff", want: URI{ID: []byte{1, 2, 0xff}}},
		{in: "pkcs11:object=my%20key;serial=abc;manufacturer=SoftHSM%20project;model=SoftHSM%20v2",
			want: URI{Object: "my key", Serial: "abc", Manufacturer: "SoftHSM project", Model: "SoftHSM v2"}},
		{in: "pkcs11:", want: URI{}},
		{in: "pkcs11:object=tls?pin-value=1234", bad: true},
		{in: "pkcs11:object=tls?module-path=/tmp/evil.so", bad: true},
		{in: "pkcs11:object=tls;slot-id=3", bad: true},
		{in: "pkcs11:object=a;object=b", bad: true},
		{in: "pkcs11:type=weird", bad: true},
		{in: "pkcs11:object", bad: true},
		{in: "pkcs11:id=%zz", bad: true},
		{in: "/etc/csrd/tls.key", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseURI(tt.in)
			if tt.bad {
				if !errors.Is(err, ErrBadURI) {
					t.Fatalf("ParseURI = %+v, %v; want ErrBadURI", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Token != tt.want.Token || got.Object != tt.want.Object || got.Type != tt.want.Type ||
				got.Serial != tt.want.Serial || got.Manufacturer != tt.want.Manufacturer ||
				got.Model != tt.want.Model || !bytes.Equal(got.ID, tt.want.ID) {
				t.Errorf("ParseURI = %+v, want %+v", got, tt.want)
			}
			again, err := ParseURI(got.String())
			if err != nil || again.String() != got.String() {
				t.Errorf("round trip %q -> %q (%v)", got.String(), again.String(), err)
			}
		})
	}
}

func TestFindKeyByURI(t *testing.T) {
	ctx := context.Background()
	id, err := testTok.NewKeyID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ref := KeyRef{ID: id, Label: "uri-test;key"} // ';' must survive the URI
	k, err := testTok.GenerateKeyPair(ctx, KeySpec{Type: KeyECDSA, Curve: elliptic.P256()}, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = testTok.DestroyKey(ctx, ref) })
	byBoth := KeyURI(testTok.Label(), testTok.Serial(), ref).String()
	tests := []struct {
		name, uri string
		want      error // nil: finds k
	}{
		{"KeyURI", byBoth, nil},
		{"by id", URI{ID: id}.String(), nil},
		{"by object", URI{Object: ref.Label, Type: "private"}.String(), nil},
		{"token and manufacturer", URI{Token: testLabel, Manufacturer: "SoftHSM project", ID: id}.String(), nil},
		{"other token", URI{Token: otherLabel, ID: id}.String(), ErrNotFound},
		{"other serial", URI{Serial: "0000", ID: id}.String(), ErrNotFound},
		{"no such key", URI{Object: "uri-test-missing"}.String(), ErrNotFound},
		{"names no object", URI{Token: testLabel}.String(), ErrBadURI},
		{"public type", URI{ID: id, Type: "public"}.String(), ErrBadURI},
		{"PIN in URI", byBoth + "?pin-value=x", ErrBadURI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testTok.FindKeyByURI(ctx, tt.uri)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("FindKeyByURI(%s) = %v, want %v", tt.uri, err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("FindKeyByURI(%s): %v", tt.uri, err)
			}
			if ok, err := signWith(got); err != nil || !ok {
				t.Fatalf("sign: ok=%v err=%v", ok, err)
			}
			if !k.Public().(*ecdsa.PublicKey).Equal(got.Public()) {
				t.Error("found a different key")
			}
		})
	}
}
