#!/usr/bin/env bash
# fresh.sh CSRD CSRD_LOAD CLIENTS DURATION [csrd-load flags...]
#
# `make load`: starts CSRD on a throw-away SoftHSM token and a new database in a
# temp dir, runs CSRD_LOAD against it (reporting csrd's memory and checking every
# accepted record afterwards), stops csrd with SIGTERM and removes the temp dir.
# Exits with csrd-load's status, or 1 if csrd did not stop cleanly.
set -euo pipefail
[[ $# -ge 4 ]] || { echo "usage: $0 CSRD CSRD_LOAD CLIENTS DURATION [flags...]" >&2; exit 2; }
csrd=$1 load=$2 clients=$3 duration=$4
shift 4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

dir=$(mktemp -d "${TMPDIR:-/tmp}/csrd-load.XXXXXX")
pid=
rc=1
cleanup() {
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
	if [[ $rc -eq 0 ]]; then rm -rf "$dir"; else echo "fresh.sh: kept $dir (csrd.log, csrd.db) for a look" >&2; fi
}
trap cleanup EXIT

eval "$(bash "$here/../../../softhsm-test/init-token.sh" "$dir/hsm" csrd-load 2>/dev/null)" # sets SOFTHSM2_CONF
module=
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
	/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
	[[ -e "$m" ]] && { module=$m; break; }
done
[[ -n "$module" ]] || { echo "fresh.sh: libsofthsm2.so not found; run make deps" >&2; exit 1; }
cat >"$dir/csrd.yaml" <<YAML
listen: 127.0.0.1:0
hsm:
  module: $module
  token_label: csrd-load
  pin_file: $dir/hsm/hsm-pin
  max_sessions: 8
database: $dir/csrd.db
log_level: info
auth:
  mode: none # loopback; csrd-load -auth-file sends credentials to a csrd that wants them
YAML

"$csrd" -config "$dir/csrd.yaml" 2>"$dir/csrd.log" &
pid=$!
addr=
for _ in $(seq 300); do
	addr=$(sed -n 's/.*"listen":"\([^"]*\)".*"message":"csrd ready".*/\1/p' "$dir/csrd.log" | head -1)
	[[ -n "$addr" ]] && break
	kill -0 "$pid" 2>/dev/null || { cat "$dir/csrd.log" >&2; exit 1; }
	sleep 0.1
done
[[ -n "$addr" ]] || { echo "fresh.sh: csrd not ready after 30 s" >&2; tail "$dir/csrd.log" >&2; exit 1; }
echo "fresh.sh: csrd pid $pid on $addr, token csrd-load, database $dir/csrd.db"

rc=0
"$load" -url "http://$addr/KeyfactorAPI" -clients "$clients" -duration "$duration" \
	-pid "$pid" -database "$dir/csrd.db" "$@" || rc=$?

kill -TERM "$pid"
if ! wait "$pid"; then echo "fresh.sh: csrd did not exit cleanly" >&2; rc=1; fi
pid=
echo "fresh.sh: csrd logged $(grep -c '"level":"error"' "$dir/csrd.log" || true) error lines," \
	"$(grep -c '"level":"warn"' "$dir/csrd.log" || true) warnings"
# The distinct error causes and warning messages, once each with a count.
grep '"level":"error"' "$dir/csrd.log" | sed -n 's/.*"error":"\([^"]*\)".*/\1/p' | sort | uniq -c | head -20 >&2 || true
grep '"level":"warn"' "$dir/csrd.log" | sed -n 's/.*"message":"\([^"]*\)".*/warn: \1/p' | sort | uniq -c | head -20 >&2 || true
exit $rc
