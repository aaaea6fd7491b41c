#!/usr/bin/env bash
# tpm-token.sh DIR LABEL
#
# Creates a throw-away tpm2-pkcs11 token for csrd tests and development, the
# TPM counterpart of init-token.sh:
#   DIR/store/    the tpm2-pkcs11 store (TPM2_PKCS11_STORE): a SQLite file
#                 holding the token's metadata and its keys wrapped by the TPM
#   DIR/hsm-pin   user PIN (mode 0600, no trailing newline)
#   DIR/so-pin    SO PIN   (mode 0600, no trailing newline)
# with one primary object in the TPM's owner hierarchy and a token labelled
# LABEL under it.
#
# The TPM must already answer on the TCTI named by TPM2_PKCS11_TCTI (the
# test fixture starts swtpm, a private D-Bus session bus and tpm2-abrmd on
# it: fixture/tpm.go). tpm2_ptool talks to the TPM through TPM2TOOLS_TCTI,
# which is set to the same TCTI here.
#
# Idempotent like init-token.sh: an existing store and an existing token
# with LABEL are left alone, existing PIN files are reused, so running it
# again with a second LABEL adds a token with the same PINs.
#
# TEST TOKEN ONLY: tpm2_ptool takes PINs on its command line only, so they
# are briefly visible on argv while it runs.
set -euo pipefail

usage() { echo "usage: $0 DIR LABEL" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
dir=$1
label=$2
[[ -n "$dir" && -n "$label" ]] || usage
if (( ${#label} > 32 )); then
	echo "tpm-token.sh: label '$label' longer than 32 characters" >&2
	exit 2
fi
if ! command -v tpm2_ptool >/dev/null 2>&1; then
	echo "tpm-token.sh: tpm2_ptool not found; run \`make deps\` (installs libtpm2-pkcs11-tools)" >&2
	exit 1
fi
: "${TPM2_PKCS11_TCTI:?tpm-token.sh: TPM2_PKCS11_TCTI must name the TPM (e.g. tabrmd:bus_type=session)}"
export TPM2TOOLS_TCTI=$TPM2_PKCS11_TCTI

umask 077
mkdir -p "$dir/store"
dir=$(cd "$dir" && pwd)
export TPM2_PKCS11_STORE=$dir/store

randpin() {
	local f=$1 pin
	[[ -s "$f" ]] && return 0
	pin=$(set +o pipefail; LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24)
	if (( ${#pin} != 24 )); then
		echo "tpm-token.sh: could not read random PIN from /dev/urandom" >&2
		exit 1
	fi
	printf '%s' "$pin" >"$f.tmp"
	chmod 0600 "$f.tmp"
	mv "$f.tmp" "$f"
}
randpin "$dir/hsm-pin"
randpin "$dir/so-pin"

# The primary object: `init` prints "id: N"; an existing store keeps its own.
pid=$(tpm2_ptool listprimaries 2>/dev/null | sed -n 's/^[[:space:]]*id:[[:space:]]*\([0-9][0-9]*\).*/\1/p' | head -n1)
if [[ -z "$pid" ]]; then
	pid=$(tpm2_ptool init | sed -n 's/^id:[[:space:]]*\([0-9][0-9]*\).*/\1/p')
	[[ -n "$pid" ]] || { echo "tpm-token.sh: tpm2_ptool init printed no primary object id" >&2; exit 1; }
fi

if tpm2_ptool listtokens --pid="$pid" | sed -n 's/^[[:space:]]*label:[[:space:]]*//p' | grep -Fxq -- "$label"; then
	echo "tpm-token.sh: token '$label' already exists in $TPM2_PKCS11_STORE" >&2
else
	tpm2_ptool addtoken --pid="$pid" --label="$label" \
		--userpin="$(cat "$dir/hsm-pin")" --sopin="$(cat "$dir/so-pin")" >/dev/null
	echo "tpm-token.sh: added token '$label' to $TPM2_PKCS11_STORE" >&2
fi

printf 'export TPM2_PKCS11_STORE=%q\n' "$TPM2_PKCS11_STORE"
