#!/usr/bin/env bash
# Engine benchmark: hull against Docker and Podman on everyday container
# commands, on the same machine, in the same conditions, in one go.
#
#   make build && sudo bench/engine.sh
#   sudo RUNS=50 bench/engine.sh
#   sudo TOOLS="docker podman" bench/engine.sh      # the peers only
#
# What it measures
#   Every tool gets the same busybox image (hull's `image bootstrap busybox`,
#   handed to the peers with `hull save | docker load` / `podman load`; when
#   hull is missing, a rootfs tar of the host's static busybox, imported),
#   and every container runs with --network none, so no tool sets up a
#   network: the figures are about the engines themselves.
#     1. run --rm    `TOOL run --rm --network none busybox true`: RUNS timed
#                    runs (after WARMUP untimed ones) of each tool in ONE
#                    hyperfine run; the median, in ms.
#     2. run -d + rm `id=$(TOOL run -d --network none busybox sleep 300) &&
#                    TOOL rm -f $id`, the same way (one hyperfine run); the
#                    median of the pair, in ms. Podman's rm gets `-t 0`: its
#                    `rm -f` first sends SIGTERM and waits 10 s (which `sleep`
#                    as pid 1 ignores), where Docker's and hull's send SIGKILL
#                    at once; `-t 0` makes it do what the others do.
#     3. monitor RSS IDLE (20) idle containers (`run -d ... sleep 3600`) of a
#                    tool, then the sum of VmRSS (/proc/PID/status) of the
#                    process each container keeps beside itself: hull ->
#                    hull-monitor, Podman -> conmon, Docker ->
#                    containerd-shim-runc-v2 (one per container). Only the
#                    processes of this benchmark's stores count (matched on
#                    their command line: other engines on the machine are
#                    left out). Divided by IDLE: MiB (2^20 bytes) per
#                    container. PSS (smaps_rollup) is shown too: RSS counts
#                    pages shared by processes of the same binary once per
#                    process (Docker's shim is an 11 MB Go binary), PSS
#                    splits them. Docker's daemons (dockerd, containerd) are
#                    not in the figure; their RSS is printed below the table.
#                    One tool at a time; the containers are removed after.
#     4. 100 starts  STARTS (100) `run -d --network none busybox sleep 3600`
#                    of a tool one after the other: the total wall time in s
#                    (they stay up, so the last starts beside 99 others).
#                    Removed afterwards, untimed, before the next tool.
#   Before each measure every tool is tried once, untimed: a tool that fails
#   is left out of that measure with a message (a missing bin/hull-monitor
#   makes hull's `run -d` fail, so hull drops out of measures 2 to 4) and the
#   others go on. Should hyperfine fail anyway mid-run, each tool is measured
#   again in a hyperfine run of its own (said in the notes).
#
# How to read the output
#   hyperfine's own reports come first (measures 1 and 2), then the figures
#   of measures 3 and 4 as they are taken, then a table with one row per
#   measure, one column per tool and "hull/best peer" = hull's figure
#   divided by the better (lower) peer's figure: below 1 means hull is
#   faster (or smaller), 0.17 means it takes 1/6 of the time. The target
#   for measure 1 is hull <= 1/6 of the faster peer. The same table follows
#   as markdown, then one line with all the ratios. "failed", "missing" or
#   "-" in a cell: the tool could not be measured there; the notes below the
#   table say why. The work directory's `df` is printed first: a nearly full
#   or tmpfs file system skews the figures; so do other loads on the
#   machine: always compare the tools of the same run, not runs.
#
# How the tools are set up (nothing in /etc is written; Docker reads no file
# of the host's; see also "Left outside the work directory" below)
#   Docker  its own containerd (config, root, state, socket under the work
#           directory, CRI plugin off, as dockerd's own managed containerd)
#           and its own dockerd (--config-file, --data-root, --exec-root,
#           socket under the work directory, --default-ulimit
#           nofile=20000:20000), driven with DOCKER_HOST. dockerd runs with
#           --iptables=false --ip-forward=false --bridge=none: with
#           --network none containers that changes nothing measured, and it
#           leaves the host's firewall, forwarding and links alone (a stock
#           dockerd adds chains to `ip filter`/`ip nat`, turns on IPv4
#           forwarding and may set FORWARD to DROP, which would disturb
#           whatever else runs here). DOCKER_NET=stock runs a stock dockerd
#           instead; the cleanup then deletes its chains and docker0 and
#           restores forwarding. The trust key that dockerd 20.10 writes to
#           /etc/docker/key.json by default goes to the work directory.
#   Podman  --root/--runroot/--tmpdir under the work directory, overlay
#           driver, CONTAINERS_CONF pointing at a containers.conf there
#           (default_ulimits nofile 20000, nproc 4096: Podman's defaults are
#           above what these machines allow; runtime runc), so the host's
#           containers.conf files are not read (/etc/containers'
#           registries.conf and storage.conf still are, if present; the
#           flags above override the store's location).
#   hull    --root under the work directory, --runroot /run/hb-XXXXXX
#           (short: see RR below).
#   Left outside the work directory while it runs: Podman's runc keeps its
#   state in /run/runc and its shared-memory locks in /dev/shm/libpod_lock,
#   and `podman load` updates /var/lib/containers/cache (a blob cache);
#   Docker's shims use /run/containerd/{s,runc}; the peers' cgroups (v1,
#   cgroupfs driver) go under docker/ and libpod_parent/, hull's under
#   hull/ (of every hierarchy).
#   At the end (also after Ctrl-C or a failure) the script removes every
#   container of the three stores, stops dockerd and containerd, kills any
#   monitor left over, unmounts and deletes the work directory and runroot,
#   removes the directories the peers made that did not exist before
#   (/run/docker, /run/containerd, their empty parent cgroups docker/ and
#   libpod_parent/), restores IPv4/IPv6 forwarding and
#   net.bridge.bridge-nf-call-ip(6)tables if they changed, and compares
#   `nft list ruleset` with what it was at the start (it prints a diff if
#   it differs: something else may have changed it).
#
# Environment:
#   RUNS       timed runs per tool in measures 1 and 2 (default 30)
#   WARMUP     untimed runs per tool before them (default 3)
#   IDLE       containers per tool for the monitor memory (default 20)
#   STARTS     containers per tool started in measure 4 (default 100)
#   TOOLS      which tools, among "hull docker podman" (default all three)
#   HULL       hull binary (default <repo>/bin/hull; bin/hull-runc and
#              bin/hull-monitor are taken from beside it)
#   DOCKER     docker client (default `docker` from PATH: it negotiates the
#              API with the Docker 20.10 daemon of Debian's docker.io)
#   DOCKER_NET off (default) or stock, see above
#   WORK_BASE  parent of the work directory (default /var/tmp: /tmp is often
#              a tmpfs, which would measure RAM, not a file system)
#   JSON_DIR   also copy hyperfine's --export-json files there
#   KEEP=1     keep the work directory (logs, hyperfine JSON); the
#              containers are removed and the daemons stopped all the same
#
# Needs root, hyperfine, docker.io (dockerd, containerd,
# containerd-shim-runc-v2), podman, runc, jq or python3, and a static
# /bin/busybox (busybox-static) when hull is missing.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
RUNS=${RUNS:-30}
WARMUP=${WARMUP:-3}
IDLE=${IDLE:-20}
STARTS=${STARTS:-100}
TOOLS=${TOOLS:-hull docker podman}
HULL=${HULL:-$REPO/bin/hull}
DOCKER=${DOCKER:-docker}
DOCKER_NET=${DOCKER_NET:-off}
WORK_BASE=${WORK_BASE:-/var/tmp}
# Untimed commands (checks, removal) are given this long before they are
# killed, so that a hung tool cannot hang the benchmark.
TMO=${TMO:-180}

die() { echo "engine.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (it runs rootful containers of three engines)"
for v in RUNS WARMUP IDLE STARTS; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number"
done
[ "$RUNS" -ge 2 ] || die "RUNS must be >= 2"
[ "$IDLE" -ge 1 ] && [ "$STARTS" -ge 1 ] || die "IDLE and STARTS must be >= 1"
case $DOCKER_NET in off | stock) ;; *) die "DOCKER_NET must be off or stock, not '$DOCKER_NET'" ;; esac
for t in $TOOLS; do
	case $t in hull | docker | podman) ;; *) die "unknown tool '$t' in TOOLS (hull docker podman)" ;; esac
done
command -v hyperfine >/dev/null || die "hyperfine not installed: apt-get install -y hyperfine (or scripts/deps.sh --bench)"
command -v jq >/dev/null || command -v python3 >/dev/null || die "need jq or python3 to read hyperfine's JSON"
want() { [[ " $TOOLS " == *" $1 "* ]]; }
# Nothing may send the peers elsewhere than to the daemon and stores set up
# here (a Docker context, a Podman service).
unset DOCKER_CONTEXT CONTAINER_HOST CONTAINER_CONNECTION

# --- the host as it was ---------------------------------------------------------
declare -A SYSCTL_BEFORE=()
for k in net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do
	v=$(sysctl -n "$k" 2>/dev/null) && SYSCTL_BEFORE[$k]=$v
done
NFT_BEFORE=$(nft list ruleset 2>&1 || true)
declare -A EXISTED=()
for p in /run/docker /run/containerd /etc/docker/key.json /opt/containerd; do
	[ -e "$p" ] && EXISTED[$p]=1
done
ip link show docker0 >/dev/null 2>&1 && EXISTED[docker0]=1
# The parent cgroups the peers make (cgroupfs driver): Docker's docker/,
# Podman's libpod_parent/ (with conmon/ in it), in every hierarchy.
for c in /sys/fs/cgroup/*/docker /sys/fs/cgroup/*/libpod_parent; do
	[ -d "$c" ] && EXISTED[$c]=1
done

# --- work directory ---------------------------------------------------------------
[ "$(stat -f -c %T "$WORK_BASE")" != tmpfs ] || say "warning: $WORK_BASE is a tmpfs: the stores live in RAM, set WORK_BASE"
# Docker's sockets live under the work directory (the longest,
# exec/libnetwork/<id>.sock, 47 bytes below it): a unix socket path has at
# most 107 bytes.
[ ${#WORK_BASE} -le 40 ] || die "WORK_BASE too long for the unix sockets under it: $WORK_BASE"
WORK=$(mktemp -d "$WORK_BASE/hull-engine.XXXXXX")
chmod 711 "$WORK"
# hull's runroot, short: hull-monitor binds
# RR/containers/<64-hex id>/attach.sock, so RR may have 19 bytes at most
# (/run/hull-bench-PID is 21 and more once the PID has 5 digits).
RR=$(mktemp -d /run/hb-XXXXXX)

# OK[t]: the tool works and is measured; CLEAN[t]: it has a store to clean.
declare -A OK=() CLEAN=() R=() CMD=()
notes=()
note() { notes+=("$*"); say "$*"; }

HF_PID='' CONTAINERD_PID='' DOCKERD_PID=''

# The argv that runs a tool on this benchmark's store, in A.
argv_of() {
	case $1 in
	hull) A=("$HULL" --root "$WORK/hull" --runroot "$RR") ;;
	docker) A=("$DOCKER") ;;
	podman) A=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --tmpdir "$WORK/podman/tmp" --storage-driver overlay) ;;
	esac
}
# tool T ARGS...: run tool T (untimed uses: with a time limit, no stdin).
tool() {
	local t=$1
	shift
	argv_of "$t"
	timeout -k 10 "$TMO" "${A[@]}" "$@" </dev/null
}
# The same as a shell command string, for hyperfine.
tstr() {
	argv_of "$1"
	printf '%q ' "${A[@]}"
}
# rm -f as each tool means it (SIGKILL, no grace period).
rmf_args() {
	case $1 in podman) echo "rm -f -t 0" ;; *) echo "rm -f" ;; esac
}
rmf() {
	local t=$1
	shift
	# shellcheck disable=SC2046
	tool "$t" $(rmf_args "$t") "$@"
}

# remove_ids T FILE: remove the containers listed in FILE, 10 per command
# (each command has a time limit).
remove_ids() {
	local t=$1 f=$2 ids=() i rc=0
	[ -s "$f" ] || return 0
	mapfile -t ids <"$f"
	for ((i = 0; i < ${#ids[@]}; i += 10)); do
		rmf "$t" "${ids[@]:i:10}" >/dev/null 2>>"$WORK/rm-$t.log" || rc=1
	done
	return $rc
}

# pids_of COMM PATTERN: live processes named COMM (as in /proc/PID/comm,
# 15 characters at most) whose command line contains PATTERN. Zombies have
# an empty command line, so they never match.
pids_of() {
	local comm=$1 pat=$2 d c
	for d in /proc/[0-9]*; do
		c=$(cat "$d/comm" 2>/dev/null) || continue
		[ "$c" = "$comm" ] || continue
		tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -qF -- "$pat" || continue
		echo "${d#/proc/}"
	done
}
# The per-container monitor processes of this benchmark's tool T.
monitors_of() {
	case $1 in
	hull) pids_of hull-monitor "$RR/" ;;
	podman) pids_of conmon "$WORK/podman/" ;;
	docker) pids_of containerd-shim "$WORK/docker/containerd.sock" ;;
	esac
}
# rss_of PID...: "count VmRSS-kB PSS-kB" summed over the processes.
rss_of() {
	local p n=0 rss=0 pss=0 v
	for p in "$@"; do
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
		[ -n "$v" ] || continue
		n=$((n + 1)) rss=$((rss + v))
		v=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true)
		pss=$((pss + ${v:-0}))
	done
	echo "$n $rss $pss"
}

# bundles_under DIR: the ids of the containers in `runc list -f json` (on
# stdin) whose bundle is under DIR.
bundles_under() {
	if command -v jq >/dev/null; then
		jq -r --arg d "$1" '.[]? | select(.bundle | startswith($d)) | .id'
	else
		python3 -c 'import json,sys
for c in json.load(sys.stdin) or []:
    if c["bundle"].startswith(sys.argv[1]): print(c["id"])' "$1"
	fi
}


# Undo what a stock dockerd did to the firewall and links (DOCKER_NET=stock).
undo_docker_net() {
	local ipt table line chains c fam
	for ipt in iptables ip6tables; do
		command -v "$ipt" >/dev/null || continue
		[ "$ipt" = iptables ] && fam=ip || fam=ip6
		for table in filter nat; do
			# Only tables iptables-nft already has: listing one creates it.
			nft list tables 2>/dev/null | grep -qx "table $fam $table" || continue
			"$ipt" -t "$table" -S 2>/dev/null | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*(DOCKER|docker0)' |
				while read -r line; do
					eval "\"$ipt\" -t $table -D ${line#-A }" 2>/dev/null || true
				done
			chains=$("$ipt" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ { print $2 }')
			for c in $chains; do "$ipt" -t "$table" -F "$c" 2>/dev/null || true; done
			for c in $chains; do "$ipt" -t "$table" -X "$c" 2>/dev/null || true; done
			# A table that did not exist before and holds nothing now goes;
			# so does the FORWARD DROP policy dockerd may have set in it.
			if ! grep -q "^table $fam $table {" <<<"$NFT_BEFORE"; then
				[ "$table" = filter ] && "$ipt" -t filter -P FORWARD ACCEPT 2>/dev/null
				if ! "$ipt" -t "$table" -S 2>/dev/null | grep -qvE '^-P [A-Z]+ ACCEPT$'; then
					nft delete table "$fam" "$table" 2>/dev/null || true
				fi
			fi
		done
	done
	if [ -z "${EXISTED[docker0]:-}" ] && ip link show docker0 >/dev/null 2>&1; then
		ip link delete docker0 2>/dev/null || true
	fi
}

cleanup() {
	local rc=$? t ids p
	trap - EXIT INT TERM
	set +e
	if [ -n "$HF_PID" ]; then
		# hyperfine runs in its own session: stop it and the command in
		# flight as one process group.
		kill -TERM -- "-$HF_PID" 2>/dev/null
		wait "$HF_PID" 2>/dev/null
		for _ in $(seq 50); do
			kill -0 -- "-$HF_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-$HF_PID" 2>/dev/null
	fi
	say "cleaning up"
	# Every container of the three stores (Docker's only when DOCKER_HOST
	# is our daemon: never the host's).
	for t in "${!CLEAN[@]}"; do
		[ "$t" != docker ] || [ "${DOCKER_HOST:-}" = "unix://$WORK/docker/docker.sock" ] || continue
		ids=$(tool "$t" ps -aq 2>/dev/null)
		[ -z "$ids" ] || echo "$ids" >"$WORK/leftover-$t.ids"
		remove_ids "$t" "$WORK/leftover-$t.ids" || echo "engine.sh: $t: could not remove every container" >&2
	done
	if [ -n "$DOCKERD_PID" ]; then kill_wait "$DOCKERD_PID" 20; fi
	if [ -n "$CONTAINERD_PID" ]; then kill_wait "$CONTAINERD_PID" 10; fi
	# Whatever survived: monitors first (so they restart nothing), then
	# hull-runc's containers.
	for t in hull podman docker; do
		for p in $(monitors_of "$t"); do kill -KILL "$p" 2>/dev/null; done
	done
	if [ -d "$RR/runtime" ] && [ -x "$(dirname "$HULL")/hull-runc" ]; then
		for p in "$RR"/runtime/*/; do
			[ -d "$p" ] || continue
			timeout 20 "$(dirname "$HULL")/hull-runc" --root "$RR/runtime" delete --force "$(basename "$p")" >/dev/null 2>&1
		done
	fi
	# The peers' runc containers whose bundle is ours (Podman's runc keeps
	# its default root; Docker's shims use containerd's).
	for p in /run/runc /run/containerd/runc/moby; do
		[ -d "$p" ] || continue
		for t in $(runc --root "$p" list -f json 2>/dev/null | bundles_under "$WORK/"); do
			timeout 20 runc --root "$p" delete --force "$t" >/dev/null 2>&1
		done
	done
	if [ -n "${KEEP:-}" ]; then
		wipe "$RR" "$WORK/hull" "$WORK/docker/data" "$WORK/docker/exec" "$WORK/docker/containerd" "$WORK/podman/root" "$WORK/podman/run"
		echo "kept $WORK" >&2
	else
		wipe "$RR" "$WORK"
	fi
	# Directories and files Docker makes outside its roots.
	for p in /run/docker /run/containerd /opt/containerd; do
		[ -z "${EXISTED[$p]:-}" ] && [ -d "$p" ] && find "$p" -depth -type d -empty -delete 2>/dev/null
	done
	[ -z "${EXISTED[/etc/docker/key.json]:-}" ] && rm -f /etc/docker/key.json
	# Their parent cgroups, when empty (rmdir fails on a cgroup in use).
	for p in /sys/fs/cgroup/*/docker /sys/fs/cgroup/*/libpod_parent; do
		[ -z "${EXISTED[$p]:-}" ] && [ -d "$p" ] && find "$p" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	[ "$DOCKER_NET" = stock ] && [ -n "$DOCKERD_PID" ] && undo_docker_net
	for k in "${!SYSCTL_BEFORE[@]}"; do
		v=${SYSCTL_BEFORE[$k]}
		if [ "$(sysctl -n "$k" 2>/dev/null)" != "$v" ]; then
			sysctl -qw "$k=$v" && echo "engine.sh: restored $k=$v" >&2
		fi
	done
	if [ "$(nft list ruleset 2>&1)" != "$NFT_BEFORE" ]; then
		echo "engine.sh: warning: \`nft list ruleset\` differs from before the benchmark (something else may have changed it):" >&2
		diff <(echo "$NFT_BEFORE") <(nft list ruleset 2>&1) >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "work directory $WORK:"
df -h "$WORK" >&2

# --- the image --------------------------------------------------------------------
# A root file system of the host's static busybox, as a tar (for the peers
# when hull cannot hand them its image).
rootfs_tar() {
	local r=$WORK/rootfs
	[ -f "$WORK/rootfs.tar" ] && return 0
	[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 ||
		{ echo "no static /bin/busybox (apt-get install busybox-static)" >&2; return 1; }
	mkdir -p "$r"/{bin,etc,tmp,root,proc,sys,dev,home,var}
	chmod 1777 "$r/tmp"
	chmod 700 "$r/root"
	cp /bin/busybox "$r/bin/"
	chroot "$r" /bin/busybox --install -s /bin
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$r/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
	tar -C "$r" -cf "$WORK/rootfs.tar" .
}
# load_image T: give a peer the busybox image.
load_image() {
	local t=$1
	if [ -f "$WORK/busybox.tar" ] && tool "$t" load -i "$WORK/busybox.tar" >"$WORK/$t-load.log" 2>&1; then
		return 0
	fi
	rootfs_tar && tool "$t" import "$WORK/rootfs.tar" busybox:latest >>"$WORK/$t-load.log" 2>&1
}
failmsg() { tail -n 3 "$1" 2>/dev/null | tr '\n' ' '; }

# --- hull ---------------------------------------------------------------------------
versions=()
if want hull; then
	if [ ! -x "$HULL" ]; then
		if [ "$HULL" = "$REPO/bin/hull" ]; then
			note "hull: bin/hull missing (run 'make build' or set HULL); measuring the peers only"
		else
			note "hull: $HULL missing; measuring the peers only"
		fi
	else
		say "hull: bootstrapping busybox in $WORK/hull"
		CLEAN[hull]=1
		log=$WORK/hull-setup.log
		if tool hull image bootstrap busybox >"$log" 2>&1 &&
			tool hull save busybox >"$WORK/busybox.tar" 2>>"$log" &&
			tool hull run --rm --network none busybox true >>"$log" 2>&1; then
			OK[hull]=1
			versions+=("hull $("$HULL" --version 2>/dev/null | awk '{ print $NF }')")
		else
			note "hull: failed, not measured: $(failmsg "$log")"
			rm -f "$WORK/busybox.tar"
		fi
		[ -x "$(dirname "$HULL")/hull-monitor" ] ||
			note "hull: $(dirname "$HULL")/hull-monitor missing: hull's detached containers (measures 2-4) will fail"
	fi
fi

# --- Docker ------------------------------------------------------------------------
start_docker() {
	local d=$WORK/docker c net=()
	for c in dockerd containerd containerd-shim-runc-v2 runc "$DOCKER"; do
		command -v "$c" >/dev/null || { echo "$c not installed (apt-get install docker.io)" >"$d.log"; return 1; }
	done
	[ "$DOCKER_NET" = stock ] || net=(--iptables=false --ip-forward=false --bridge=none)
	start_private_dockerd "$d" "${net[@]}"
}
if want docker; then
	say "docker: starting containerd and dockerd under $WORK/docker"
	if start_docker; then
		OK[docker]=1 CLEAN[docker]=1
		if load_image docker && tool docker run --rm --network none busybox true >"$WORK/docker-setup.log" 2>&1; then
			versions+=("Docker $("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null) (client $("$DOCKER" version --format '{{.Client.Version}}' 2>/dev/null))")
		else
			note "docker: failed, not measured: $(failmsg "$WORK/docker-load.log") $(failmsg "$WORK/docker-setup.log")"
			OK[docker]=''
		fi
	else
		note "docker: daemon did not start, not measured: $(failmsg "$WORK/docker.log")"
	fi
fi

# --- Podman -------------------------------------------------------------------------
if want podman; then
	if ! command -v podman >/dev/null; then
		note "podman: not installed (apt-get install podman), not measured"
	else
		mkdir -p "$WORK/podman"
		cat >"$WORK/podman/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
		export CONTAINERS_CONF=$WORK/podman/containers.conf
		OK[podman]=1 CLEAN[podman]=1
		if load_image podman && tool podman run --rm --network none busybox true >"$WORK/podman-setup.log" 2>&1; then
			versions+=("Podman $(podman --version 2>/dev/null | awk '{ print $NF }')")
		else
			note "podman: failed, not measured: $(failmsg "$WORK/podman-load.log") $(failmsg "$WORK/podman-setup.log")"
			OK[podman]=''
		fi
	fi
fi
versions+=("runc $(runc --version 2>/dev/null | awk 'NR == 1 { print $3 }')" "kernel $(uname -r)")

ready=()
for t in hull docker podman; do [ -n "${OK[$t]:-}" ] && ready+=("$t"); done
[ ${#ready[@]} -gt 0 ] || die "no tool could run a container"
say "measuring: ${ready[*]}"

# --- hyperfine measures ----------------------------------------------------------
# hf JSON ARGS...: hyperfine in its own session, so that Ctrl-C reaches only
# this script, whose trap then stops hyperfine and the command in flight.
hf() {
	local json=$1 rc=0
	shift
	setsid hyperfine --style basic --time-unit millisecond --runs "$RUNS" --warmup "$WARMUP" \
		--export-json "$json" "$@" </dev/null &
	HF_PID=$!
	wait "$HF_PID" || rc=$?
	HF_PID=''
	[ -z "${JSON_DIR:-}" ] || { mkdir -p "$JSON_DIR" && cp "$json" "$JSON_DIR/" 2>/dev/null; } || true
	return $rc
}
# name<TAB>median seconds, from hyperfine's JSON.
medians() {
	if command -v jq >/dev/null; then
		jq -r '.results[] | "\(.command)\t\(.median)"' "$1"
	else
		python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]:
    print("%s\t%s" % (r["command"], r["median"]))' "$1"
	fi
}
# measure KEY LABEL SHELL(yes|no) TOOL...: one hyperfine run of CMD[tool]
# for the tools that pass an untimed try; R[KEY:tool] = median in ms.
measure() {
	local key=$1 label=$2 shell=$3 t ok=() args=() opts=() n m
	shift 3
	for t in "$@"; do
		if sh -c "${CMD[$t]}" >"$WORK/$key-$t.try.log" 2>&1 </dev/null; then
			ok+=("$t")
		else
			R[$key:$t]=failed
			note "$t: $label failed, not measured: $(failmsg "$WORK/$key-$t.try.log")"
		fi
	done
	[ ${#ok[@]} -gt 0 ] || return 0
	[ "$shell" = yes ] || opts=(-N)
	for t in "${ok[@]}"; do args+=(-n "$t" "${CMD[$t]}"); done
	say "hyperfine: $label, $RUNS runs per tool (${ok[*]})"
	if hf "$WORK/$key.json" "${opts[@]}" "${args[@]}"; then
		while IFS=$'\t' read -r n m; do
			R[$key:$n]=$(awk -v s="$m" 'BEGIN { printf "%.1f", s * 1000 }')
		done < <(medians "$WORK/$key.json")
		return 0
	fi
	note "$label: hyperfine failed with ${ok[*]} in one run; each tool measured in a run of its own"
	for t in "${ok[@]}"; do
		if hf "$WORK/$key-$t.json" "${opts[@]}" -n "$t" "${CMD[$t]}"; then
			R[$key:$t]=$(medians "$WORK/$key-$t.json" | awk -F'\t' '{ printf "%.1f", $2 * 1000 }')
		else
			R[$key:$t]=failed
			note "$t: $label failed during the measure"
		fi
	done
}

# 1. run --rm
for t in "${ready[@]}"; do
	CMD[$t]="$(tstr "$t")run --rm --network none busybox true"
done
measure rm "run --rm" no "${ready[@]}"

# 2. run -d + rm -f
for t in "${ready[@]}"; do
	CMD[$t]="id=\$($(tstr "$t")run -d --network none busybox sleep 300) && $(tstr "$t")$(rmf_args "$t") \"\$id\" >/dev/null"
done
measure d "run -d + rm -f" yes "${ready[@]}"

# start_n T N IDS-FILE: start N detached idle containers of T one after the
# other (untimed: no time limit, as measured), appending their ids; returns
# how many started, in STARTED.
start_n() {
	local t=$1 n=$2 ids=$3 i
	argv_of "$t"
	STARTED=0
	for i in $(seq "$n"); do
		"${A[@]}" run -d --network none busybox sleep 3600 >>"$ids" 2>"$WORK/start-$t.log" </dev/null || return 1
		STARTED=$((STARTED + 1))
	done
}
# remove_all T IDS-FILE: remove them, untimed.
remove_all() {
	local t=$1 ids=$2
	: >"$WORK/rm-$t.log"
	remove_ids "$t" "$ids" || note "$t: removing containers failed: $(failmsg "$WORK/rm-$t.log")"
	: >"$ids"
}

# 3. monitor memory
say "monitor memory: $IDLE idle containers per tool"
daemons=''
for t in "${ready[@]}"; do
	ids=$WORK/idle-$t.ids
	: >"$ids"
	if ! start_n "$t" "$IDLE" "$ids"; then
		R[rss:$t]=failed R[pss:$t]=failed
		note "$t: run -d failed after $STARTED containers, monitor memory not measured: $(failmsg "$WORK/start-$t.log")"
		remove_all "$t" "$ids"
		continue
	fi
	sleep 2 # let the monitors settle
	# shellcheck disable=SC2046
	read -r n rss pss <<<"$(rss_of $(monitors_of "$t"))"
	R[rss:$t]=$(awk -v k="$rss" -v n="$IDLE" 'BEGIN { printf "%.2f", k / 1024 / n }')
	R[pss:$t]=$(awk -v k="$pss" -v n="$IDLE" 'BEGIN { printf "%.2f", k / 1024 / n }')
	say "$t: $n monitor processes for $IDLE containers, VmRSS $((rss / 1024)) MiB in all, ${R[rss:$t]} MiB (PSS ${R[pss:$t]} MiB) per container"
	[ "$n" = "$IDLE" ] || note "$t: found $n monitor processes for $IDLE containers (the figure is still the sum / $IDLE)"
	if [ "$t" = docker ]; then
		read -r _ drss _ <<<"$(rss_of "$DOCKERD_PID" "$CONTAINERD_PID")"
		daemons="docker's daemons (dockerd + containerd, not in the figures above) with $IDLE containers up: VmRSS $(awk -v k="$drss" 'BEGIN { printf "%.1f", k / 1024 }') MiB"
		say "$daemons"
	fi
	remove_all "$t" "$ids"
done

# 4. STARTS detached containers, sequentially
say "$STARTS detached containers per tool, one after the other"
for t in "${ready[@]}"; do
	ids=$WORK/starts-$t.ids
	: >"$ids"
	t0=$(date +%s%N)
	if start_n "$t" "$STARTS" "$ids"; then
		t1=$(date +%s%N)
		R[n:$t]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
		say "$t: $STARTS containers in ${R[n:$t]} s"
	else
		R[n:$t]=failed
		note "$t: run -d failed after $STARTED containers, not measured: $(failmsg "$WORK/start-$t.log")"
	fi
	[ ! -s "$ids" ] || say "$t: removing them (untimed)"
	remove_all "$t" "$ids"
done

# --- report ---------------------------------------------------------------------------
# cell KEY TOOL: the figure, or why there is none.
cell() {
	local v=${R[$1:$2]:-}
	if [ -n "$v" ]; then
		echo "$v"
	elif ! want "$2"; then
		echo "-"
	elif [ "$2" = hull ] && [ ! -x "$HULL" ]; then
		echo missing
	else
		echo failed
	fi
}
num() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
best_peer() { # KEY -> "peer value" of the lower numeric peer figure
	local p v best='' bv=''
	for p in docker podman; do
		v=${R[$1:$p]:-}
		num "$v" || continue
		if [ -z "$bv" ] || awk -v a="$v" -v b="$bv" 'BEGIN { exit !(a < b) }'; then best=$p bv=$v; fi
	done
	[ -n "$best" ] && echo "$best $bv"
}
# ratio KEY: hull's figure / the better peer's ("-" when either is missing).
ratio() {
	local h=${R[$1:hull]:-} bp
	bp=$(best_peer "$1") || { echo "-"; return; }
	num "$h" || { echo "-"; return; }
	awk -v h="$h" -v p="${bp#* }" 'BEGIN { if (p > 0) printf "%.3f", h / p; else print "-" }'
}
keys=(rm d rss pss n)
declare -A LABEL=(
	[rm]="run --rm --network none busybox true, median ms"
	[d]="run -d ... sleep 300 + rm -f, median ms"
	[rss]="monitor VmRSS per container, MiB ($IDLE idle)"
	[pss]="monitor PSS per container, MiB ($IDLE idle)"
	[n]="$STARTS x run -d, one after the other, total s"
)
rows=$(for k in "${keys[@]}"; do
	printf '%s\t%s\t%s\t%s\t%s\n' "${LABEL[$k]}" "$(cell "$k" hull)" "$(cell "$k" docker)" "$(cell "$k" podman)" "$(ratio "$k")"
done)

echo
vers=$(printf '%s, ' "${versions[@]}")
echo "engine benchmark: ${vers%, }; busybox, --network none; RUNS=$RUNS WARMUP=$WARMUP IDLE=$IDLE STARTS=$STARTS; $(nproc) CPUs"
{
	printf 'measure\thull\tdocker\tpodman\thull/best peer\n'
	printf '%s\n' "$rows"
} | awk -F'\t' '{ printf "%-48s %9s %9s %9s %15s\n", $1, $2, $3, $4, $5 }'
[ -z "$daemons" ] || echo "$daemons"
for n in "${notes[@]}"; do echo "note: $n"; done

echo
echo "| measure | hull | Docker | Podman | hull / best peer |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '%s\n' "$rows" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }'
echo

# One line: every ratio, with the peer it is against.
line="ratios hull / best peer:"
for k in rm d rss n; do
	case $k in rm) what="run --rm" ;; d) what="run -d + rm -f" ;; rss) what="monitor RSS" ;; n) what="$STARTS starts" ;; esac
	r=$(ratio "$k")
	if [ "$r" = - ]; then
		line+=" $what -;"
		continue
	fi
	bp=$(best_peer "$k")
	line+=" $what $r (vs ${bp%% *}"
	if [ "$k" = rm ]; then
		# The target, on the figures themselves (not the rounded ratio).
		line+=$(awk -v h="${R[rm:hull]}" -v p="${bp#* }" 'BEGIN {
			printf ": hull takes 1/%.2f of its time, target 1/6 %s", p / h, (h * 6 <= p ? "met" : "NOT met") }')
	fi
	line+=");"
done
echo "${line%;}"
