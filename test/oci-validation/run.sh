#!/usr/bin/env bash
# Runs the runtime-tools v0.9.0 OCI validation programs against a runtime
# with runc's command line; see README.md.
#
#   test/oci-validation/run.sh [flags] [RUNTIME]
#
# RUNTIME: the argument, else $RUNTIME, else <repo>/bin/hull-runc.
# Flags: -timeout 60s, -run REGEXP, -nobuild, -generate-rootfs (-h lists them).
# Needs root. Prints "PASS name" / "FAIL name (reason)" per program, then
# "N passed, M failed"; exits 1 when N is below the number in expected-passes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The runner works from this directory: make a runtime given as a relative
# path absolute first (a bare name is looked up in PATH).
abs() { printf '%s/%s' "$(cd "$(dirname "$1")" && pwd)" "$(basename "$1")"; }
args=()
for a in "$@"; do
	if [[ "$a" != -* && "$a" == */* ]]; then
		a="$(abs "$a")"
	fi
	args+=("$a")
done
if [[ "${RUNTIME:-}" == */* ]]; then
	RUNTIME="$(abs "$RUNTIME")"
	export RUNTIME
fi

if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
	PATH="/usr/local/go/bin:$PATH"
fi
# This directory is a module of its own; a go.work above must not claim it.
export GOWORK=off

cd "$here"
mkdir -p work
go build -o work/oci-validation .
exec ./work/oci-validation "${args[@]}"
