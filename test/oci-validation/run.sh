#!/usr/bin/env bash
# Runs the runtime-tools v0.9.0 validation programs against an OCI runtime.
#   test/oci-validation/run.sh [flags] [RUNTIME]
# RUNTIME defaults to $RUNTIME, then to <repo>/bin/hull-runc. Flags are the
# runner's (go run . -h): -timeout 60s, -run REGEXP, -nobuild, -generate-rootfs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The runner works from this directory: make a runtime given as a relative
# path absolute first (a bare name is looked up in PATH).
args=()
for a in "$@"; do
	if [[ "$a" != -* && "$a" == */* ]]; then
		a="$(cd "$(dirname "$a")" && pwd)/$(basename "$a")"
	fi
	args+=("$a")
done
if [[ -n "${RUNTIME:-}" && "$RUNTIME" == */* ]]; then
	RUNTIME="$(cd "$(dirname "$RUNTIME")" && pwd)/$(basename "$RUNTIME")"
	export RUNTIME
fi

cd "$here"
mkdir -p work
go build -o work/oci-validation .
exec ./work/oci-validation "${args[@]}"
