// Package csr owns the bytes of a PKCS#10 certificate signing request
// (RFC 2986): it parses subject DNs as Keyfactor users write them (RFC 4514
// with the usual Microsoft/OpenSSL extensions), validates and normalises
// subject alternative names, encodes both to DER by hand and assembles and
// signs the CertificationRequestInfo with any crypto.Signer.
//
// It is deliberately pure: no HTTP, no PKCS#11, no SQL. The HSM-backed key is
// just a crypto.Signer here, so the same code runs against software keys in
// tests.
//
// Why not crypto/x509.CreateCertificateRequest and pkix.Name: pkix.Name
// merges attributes into fixed fields and re-orders them, cannot express
// multi-valued RDNs in the order given, cannot emit otherName (UPN) SANs, and
// does not know Ed448. A CSR generator must emit exactly the subject the user
// asked for, so the DN and the CertificationRequestInfo are built here with
// encoding/asn1.
//
// Hybrid CSRs (BuildHybrid) carry an alternative public key and signature
// in the attributes 2.5.29.72/73/74, as BouncyCastle and EJBCA expect;
// ML-DSA keys use RFC 9881's SubjectPublicKeyInfo. csr/csrtest checks CSRs
// for tests without using this package.
//
// Order convention: a DN (type DN) keeps RDNs in string order, most specific
// first as RFC 4514 writes them ("CN=host,O=Org,C=US"); DER (DN.DER) emits
// them reversed, least specific first, as X.501 RDNSequence requires.
//
// Errors: subject problems are *DNError (errors.Is ErrInvalidDN) carrying the
// byte position in the input string and the attribute; SAN problems are
// *SANError (errors.Is ErrInvalidSAN). Both are meant to be shown to the
// caller of the REST API as a 400.
package csr
