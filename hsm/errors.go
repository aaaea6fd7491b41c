package hsm

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
	"github.com/thales-e-security/pool"
)

// Sentinel errors. Every error hsm returns from a PKCS#11 operation is an *Error
// whose Unwrap returns one of these (or nil for a code with no better class), so
// callers match with errors.Is and never see a pkcs11.Error.
var (
	// ErrNotFound: no object matched the key reference, or a handle is gone.
	ErrNotFound = errors.New("hsm: not found")
	// ErrTokenNotFound: no token carries the configured label.
	ErrTokenNotFound = errors.New("hsm: token not found")
	// ErrLogin: the PIN was rejected or the session is not logged in.
	ErrLogin = errors.New("hsm: login failed")
	// ErrUnavailable: session, device or token gone, or no session became free
	// within PoolWaitTimeout. Usually transient: retry or report not-ready.
	ErrUnavailable = errors.New("hsm: unavailable")
	// ErrTokenFull: the token has no room for more objects.
	ErrTokenFull = errors.New("hsm: token full")
	// ErrKeyMismatch: the token returned a key other than the one asked for.
	ErrKeyMismatch = errors.New("hsm: generated key does not match spec")
	// ErrUnsupported: key type, size, curve or mechanism not supported.
	ErrUnsupported = errors.New("hsm: unsupported")
	// ErrRefused: the token refused this request, not the service: a
	// template, attribute or usage it does not accept, or a failure
	// (CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED) while it otherwise answers
	// (see Token.judge). The same request will fail the same way again;
	// the token stays in service.
	ErrRefused = errors.New("hsm: refused by the token")
	// ErrNotSignOnly: the token cannot restrict keys of this type to
	// signing, and Config.RequireSignOnly forbids other keys. It is an
	// ErrUnsupported, found before anything is created.
	ErrNotSignOnly = fmt.Errorf("%w: keys cannot be restricted to signing", ErrUnsupported)
	// ErrAlreadyOpen: this process is already logged in to the token, so Open
	// could not check the PIN (see Open).
	ErrAlreadyOpen = errors.New("hsm: token already open in this process")
	// ErrModule: the PKCS#11 module file is missing or cannot be loaded.
	ErrModule = errors.New("hsm: PKCS#11 module cannot be loaded")
	// ErrNoPIN: the PIN could not be read (PIN file missing, unreadable,
	// too open or empty).
	ErrNoPIN = errors.New("hsm: PIN unavailable")
)

// Refused reports whether err is a refusal by a Token that is not connected
// (its Reason names the token and why).
func Refused(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.why != ""
}

// Reason says in a fixed phrase why err keeps a token from being used, for
// readiness reports and client messages: never a path, a PIN or a code.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) && e.why != "" {
		return e.why
	}
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrModule):
		return "PKCS#11 module cannot be loaded"
	case errors.Is(err, ErrNoPIN):
		return "PIN file missing, unreadable or empty"
	case errors.Is(err, ErrLogin):
		return "PIN refused; waiting for a different PIN in the PIN file"
	case errors.Is(err, ErrTokenNotFound):
		return "no token with this label found"
	case errors.Is(err, ErrAlreadyOpen):
		return "already open in this process"
	}
	return "unavailable; reconnecting"
}

// Error is an HSM failure: the operation, the PKCS#11 return code if there was one
// (0 otherwise, since CKR_OK never fails), and the class of failure.
type Error struct {
	Op    string // what hsm was doing, e.g. "generate key pair"
	Token string // label of the token it was done on, "" when none was involved yet
	CKR   uint   // PKCS#11 CK_RV, 0 when the failure did not come from the module
	Err   error  // sentinel class (ErrLogin, ...) or nil

	cause error  // original error, for the message only; never unwrapped
	why   string // Reason's phrase, when the operation was refused for a known one
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("hsm: ")
	b.WriteString(e.Op)
	if e.Token != "" {
		fmt.Fprintf(&b, " on token %q", e.Token)
	}
	if e.CKR != 0 {
		b.WriteString(": ")
		b.WriteString(e.CodeName())
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "hsm: "))
	}
	// The pkcs11.Error text only repeats the code; what crypto11 wrapped around
	// it, or a non-PKCS#11 cause, is context worth logging.
	if e.cause != nil {
		msg := e.cause.Error()
		var p11 pkcs11.Error
		if errors.As(e.cause, &p11) {
			msg = strings.TrimSuffix(strings.TrimSuffix(msg, p11.Error()), ": ")
		}
		if msg != "" {
			b.WriteString(": ")
			b.WriteString(msg)
		}
	}
	return b.String()
}

// Unwrap returns the sentinel class, so errors.Is(err, ErrLogin) works; the
// underlying pkcs11.Error deliberately stays hidden.
func (e *Error) Unwrap() error { return e.Err }

// Detail returns what the error says beyond its class and code: for errors
// hsm raises itself (CanGenerate's, say), the reason in words.
func (e *Error) Detail() string {
	if e.cause == nil {
		return ""
	}
	return e.cause.Error()
}

// CodeName returns the CKR_* name of e.CKR ("" when there is none), e.g. for
// metrics labels and log fields.
func (e *Error) CodeName() string {
	if e.CKR == 0 {
		return ""
	}
	return ckrName(e.CKR)
}

// ckrNames has names miekg/pkcs11 v1.1.2's table lacks.
var ckrNames = map[uint]string{
	pkcs11.CKR_CURVE_NOT_SUPPORTED: "CKR_CURVE_NOT_SUPPORTED",
	ckrActionProhibited:            "CKR_ACTION_PROHIBITED",
}

// ckrActionProhibited (PKCS#11 3.0) answers C_DestroyObject on an object
// with CKA_DESTROYABLE false, such as the sealing key.
const ckrActionProhibited = 0x1b

// ckrName names a CK_RV, falling back to hex for vendor codes.
func ckrName(rv uint) string {
	if n, ok := ckrNames[rv]; ok {
		return n
	}
	s := pkcs11.Error(rv).Error() // "pkcs11: 0x%X: NAME"
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s[i+2:], "CKR_") {
		return s[i+2:]
	}
	return fmt.Sprintf("CKR_0x%X", rv)
}

// ckrClass maps PKCS#11 return codes to sentinel classes. Codes not listed
// produce an *Error with a nil Err: a bug or an unexpected token state, not a
// condition callers are expected to branch on.
var ckrClass = map[uint]error{
	pkcs11.CKR_OBJECT_HANDLE_INVALID: ErrNotFound,
	pkcs11.CKR_KEY_HANDLE_INVALID:    ErrNotFound,

	pkcs11.CKR_SLOT_ID_INVALID:          ErrTokenNotFound,
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:     ErrTokenNotFound,
	pkcs11.CKR_TOKEN_NOT_PRESENT:        ErrUnavailable,
	pkcs11.CKR_DEVICE_REMOVED:           ErrUnavailable,
	pkcs11.CKR_DEVICE_ERROR:             ErrUnavailable,
	pkcs11.CKR_GENERAL_ERROR:            ErrUnavailable,
	pkcs11.CKR_SESSION_HANDLE_INVALID:   ErrUnavailable,
	pkcs11.CKR_SESSION_CLOSED:           ErrUnavailable,
	pkcs11.CKR_SESSION_COUNT:            ErrUnavailable,
	pkcs11.CKR_HOST_MEMORY:              ErrUnavailable,
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED: ErrUnavailable,
	pkcs11.CKR_FUNCTION_CANCELED:        ErrUnavailable,

	pkcs11.CKR_PIN_INCORRECT:            ErrLogin,
	pkcs11.CKR_PIN_INVALID:              ErrLogin,
	pkcs11.CKR_PIN_LEN_RANGE:            ErrLogin,
	pkcs11.CKR_PIN_EXPIRED:              ErrLogin,
	pkcs11.CKR_PIN_LOCKED:               ErrLogin,
	pkcs11.CKR_USER_NOT_LOGGED_IN:       ErrLogin,
	pkcs11.CKR_USER_PIN_NOT_INITIALIZED: ErrLogin,
	pkcs11.CKR_USER_TYPE_INVALID:        ErrLogin,

	pkcs11.CKR_DEVICE_MEMORY: ErrTokenFull,

	pkcs11.CKR_MECHANISM_INVALID:       ErrUnsupported,
	pkcs11.CKR_MECHANISM_PARAM_INVALID: ErrUnsupported,
	pkcs11.CKR_KEY_SIZE_RANGE:          ErrUnsupported,
	pkcs11.CKR_KEY_TYPE_INCONSISTENT:   ErrUnsupported,
	pkcs11.CKR_DOMAIN_PARAMS_INVALID:   ErrUnsupported,
	pkcs11.CKR_FUNCTION_NOT_SUPPORTED:  ErrUnsupported,
	pkcs11.CKR_CURVE_NOT_SUPPORTED:     ErrUnsupported,

	// What the token will not accept of csrd's request: never an outage.
	pkcs11.CKR_TEMPLATE_INCONSISTENT:      ErrRefused,
	pkcs11.CKR_TEMPLATE_INCOMPLETE:        ErrRefused,
	pkcs11.CKR_ATTRIBUTE_TYPE_INVALID:     ErrRefused,
	pkcs11.CKR_ATTRIBUTE_VALUE_INVALID:    ErrRefused,
	pkcs11.CKR_ATTRIBUTE_READ_ONLY:        ErrRefused,
	pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED: ErrRefused,
	ckrActionProhibited:                   ErrRefused,
}

// wrap translates err from crypto11, miekg/pkcs11 or the session pool into an
// *Error for op. It is the only place hsm looks inside those errors. nil stays
// nil; an *Error or context error passes through unchanged.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var he *Error
	if errors.As(err, &he) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	e := &Error{Op: op, cause: err}
	var p11 pkcs11.Error
	switch {
	case errors.As(err, &p11): // crypto11 wraps with %w or pkg/errors, both unwrap
		e.CKR = uint(p11)
		e.Err = ckrClass[e.CKR]
	case errors.Is(err, pool.ErrTimeout), errors.Is(err, pool.ErrClosed):
		// crypto11's session pool: no session within PoolWaitTimeout, or closed.
		e.Err = ErrUnavailable
	}
	return e
}

// withToken records the token an *Error happened on; other errors pass.
func withToken(err error, label string) error {
	var e *Error
	if errors.As(err, &e) && e.Token == "" {
		e.Token = label
	}
	return err
}

// classErr builds an *Error that did not come from the module.
func classErr(op string, class error, format string, args ...any) error {
	e := &Error{Op: op, Err: class}
	if format != "" {
		e.cause = fmt.Errorf(format, args...)
	}
	return e
}

// judge decides what a failed request means when the module says nothing
// useful: CKR_GENERAL_ERROR and CKR_FUNCTION_FAILED are what many modules
// answer a template or usage they refuse (tpm2-pkcs11 among them), and also
// what a failing device answers (SoftHSM, when it cannot write its store).
// What tells them apart is what else holds. If this token has carried out
// the same request before (proof: the trial at the first connection or an
// earlier success, see proved), the request is not the problem and the
// failure is the token's: ErrUnavailable. Otherwise the token is asked
// again, cheaply (Ping: token info and a logged-in session): if it
// answers, the failure was a refusal of this request (ErrRefused), and
// neither the client nor the pool should wait for the token to come back;
// if it does not, the token is unavailable. Other errors pass unchanged.
func (t *Token) judge(ctx context.Context, err error, proof string) error {
	var e *Error
	if !errors.As(err, &e) || errors.Is(e.Err, ErrRefused) ||
		e.CKR != pkcs11.CKR_GENERAL_ERROR && e.CKR != pkcs11.CKR_FUNCTION_FAILED {
		return err
	}
	judged := *e
	judged.Token = t.label
	switch _, done := t.proofs.Load(proof); {
	case done:
		judged.Err = ErrUnavailable
	case t.Ping(context.WithoutCancel(ctx)) != nil:
		judged.Err = ErrUnavailable
	default:
		judged.Err = ErrRefused
	}
	return &judged
}

// judgeSign is judge for a signature by a key of type typ.
func (t *Token) judgeSign(typ KeyType, err error) error {
	return t.judge(context.Background(), err, signProof(typ))
}

// proved records that the token carried out the request named by proof.
func (t *Token) proved(proof string) { t.proofs.LoadOrStore(proof, struct{}{}) }

// generateProof and signProof name requests for judge: a generation of one
// spec, a signature by one key type.
func generateProof(spec KeySpec) string { return "generate " + spec.String() }
func signProof(typ KeyType) string      { return "sign " + typ.String() }
