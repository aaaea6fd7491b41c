package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/csrd/csrd/acmeca"
	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/enroll"
	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
	"github.com/csrd/csrd/policy"
	"github.com/csrd/csrd/store"
)

// ErrorCode values are csrd's stable error codes, in Keyfactor's "0x..."
// form. The table in README.md lists them; never renumber one.
const (
	CodeMalformedBody     = "0xA0010001" // 400 body is not valid JSON / UTF-8
	CodeInvalidField      = "0xA0010002" // 400 a field is missing, of the wrong type or out of range
	CodeMissingHeader     = "0xA0010003" // 400 X-Keyfactor-Requested-With missing
	CodeUnsupportedMedia  = "0xA0010004" // 415 Content-Type is not JSON
	CodeBodyTooLarge      = "0xA0010005" // 413 body over the limit
	CodeUnsupportedAPIVer = "0xA0010006" // 400 X-Keyfactor-Api-Version not 1
	CodeInvalidSubject    = "0xA0020001" // 400 Subject DN does not parse or breaks a bound
	CodeInvalidSAN        = "0xA0020002" // 400 a SAN key or value is invalid
	CodeInvalidCert       = "0xA0020003" // 400 an imported certificate is malformed, not valid now, or its chain does not fit
	CodePolicy            = "0xA0030001" // 400 the policy refuses the request
	CodeNotSupported      = "0xA0030002" // 400 this server cannot do it (yet)
	CodeNotExtractable    = "0xA0030003" // 400 a private key was asked for; csrd keys never leave the HSM
	CodeNotEnrollable     = "0xA0030004" // 400 Enrollment/CSR: not a CSR of a key csrd holds pending, unknown CA, names ACME cannot certify
	CodeNotFound          = "0xA0040001" // 404 no such route or record
	CodeMethodNotAllowed  = "0xA0040002" // 405
	CodeConflict          = "0xA0040003" // 409 the record is not in a state that allows it
	CodeHSMUnavailable    = "0xA0050001" // 503 token or session unavailable, PIN refused
	CodeHSMFull           = "0xA0050002" // 507 token has no room for another key
	CodeStoreUnavailable  = "0xA0050003" // 503 database busy or unavailable
	CodeStoreFull         = "0xA0050004" // 507 database disk full
	CodeBusy              = "0xA0050005" // 503 too many key generations in flight
	CodeIdentityBusy      = "0xA0050006" // 429 this identity has limits.max_generations_per_identity generations in flight
	CodeAuthBusy          = "0xA0050007" // 503 too many password verifications waiting
	CodeHSMRefused        = "0xA0050008" // 500 the HSM token refused what csrd asked of it; retrying will not help
	CodeUnauthenticated   = "0xA0060001" // 401 no or wrong credentials
	CodeForbidden         = "0xA0060002" // 403 the identity may not do this
	CodeThrottled         = "0xA0060003" // 429 too many failed (or in-flight) authentications from this address
	CodeCARefused         = "0xA0070001" // 502 the CA refused (account, EAB, identifier, challenge, CSR); its problem detail in the message
	CodeCAUnavailable     = "0xA0070002" // 503 the CA could not be reached or failed on its side; retry
	CodeInternal          = "0xA00F0001" // 500 anything else; details only in the log
)

// ErrorBody is Keyfactor's error format.
type ErrorBody struct {
	ErrorCode string `json:"ErrorCode"`
	Message   string `json:"Message"`
}

// Error is an error raised by api itself (header, body and field checks).
type Error struct {
	Status int
	Code   string
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("api: %d %s: %s", e.Status, e.Code, e.Msg) }

func badField(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalidField, Msg: fmt.Sprintf(format, args...)}
}

// retryAfter is what a 503 tells clients; long enough for a token to come
// back or a burst to drain, short enough for enrollment scripts.
const retryAfter = 5

// mapped is the client-facing view of an error.
type mapped struct {
	status int
	code   string
	msg    string
	// logCause: the error is the server's fault; log it at error level.
	logCause bool
}

// classify maps every error a handler can return to what the client sees.
// It is the only place that knows about domain error types.
func classify(err error) mapped {
	var (
		apiErr  *Error
		httpErr *echo.HTTPError
		polErr  *policy.Error
		dnErr   *csr.DNError
		sanErr  *csr.SANError
	)
	var batchErr *lifecycle.BatchError
	switch {
	case errors.As(err, &apiErr):
		return mapped{status: apiErr.Status, code: apiErr.Code, msg: apiErr.Msg}
	case errors.As(err, &batchErr):
		return classifyBatch(batchErr)
	case errors.Is(err, lifecycle.ErrNotFound):
		return mapped{status: http.StatusNotFound, code: CodeNotFound, msg: clientText(err)}
	case errors.Is(err, lifecycle.ErrConflict):
		return mapped{status: http.StatusConflict, code: CodeConflict, msg: clientText(err)}
	case errors.Is(err, lifecycle.ErrInvalidCertificate):
		return mapped{status: http.StatusBadRequest, code: CodeInvalidCert, msg: clientText(err)}
	case errors.Is(err, lifecycle.ErrNotExtractable):
		return mapped{status: http.StatusBadRequest, code: CodeNotExtractable, msg: clientText(err)}
	case errors.Is(err, enroll.ErrInvalid):
		return mapped{status: http.StatusBadRequest, code: CodeNotEnrollable, msg: clientText(err)}
	case errors.Is(err, enroll.ErrNotFound):
		return mapped{status: http.StatusNotFound, code: CodeNotFound, msg: clientText(err)}
	case errors.Is(err, enroll.ErrConflict):
		return mapped{status: http.StatusConflict, code: CodeConflict, msg: clientText(err)}
	case errors.Is(err, acmeca.ErrRefused):
		return mapped{status: http.StatusBadGateway, code: CodeCARefused, msg: caText(err)}
	case errors.Is(err, acmeca.ErrUnavailable):
		return mapped{status: http.StatusServiceUnavailable, code: CodeCAUnavailable, msg: caText(err) + "; try again later", logCause: true}
	case errors.As(err, &polErr):
		return mapped{status: http.StatusBadRequest, code: CodePolicy, msg: polErr.Message()}
	case errors.Is(err, lifecycle.ErrNotSupported):
		return mapped{status: http.StatusBadRequest, code: CodeNotSupported, msg: clientText(err)}
	case errors.As(err, &dnErr), errors.Is(err, csr.ErrInvalidDN):
		return mapped{status: http.StatusBadRequest, code: CodeInvalidSubject, msg: clientText(err)}
	case errors.As(err, &sanErr), errors.Is(err, csr.ErrInvalidSAN):
		return mapped{status: http.StatusBadRequest, code: CodeInvalidSAN, msg: clientText(err)}
	case errors.Is(err, hsm.ErrRefused):
		return mapped{status: http.StatusInternalServerError, code: CodeHSMRefused, msg: hsmText(err, true), logCause: true}
	case errors.Is(err, hsm.ErrUnsupported):
		return mapped{status: http.StatusBadRequest, code: CodeNotSupported, msg: hsmText(err, false)}
	case errors.Is(err, hsm.ErrTokenFull):
		return mapped{status: http.StatusInsufficientStorage, code: CodeHSMFull, msg: "the HSM token has no room for another key", logCause: true}
	case errors.Is(err, lifecycle.ErrUnavailable):
		return mapped{status: http.StatusServiceUnavailable, code: CodeHSMUnavailable, msg: clientText(err) + "; try again later", logCause: true}
	case errors.Is(err, hsm.ErrUnavailable), errors.Is(err, hsm.ErrLogin), errors.Is(err, hsm.ErrTokenNotFound),
		errors.Is(err, hsm.ErrModule), errors.Is(err, hsm.ErrNoPIN):
		msg := "the HSM is unavailable; try again later"
		if why := hsm.Reason(err); hsm.Refused(err) {
			// A token that is not connected says which and why, in
			// hsm's fixed phrases (never a path, PIN or code).
			msg = "the HSM is unavailable (" + why + "); try again later"
		}
		return mapped{status: http.StatusServiceUnavailable, code: CodeHSMUnavailable, msg: msg, logCause: true}
	case errors.Is(err, store.ErrStorageFull):
		return mapped{status: http.StatusInsufficientStorage, code: CodeStoreFull, msg: "the key database has no space left; no key was kept", logCause: true}
	case errors.Is(err, store.ErrBusy), errors.Is(err, store.ErrUnavailable):
		return mapped{status: http.StatusServiceUnavailable, code: CodeStoreUnavailable, msg: "the key database is unavailable; try again later", logCause: true}
	case errors.Is(err, store.ErrNotFound):
		return mapped{status: http.StatusNotFound, code: CodeNotFound, msg: "no such record"}
	case errors.Is(err, store.ErrConflict):
		return mapped{status: http.StatusConflict, code: CodeConflict, msg: "the record is not in a state that allows this"}
	case errors.Is(err, context.DeadlineExceeded):
		return mapped{status: http.StatusServiceUnavailable, code: CodeHSMUnavailable, msg: "the request timed out waiting for the HSM; try again later", logCause: true}
	case errors.As(err, &httpErr):
		return classifyHTTP(httpErr)
	}
	return mapped{status: http.StatusInternalServerError, code: CodeInternal, logCause: true}
}

// classifyBatch keeps the failure's status and code and says which ids were
// done; the failure's own text goes out only when it is meant for clients.
func classifyBatch(be *lifecycle.BatchError) mapped {
	m := classify(be.Err)
	msg := m.msg
	if msg == "" {
		msg = "internal error"
	}
	m.msg = fmt.Sprintf("Id %d failed: %s", be.Failed, msg)
	if len(be.Done) > 0 {
		m.msg += "; deleted before it: " + joinIDs(be.Done)
	}
	if len(be.Remaining) > 0 {
		m.msg += "; not attempted: " + joinIDs(be.Remaining)
	}
	return m
}

func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ", ")
}

func classifyHTTP(he *echo.HTTPError) mapped {
	switch he.Code {
	case http.StatusNotFound:
		return mapped{status: he.Code, code: CodeNotFound, msg: "no such endpoint"}
	case http.StatusMethodNotAllowed:
		return mapped{status: he.Code, code: CodeMethodNotAllowed, msg: "method not allowed on this endpoint"}
	case http.StatusRequestEntityTooLarge:
		return mapped{status: he.Code, code: CodeBodyTooLarge, msg: "request body too large"}
	}
	if he.Code >= 400 && he.Code < 500 {
		return mapped{status: he.Code, code: CodeInvalidField, msg: http.StatusText(he.Code)}
	}
	return mapped{status: http.StatusInternalServerError, code: CodeInternal, logCause: true}
}

// hsmText says which token refused (refused true) or cannot do (false)
// which operation, with the PKCS#11 return value: the fields of an
// hsm.Error, never its cause (which may quote the module).
func hsmText(err error, refused bool) string {
	token, what := "the HSM token", "this request"
	var he *hsm.Error
	if errors.As(err, &he) {
		if he.Token != "" {
			token = fmt.Sprintf("HSM token %q", he.Token)
		}
		what = he.Op
		if he.CKR != 0 {
			what += " (" + he.CodeName() + ")"
		}
	}
	if refused {
		return token + " refused " + what + "; the same request will fail again: the token does not accept what csrd asks of it (csrctl token probe shows what it accepts)"
	}
	return token + " cannot do this: " + what
}

// clientText strips the package prefix ("csr: ") from a domain error that
// is meant to be read by the client.
func clientText(err error) string {
	s := err.Error()
	for _, p := range []string{"csr: ", "policy: ", "lifecycle: ", "enroll: "} {
		if len(s) > len(p) && s[:len(p)] == p {
			return s[len(p):]
		}
	}
	return s
}

// caText is a CA failure as the client reads it: which CA, what csrd was
// doing, and the CA's own problem detail (no csrd internals).
func caText(err error) string {
	var ce *acmeca.Error
	if errors.As(err, &ce) {
		return fmt.Sprintf("CA %q: %s: %s", ce.CA, ce.Op, ce.Detail)
	}
	return "the CA failed"
}

// errorHandler is echo's HTTPErrorHandler: the one place errors become
// responses. A 5xx never carries err.Error(); the log line with the request
// id does.
func errorHandler(log zerolog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		m := classify(err)
		rid := c.Response().Header().Get(echo.HeaderXRequestID)
		if m.msg == "" {
			m.msg = "internal error; the server log has the details (request id " + rid + ")"
		}
		l := requestLogger(c, log)
		if m.logCause {
			l.Error().Err(err).Int("status", m.status).Str("code", m.code).Msg("request failed")
		} else {
			l.Info().Int("status", m.status).Str("code", m.code).Str("reason", m.msg).Msg("request refused")
		}
		if m.status == http.StatusServiceUnavailable {
			c.Response().Header().Set("Retry-After", strconv.Itoa(retryAfter))
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(m.status)
			return
		}
		_ = c.JSON(m.status, ErrorBody{ErrorCode: m.code, Message: m.msg})
	}
}
