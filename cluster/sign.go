package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/csrd/csrd/auth"
)

// Headers of a forwarded request. The node that authenticated and
// authorised the client names itself, the identity it established and the
// client's address; the signature binds them, the request line and the body
// to the secret the nodes share and to a time.
const (
	HeaderNode      = "X-Csrd-Node"
	HeaderIdentity  = "X-Csrd-Forwarded-Identity"
	HeaderClient    = "X-Csrd-Forwarded-Client"
	HeaderSignature = "X-Csrd-Node-Signature"
)

// maxSkew bounds how old (or how far ahead) a signature may be: enough for
// a forwarded request's transit and node clocks a little apart, not enough
// to replay one later.
const maxSkew = 60 * time.Second

// ErrBadSignature: a request claims to come from a node but its signature
// does not verify (wrong secret, altered, or too old).
var ErrBadSignature = errors.New("cluster: forwarded request signature does not verify")

// sign sets the forwarding headers of r.
func sign(r *http.Request, secret []byte, node string, body []byte, id auth.Identity, client string, now time.Time) error {
	js, err := json.Marshal(id)
	if err != nil {
		return fmt.Errorf("cluster: forward: %w", err)
	}
	idh := base64.RawURLEncoding.EncodeToString(js)
	r.Header.Set(HeaderNode, node)
	r.Header.Set(HeaderIdentity, idh)
	r.Header.Set(HeaderClient, client)
	ts := strconv.FormatInt(now.Unix(), 10)
	r.Header.Set(HeaderSignature, "t="+ts+",mac="+mac(secret, ts, node, r.Method, r.URL.RequestURI(), idh, client, body))
	return nil
}

// Signed reports whether r claims to be forwarded by a node.
func Signed(r *http.Request) bool { return r.Header.Get(HeaderSignature) != "" }

// Verify checks a forwarded request's signature against secret and returns
// what the forwarding node established: the identity, the client's
// address, the node's name. Any failure is ErrBadSignature.
func Verify(r *http.Request, secret []byte, body []byte, now time.Time) (id auth.Identity, client, node string, err error) {
	if len(secret) == 0 {
		return id, "", "", fmt.Errorf("%w: this node has no cluster.secret_file", ErrBadSignature)
	}
	var ts, got string
	for _, kv := range strings.Split(r.Header.Get(HeaderSignature), ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "t":
			ts = v
		case "mac":
			got = v
		}
	}
	sec, perr := strconv.ParseInt(ts, 10, 64)
	if perr != nil || got == "" {
		return id, "", "", fmt.Errorf("%w: malformed", ErrBadSignature)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxSkew || d < -maxSkew {
		return id, "", "", fmt.Errorf("%w: signed %v away from this node's clock", ErrBadSignature, d.Round(time.Second))
	}
	node, idh, client := r.Header.Get(HeaderNode), r.Header.Get(HeaderIdentity), r.Header.Get(HeaderClient)
	want := mac(secret, ts, node, r.Method, r.URL.RequestURI(), idh, client, body)
	if !hmac.Equal([]byte(got), []byte(want)) {
		return id, "", "", ErrBadSignature
	}
	js, derr := base64.RawURLEncoding.DecodeString(idh)
	if derr != nil || json.Unmarshal(js, &id) != nil || id.Name == "" {
		return id, "", "", fmt.Errorf("%w: identity unreadable", ErrBadSignature)
	}
	return id, client, node, nil
}

func mac(secret []byte, fields ...any) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("csrd-forward-v1"))
	for _, f := range fields {
		var b []byte
		switch v := f.(type) {
		case string:
			b = []byte(v)
		case []byte:
			sum := sha256.Sum256(v)
			b = sum[:]
		}
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		m.Write(n[:])
		m.Write(b)
	}
	return hex.EncodeToString(m.Sum(nil))
}
