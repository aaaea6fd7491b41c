package hsm

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"

	"github.com/miekg/pkcs11"
)

// ErrCertificateMismatch: the token already holds a different certificate
// under the key's reference.
var ErrCertificateMismatch = errors.New("hsm: a different certificate is already stored for the key")

// Certificate is a CKO_CERTIFICATE object as the token reports it.
type Certificate struct {
	Ref     KeyRef
	Value   []byte // CKA_VALUE: the DER certificate
	Subject []byte // CKA_SUBJECT: DER Name
	Issuer  []byte // CKA_ISSUER: DER Name
	Serial  []byte // CKA_SERIAL_NUMBER: DER INTEGER
	Private bool   // CKA_PRIVATE
}

// PutCertificate stores cert on the token as an X.509 certificate object
// carrying ref's CKA_ID and CKA_LABEL, so PKCS#11 consumers (OpenSSL's
// pkcs11 engine, p11-kit, NSS) find certificate and key as a pair. The
// object is public (CKA_PRIVATE false): a certificate is not secret, and
// tools list it without logging in.
//
// It is idempotent: when the token already has this exact certificate under
// ref it does nothing and returns created=false. A different certificate
// under ref is ErrCertificateMismatch; hsm never replaces one silently.
// Callers serialise PutCertificate per ref (the check and the create are two
// calls).
func (t *Token) PutCertificate(ctx context.Context, ref KeyRef, cert *x509.Certificate) (created bool, err error) {
	const op = "put certificate"
	if err := ref.check(op); err != nil {
		return false, err
	}
	if cert == nil || len(cert.Raw) == 0 {
		return false, classErr(op, nil, "no certificate")
	}
	serial, err := asn1.Marshal(cert.SerialNumber)
	if err != nil {
		return false, classErr(op, nil, "encode serial number: %v", err)
	}
	// Retried like GenerateKeyPair (see spurious); each attempt starts by
	// looking for the certificate, so a retry never makes a second one.
	for attempt := 1; ; attempt++ {
		created, err = t.putCertificate(ctx, op, ref, cert, serial)
		if err == nil || attempt == generateAttempts || !spurious(err) || ctx.Err() != nil {
			break
		}
		t.log.Warn().Err(err).Int("attempt", attempt).Str("key", ref.String()).
			Msg("hsm: storing a certificate failed with a code tokens return spuriously under concurrency; retrying")
	}
	if err == nil {
		t.log.Debug().Str("key", ref.String()).Bool("created", created).Msg("hsm: certificate stored")
	}
	return created, err
}

// putCertificate is one attempt of PutCertificate.
func (t *Token) putCertificate(ctx context.Context, op string, ref KeyRef, cert *x509.Certificate, serial []byte) (created bool, err error) {
	err = t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		existing, err := t.certificates(sh, ref)
		if err != nil {
			return err
		}
		for _, c := range existing {
			if !bytes.Equal(c.Value, cert.Raw) {
				return classErr(op, ErrCertificateMismatch, "%s", ref)
			}
		}
		if len(existing) > 0 {
			return nil
		}
		_, err = t.p11.CreateObject(sh, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
			pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
			pkcs11.NewAttribute(pkcs11.CKA_MODIFIABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_ID, bytes.Clone(ref.ID)),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, ref.Label),
			pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, cert.RawSubject),
			pkcs11.NewAttribute(pkcs11.CKA_ISSUER, cert.RawIssuer),
			pkcs11.NewAttribute(pkcs11.CKA_SERIAL_NUMBER, serial),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, cert.Raw),
			// CK_CERTIFICATE_CATEGORY_TOKEN_USER: the token user's own certificate.
			pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_CATEGORY, 1),
		})
		if err != nil {
			return err
		}
		created = true
		return nil
	})
	return created, err
}

// Certificates returns the certificate objects stored under ref (normally
// zero or one).
func (t *Token) Certificates(ctx context.Context, ref KeyRef) ([]Certificate, error) {
	const op = "find certificate"
	if err := ref.check(op); err != nil {
		return nil, err
	}
	var out []Certificate
	err := t.withRawSession(ctx, op, func(sh pkcs11.SessionHandle) error {
		var err error
		out, err = t.certificates(sh, ref)
		return err
	})
	return out, err
}

func (t *Token) certificates(sh pkcs11.SessionHandle, ref KeyRef) ([]Certificate, error) {
	hs, err := t.findObjects(sh, append(refTemplate(ref), pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE)))
	if err != nil {
		return nil, err
	}
	out := make([]Certificate, 0, len(hs))
	for _, h := range hs {
		got, err := t.p11.GetAttributeValue(sh, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_SUBJECT, nil),
			pkcs11.NewAttribute(pkcs11.CKA_ISSUER, nil),
			pkcs11.NewAttribute(pkcs11.CKA_SERIAL_NUMBER, nil),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
		})
		if err != nil {
			return nil, err
		}
		out = append(out, Certificate{
			Ref:     ref.clone(),
			Value:   bytes.Clone(got[0].Value),
			Subject: bytes.Clone(got[1].Value),
			Issuer:  bytes.Clone(got[2].Value),
			Serial:  bytes.Clone(got[3].Value),
			Private: len(got[4].Value) > 0 && got[4].Value[0] != 0,
		})
	}
	return out, nil
}
