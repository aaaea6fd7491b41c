// Package tlsconfig builds the TLS configuration csrd serves HTTPS with:
// the certificate chain from a PEM file, the private key from a PEM file or
// — through a PKCS#11 URI — from the HSM token itself, TLS 1.2 as the floor,
// and, when a client CA file is given, mTLS (client certificates requested
// and verified; the verified chain is on http.Request.TLS for the
// authentication layer).
//
// The files are read again on Reload (csrd calls it on SIGHUP), so a renewed
// certificate is picked up without a restart; a reload that fails keeps the
// previous, working configuration.
package tlsconfig
