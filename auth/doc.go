// Package auth owns who may call csrd and what they may do: the auth file
// (users with argon2id or bcrypt password hashes, hashed API tokens, mTLS
// client certificates, each with its grants), verifying Basic and Bearer
// credentials and verified client certificates against it, and throttling
// sources that keep failing.
//
// It knows nothing about HTTP: package api extracts the credentials and
// the source address from a request and turns this package's errors into
// 401/429/503 (and grants into 403).
//
// # Guessing
//
// What can be guessed (passwords; API tokens in principle) is throttled
// per source address and per claimed identity (Throttle): an attempt is
// reserved before it is checked, so parallel guesses cannot outrun the
// count, and a success forgives only its own identity's failures. What
// cannot be guessed (a client certificate the TLS layer verified, a valid
// 256-bit token) is let through even from a locked-out source. Slow
// password verifications run in a few slots behind a bounded queue with a
// per-source share; what does not fit is refused at once. Unknown user
// names are verified against a dummy of the file's costliest hash, and
// users whose hash is cheaper than the default are warned about at load.
//
// # Secrets
//
// Passwords are stored only as slow hashes (argon2id, RFC 9106, or bcrypt).
// API tokens are 256-bit random strings, so a fast SHA-256 is enough to store
// them (no dictionary to attack) and they are compared in constant time. A
// successful slow verification is remembered for a few minutes under an HMAC
// with a per-process key, so a client that sends Basic credentials on every
// request (Keyfactor's SDK does) does not cost an argon2 run each time; the
// cache never holds a password or a hash an attacker could use offline.
//
// # The auth file
//
// YAML, read at start-up and re-read when it changes (at most once a second),
// so `csrctl user add` takes effect without a restart; a file that no longer
// parses is logged and the previous version stays in force. It must not be
// writable by group or others nor readable by others.
package auth
