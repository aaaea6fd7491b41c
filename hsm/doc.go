// Package hsm owns csrd's PKCS#11 token: opening and logging in to it, generating
// signing-only key pairs whose private halves never leave it, signing with them,
// storing the certificates issued for them next to them (same CKA_ID and
// CKA_LABEL), naming them with RFC 7512 PKCS#11 URIs, and finding, inspecting,
// listing and destroying them. It knows nothing of key
// records, policy or HTTP; callers name keys with a KeyRef (CKA_ID + CKA_LABEL).
//
// # One context per process
//
// Open (or Start, for a daemon that must come up while the token cannot be
// used yet: see recover.go) is called once, in main, and Close last. PKCS#11 login state belongs to
// the application, not the session, so a second Token on the same token would
// share (and could end) the first one's login; Open refuses that with
// ErrAlreadyOpen rather than let C_Login return CKR_USER_ALREADY_LOGGED_IN for
// any PIN.
//
// # Signing-only, for good
//
// Every template csrd generates with is written in templates.go: key pairs
// for crypto11 (RSA, ECDSA) and for the raw handle (EdDSA, in-token ML-DSA),
// and the sealing KEK. Private keys are sensitive, never extractable and may
// only sign; public keys may only verify; the KEK may only encrypt and
// decrypt. All are CKA_MODIFIABLE false and CKA_COPYABLE false, so a session
// holding the PIN cannot later turn CKA_DECRYPT, CKA_DERIVE, CKA_UNWRAP or
// CKA_WRAP on, nor copy an object with them on. The token must know
// CKA_COPYABLE (PKCS#11 2.40); only the KEK falls back for older tokens.
//
// # crypto11 plus a raw handle
//
// Key generation, signing, NewKeyID and FindKey go through
// github.com/ThalesGroup/crypto11: it keeps a logged-in session open for the
// life of the Token, pools read-write sessions (at most Config.MaxSessions,
// one of them the login session) and implements crypto.Signer on object handles.
// crypto11 cannot read arbitrary attributes, destroy by reference or search by
// class, so hsm also holds a raw github.com/miekg/pkcs11 handle on the same
// module. dlopen hands it the library instance crypto11 initialised, so its
// sessions are already logged in and object handles are shared. Its own
// C_Initialize answers CKR_CRYPTOKI_ALREADY_INITIALIZED on most modules and
// CKR_OK on those that count initialisations (p11-kit's client, used for
// remoting); Open accepts either and proves the shared instance by the
// login a fresh raw session sees (openRaw). A counted initialisation is
// C_Finalize'd again on disconnect; crypto11 finalises the module on Close.
// Maintenance sessions on the raw handle are at most 2 at a time.
//
// # The token profile
//
// At the first connection the Token reads the token's own answers
// (C_GetTokenInfo, every mechanism's info) and runs trial rounds (trial.go):
// per key type one key pair, generated with each template shape until one
// keeps every protective attribute and signs, its usage read back, a
// signature verified, the pair destroyed. Keys are then made by the
// profile (profile.go): its template shape, its signing, its sizes.
// CanGenerate answers from it without touching the token. Keys of the full
// shape that sign digests go through crypto11; others are made and used on
// the raw handle (rawkey.go) and sign whole messages where the token must
// hash (Key.SignMessage). docs/tokens.md has the tested tokens' profiles.
//
// # EdDSA and ML-DSA beside crypto11
//
// crypto11 v1.6.2 knows RSA and ECDSA only. Ed25519 and Ed448 key pairs
// (PKCS#11 3.0 CKK_EC_EDWARDS, CKM_EC_EDWARDS_KEY_PAIR_GEN, pure CKM_EDDSA)
// are generated, found and used on the raw handle with the same templates;
// a *Key hides which path holds it. ML-DSA alternative keys are *MLDSAKey:
// in the token when it lists PKCS#11 3.2 CKM_ML_DSA_KEY_PAIR_GEN and
// CKM_ML_DSA (see MLDSAStorage), otherwise derived in process with circl from
// a 32-byte seed drawn from C_GenerateRandom, of which only a sealed copy is
// kept. The mechanism list is read at every connect. Like crypto11 keys,
// Edwards and in-token ML-DSA keys find their handles again after a
// reconnect, and the KEK cache is dropped with the connection.
//
// # Sealing
//
// seal/unseal run AES-256-GCM inside the token (C_Encrypt/C_Decrypt) under
// one token-resident, sensitive, never-extractable AES key labelled KEKLabel,
// found or created on first use and then cached by handle (no C_FindObjects
// per request). The associated data binds the record id, key label and
// algorithm (SealBinding) and the KEK's CKA_ID, which the blob names so
// several KEKs can coexist. Anything that does not open is ErrSealed.
//
// # The audit key
//
// AuditKey returns the token's audit key (AuditKeyLabel), an ECDSA P-256
// pair generated in the token on first use through crypto11 — every token
// csrd supports has it — with the record keys' templates plus
// CKA_MODIFIABLE and CKA_COPYABLE false: sensitive, never extractable,
// sign-only, and no PIN holder can widen what it may do. It signs
// checkpoints of the audit log (package checkpoint); a key labelled alike
// that was not generated so is never used. Like the KEK it is found once
// and then cached (its *Key finds its handles again after a reconnect).
//
// # Calls cannot be cancelled
//
// PKCS#11 has no cancellation: once C_GenerateKeyPair or C_Sign is running, it
// runs to completion (RSA 4096 generation takes seconds on SoftHSM, 8192 can
// take minutes). Every method checks ctx and refuses to start when it is done;
// the wait for a free session is bounded by Config.PoolWaitTimeout (and ctx for
// raw sessions); after that the call is bounded only by the token. Callers that
// need a deadline on the whole operation must run it in a goroutine and be ready
// to find its result (a key pair) later, which reconciliation does. Close waits
// for running calls.
//
// # Losing and regaining the token
//
// A monitor goroutine checks the token every Config.HealthInterval and when an
// operation sees a connection-loss code; after a failed check the Token
// refuses work (ErrUnavailable, at once), waits for running calls, and
// reconnects with backoff: see recover.go. Healthy reports the state without
// touching the token, Ping checks it.
//
// # PKCS#11 URIs
//
// ParseURI reads RFC 7512 URIs, KeyURI writes one for a key, and FindKeyByURI
// turns one into a crypto.Signer (csrd's TLS server key may live in the token).
//
// # Errors
//
// PKCS#11, crypto11 and session-pool errors are translated once, here, into
// *Error values whose Unwrap returns a sentinel (ErrNotFound, ErrLogin,
// ErrUnavailable, ...) and which name the operation, the token and the
// PKCS#11 return value. What the token refuses of a request (a template,
// an attribute, a usage) is ErrRefused, never ErrUnavailable: modules
// answer refusals with CKR_GENERAL_ERROR too, so a generation or signature
// failing that way while the token otherwise answers is judged a refusal
// (Token.judge). Nothing outside hsm inspects pkcs11.Error. No error
// message contains the PIN.
package hsm
