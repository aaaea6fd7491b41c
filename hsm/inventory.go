package hsm

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/pkcs11"
)

// ObjectClass is the CKA_CLASS of a token object.
type ObjectClass uint

// The classes csrd creates or meets; others keep their CKO_* number.
const (
	ClassData        ObjectClass = pkcs11.CKO_DATA
	ClassCertificate ObjectClass = pkcs11.CKO_CERTIFICATE
	ClassPublicKey   ObjectClass = pkcs11.CKO_PUBLIC_KEY
	ClassPrivateKey  ObjectClass = pkcs11.CKO_PRIVATE_KEY
	ClassSecretKey   ObjectClass = pkcs11.CKO_SECRET_KEY
)

func (c ObjectClass) String() string {
	switch c {
	case ClassData:
		return "data"
	case ClassCertificate:
		return "certificate"
	case ClassPublicKey:
		return "public-key"
	case ClassPrivateKey:
		return "private-key"
	case ClassSecretKey:
		return "secret-key"
	}
	return fmt.Sprintf("class-0x%X", uint(c))
}

// Object is one token object: its class and the reference it carries.
type Object struct {
	Class ObjectClass
	Ref   KeyRef
}

// ListObjects returns every token object whose CKA_LABEL starts with
// labelPrefix ("" for all), sorted by label, ID and class. It is one
// C_FindObjects pass over the token plus one attribute read per object:
// PKCS#11 cannot search by label prefix. For reconciliation and operators,
// not the request path.
func (t *Token) ListObjects(ctx context.Context, labelPrefix string) ([]Object, error) {
	const op = "list objects"
	var out []Object
	err := t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		hs, err := t.findObjects(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true)})
		if err != nil {
			return err
		}
		for _, h := range hs {
			got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil),
				pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
			})
			if err != nil {
				if isCKR(err, pkcs11.CKR_OBJECT_HANDLE_INVALID) {
					continue // destroyed since the search: not there any more
				}
				return err
			}
			label := string(got[2].Value)
			if !strings.HasPrefix(label, labelPrefix) {
				continue
			}
			out = append(out, Object{
				Class: ObjectClass(ulong(got[0].Value)),
				Ref:   KeyRef{ID: bytes.Clone(got[1].Value), Label: label},
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Object) int {
		return cmp.Or(strings.Compare(a.Ref.Label, b.Ref.Label), bytes.Compare(a.Ref.ID, b.Ref.ID), cmp.Compare(a.Class, b.Class))
	})
	return out, nil
}

// ObjectsOf returns the classes of the objects carrying exactly ref's
// CKA_ID and CKA_LABEL: a direct lookup, e.g. to re-check one key after a
// listing.
func (t *Token) ObjectsOf(ctx context.Context, ref KeyRef) ([]ObjectClass, error) {
	const op = "find objects"
	if err := ref.check(op); err != nil {
		return nil, err
	}
	var out []ObjectClass
	err := t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		hs, err := t.findObjects(sh, refTemplate(ref))
		if err != nil {
			return err
		}
		for _, h := range hs {
			got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil)})
			if err != nil {
				return err
			}
			out = append(out, ObjectClass(ulong(got[0].Value)))
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}
