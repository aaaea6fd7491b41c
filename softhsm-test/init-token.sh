#!/usr/bin/env bash
# init-token.sh DIR LABEL
#
# Creates a throw-away SoftHSM v2 token for csrd development and tests:
#   DIR/softhsm2.conf   config whose token directory is DIR/tokens
#   DIR/tokens/         SoftHSM object store
#   DIR/hsm-pin         user PIN (mode 0600, no trailing newline)
#   DIR/so-pin          SO PIN   (mode 0600, no trailing newline)
# and initialises a token labelled LABEL in the first free slot.
#
# Idempotent: an existing token with LABEL is left alone, and existing PIN files are
# reused, so running it again with a second LABEL adds a token with the same PINs
# (multi-token tests rely on this).
#
# DEV TOKEN ONLY: softhsm2-util has no option to read a PIN from a file, so the PINs
# are briefly visible on its argv (ps, /proc/PID/cmdline) while it runs. That is
# acceptable for a throw-away test token; production PINs never go on argv.
set -euo pipefail

usage() { echo "usage: $0 DIR LABEL" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
dir=$1
label=$2
[[ -n "$dir" && -n "$label" ]] || usage
# SoftHSM token labels are at most 32 bytes (CK_TOKEN_INFO.label).
if (( ${#label} > 32 )); then
	echo "init-token.sh: label '$label' longer than 32 characters" >&2
	exit 2
fi

if ! command -v softhsm2-util >/dev/null 2>&1; then
	echo "init-token.sh: softhsm2-util not found; run \`make deps\` (installs softhsm2)" >&2
	exit 1
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
template=$here/softhsm2.conf.in

umask 077
mkdir -p "$dir"
chmod 0700 "$dir"
dir=$(cd "$dir" && pwd) # absolute: the config must not depend on the caller's cwd
mkdir -p "$dir/tokens"
conf=$dir/softhsm2.conf
if [[ ! -f "$conf" ]]; then
	# bash >= 5.2 would expand '&' in the replacement to the match; keep it literal.
	shopt -u patsub_replacement 2>/dev/null || true
	tmpl=$(<"$template")
	printf '%s\n' "${tmpl//@TOKENDIR@/$dir/tokens}" >"$conf.tmp"
	mv "$conf.tmp" "$conf"
fi

# randpin FILE: 24 alphanumeric characters from /dev/urandom, written once.
randpin() {
	local f=$1 pin
	[[ -s "$f" ]] && return 0
	# head closes the pipe early; tr's SIGPIPE must not trip pipefail.
	pin=$(set +o pipefail; LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24)
	if (( ${#pin} != 24 )); then
		echo "init-token.sh: could not read random PIN from /dev/urandom" >&2
		exit 1
	fi
	printf '%s' "$pin" >"$f.tmp"
	chmod 0600 "$f.tmp"
	mv "$f.tmp" "$f"
}
randpin "$dir/hsm-pin"
randpin "$dir/so-pin"

export SOFTHSM2_CONF=$conf

# --show-slots prints "Label:            <label>" for initialised tokens.
if softhsm2-util --show-slots 2>/dev/null |
	sed -n 's/^[[:space:]]*Label:[[:space:]]*//p' | sed 's/[[:space:]]*$//' |
	grep -Fxq -- "$label"; then
	echo "init-token.sh: token '$label' already exists in $conf" >&2
else
	softhsm2-util --init-token --free --label "$label" \
		--pin "$(cat "$dir/hsm-pin")" --so-pin "$(cat "$dir/so-pin")" >/dev/null
	echo "init-token.sh: initialised token '$label' in $conf" >&2
fi

printf 'export SOFTHSM2_CONF=%q\n' "$conf"
