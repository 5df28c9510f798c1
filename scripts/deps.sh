#!/usr/bin/env bash
# Installs the Debian packages hull's build, demo and tests need. Idempotent:
# it does nothing when everything is present. Run as root.
set -euo pipefail

# Package -> a file it provides (checked before asking apt).
declare -A want=(
	[busybox-static]=/bin/busybox
	[containerd]=/usr/bin/containerd
	[runc]=/usr/sbin/runc
	[gcc]=/usr/bin/gcc
	[libc6-dev]=/usr/lib/x86_64-linux-gnu/libc.a
	[make]=/usr/bin/make
	[iproute2]=/usr/sbin/ip
	[nftables]=/usr/sbin/nft
	[procps]=/usr/bin/ps
	[skopeo]=/usr/bin/skopeo
	[docker-registry]=/usr/bin/docker-registry
	[podman]=/usr/bin/podman
)
if [[ "${1:-}" == "--bench" ]]; then
	want[crun]=/usr/bin/crun
	want[hyperfine]=/usr/bin/hyperfine
	want[umoci]=/usr/bin/umoci
	want[docker.io]=/usr/sbin/dockerd
fi

missing=()
for pkg in "${!want[@]}"; do
	[[ -e "${want[$pkg]}" ]] || missing+=("$pkg")
done
# busybox-static must really be the static build (Debian's busybox package
# provides a dynamic /bin/busybox too).
if [[ -e /bin/busybox ]] && ldd /bin/busybox >/dev/null 2>&1; then
	missing+=(busybox-static)
fi
if ((${#missing[@]})); then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
	echo "note: add /usr/local/go/bin to PATH" >&2
fi
