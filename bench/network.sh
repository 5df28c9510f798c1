#!/usr/bin/env bash
# Network benchmark: what hull's bridge networking costs a container, at
# start and in TCP throughput through a published port, in one go.
#
#   make build && sudo bench/network.sh
#   sudo RUNS=100 TRIES=9 bench/network.sh
#   sudo BYTES=$((8 << 30)) bench/network.sh
#   sudo PEERS=1 bench/network.sh        # Docker and Podman too (measure 1)
#
# What it measures
#   hull runs with its own store (--root under WORK_BASE) and a short
#   runroot (/run/hn-XXXXXX), the busybox image of `hull image bootstrap
#   busybox`, and the default network (bridge hull0, 10.88.0.0/16, a veth
#   per container, NAT in nftables table `ip hull`).
#     1. start cost  `hull run --rm busybox true` (default network: a named
#                    netns, an address lease, a veth pair into hull0) and
#                    `hull run --rm --network none busybox true`, in ONE
#                    hyperfine run (-N, no shell), WARMUP (5) untimed then
#                    RUNS (50) timed runs each. The figure is the difference
#                    of the medians, in ms: what the network adds to a
#                    container's life, set up and torn down. Target: <= 5 ms.
#                    With PEERS=1, Docker and Podman run the same pair in the
#                    same hyperfine run (their default network against
#                    none); see "The peers" below.
#     2. throughput  One detached container runs bench/cmd/tcpbench as a TCP
#                    sink on port 5001 (the static binary is bind-mounted
#                    read-only with -v), published with -p HOSTPORT:5001.
#                    tcpbench on the host sends BYTES (2 GiB) to it
#                      published  127.0.0.1:HOSTPORT: nftables DNAT in the
#                                 output hook, routed out of hull0 (local
#                                 routing of 127/8 is on for the bridge),
#                                 masqueraded to the gateway address
#                      direct     the container's address:5001 (inspect
#                                 ...Networks.bridge.IPAddress): the same
#                                 bridge and veth, no NAT
#                    TRIES (5) times each, the two paths alternating (so a
#                    slow spell of the machine hits both). A transfer is
#                    timed from before connect() until the sink's answer:
#                    the sink reads until the sender closes its side, then
#                    writes back how many bytes it read, so the clock stops
#                    only once every byte is in the container, and the
#                    sender fails unless the count is BYTES. One untimed
#                    transfer per path comes first (it checks both paths
#                    and warms up). The sink's own log must show every
#                    transfer: that proves they reached this container and
#                    not another store's at the same address (hull's stores
#                    lease the default network's addresses each on its own).
#                    The figure per path is the median of its tries in MB/s
#                    (MB = 10^6 bytes), and published / direct in %.
#                    Target: >= 90 %.
#   Both programs are user-space copies of a 1 MiB buffer; the host sends,
#   the container receives, on the same CPUs (2 on the reference machine):
#   the absolute MB/s are about the kernel's path plus those copies, the
#   ratio is what NAT costs.
#
# How to read the output
#   hyperfine's own report comes first, then one line per transfer, then a
#   table with the figures (repeated as markdown at the end) and the two
#   target checks: "met" or "NOT met", on the unrounded figures.
#   Conditions are printed above the table: hull's version, the kernel, the
#   CPUs, the MTU of hull0 (the host's MTU: veths get the same). Other
#   users of the machine show up as noise: re-run to see how much.
#
# What is left behind, and the check
#   At the end (also after Ctrl-C or a failure) the script removes every
#   container of its store, kills any monitor of its runroot, deletes the
#   store and runroot, then compares `ip -br link` (hv*, hull*), `ip netns
#   list` (hull-*) and the "port:" rules of `nft list table ip hull` with
#   what they were at the start. Links, namespaces or rules of this run
#   (its network's veth suffix, its sink's name and id) still there are
#   reported as "LEFT BEHIND" and the script exits 1 (a target not met
#   does not change the exit status); others that appeared meanwhile are listed as
#   someone else's (hull stores share the host's bridges and table). The
#   bridge hull0 and hull's nftables table are shared by every hull store:
#   they are removed at the end only when this run made them.
#
# The peers (PEERS=1; default off)
#   Docker: its own containerd and dockerd (root, state, sockets under the
#   work directory, --default-ulimit nofile=20000:20000), with its stock
#   networking (docker0 172.17.0.0/16, iptables-nft chains in ip nat/filter).
#   Podman: --root/--runroot/--tmpdir under the work directory and a
#   containers.conf there (ulimits these machines allow, runc, netavark with
#   its network directory in the work directory and the default network on
#   10.87.0.0/16 or the next free /16 below it: Podman's stock 10.88.0.0/16
#   is hull0's). Each gets hull's busybox image (`hull save | load`) and
#   runs `run --rm busybox true` and `run --rm --network none busybox
#   true` in measure 1's hyperfine run. A peer whose bridge already exists
#   (docker0, podman0: another engine uses it) or that fails a first try is
#   left out with a note. Before measure 2 the peers are stopped and undone:
#   containers removed, daemons stopped, their iptables chains and rules,
#   docker0/podman0 and their other traces (/run/docker, /run/containerd,
#   /etc/docker/key.json, empty docker/ and libpod_parent/ cgroups) removed
#   when they did not exist before, IPv4/IPv6 forwarding and
#   bridge-nf-call-ip(6)tables restored; so measure 2 runs on hull alone.
#   Left outside the work directory: Podman's address leases in
#   /run/containers/networks/ipam.db (netavark's, shared by every rootful
#   Podman on the host, so not deleted; this run's leases are released),
#   its runc state in /run/runc and locks in /dev/shm/libpod_lock, and
#   `podman load`'s blob cache in /var/lib/containers/cache.
#
# Environment:
#   RUNS       timed runs per command in measure 1 (default 50)
#   WARMUP     untimed runs per command before them (default 5)
#   BYTES      bytes per transfer in measure 2 (default 2147483648, 2 GiB)
#   TRIES      timed transfers per path (default 5)
#   HOSTPORT   host port of the sink (default: the first free one from
#              25001, free meaning no socket of the host uses it and no
#              hull rule publishes it)
#   PEERS      1: Docker and Podman too in measure 1 (default 0)
#   HULL       hull binary (default <repo>/bin/hull, with hull-runc,
#              hull-monitor, hull-init beside it)
#   DOCKER     docker client for PEERS=1 (default `docker` from PATH)
#   WORK_BASE  parent of the work directory (default /var/tmp; at most 40
#              bytes: Docker's sockets live below it)
#   TMO        seconds before an untimed command or a transfer is given up
#              (default 300)
#   JSON_DIR   also copy hyperfine's --export-json output there
#   KEEP=1     keep the work directory (logs, hyperfine JSON); containers
#              and stores are removed all the same
#
# Needs root, hyperfine, Go (to build bench/cmd/tcpbench), jq or python3,
# ip (iproute2), nft, ss; for PEERS=1 also docker.io (dockerd, containerd,
# containerd-shim-runc-v2), podman, netavark, runc, iptables.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
HULL_SHARED=$(hull_shared_state)
RUNS=${RUNS:-50}
WARMUP=${WARMUP:-5}
BYTES=${BYTES:-2147483648}
TRIES=${TRIES:-5}
HOSTPORT=${HOSTPORT:-}
PEERS=${PEERS:-0}
HULL=${HULL:-$REPO/bin/hull}
DOCKER=${DOCKER:-docker}
WORK_BASE=${WORK_BASE:-/var/tmp}
TMO=${TMO:-300}
CPORT=5001

die() { echo "network.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (containers with networks, nftables)"
for v in RUNS WARMUP BYTES TRIES TMO; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number"
done
[ "$RUNS" -ge 2 ] || die "RUNS must be >= 2"
[ "$TRIES" -ge 1 ] || die "TRIES must be >= 1"
[ "$BYTES" -ge 1 ] || die "BYTES must be >= 1"
[ -z "$HOSTPORT" ] || { [[ $HOSTPORT =~ ^[0-9]+$ ]] && [ "$HOSTPORT" -ge 1 ] && [ "$HOSTPORT" -le 65535 ]; } ||
	die "HOSTPORT must be a port number"
case $PEERS in 0 | 1) ;; *) die "PEERS must be 0 or 1" ;; esac
[ -x "$HULL" ] || die "no hull at $HULL: run 'make build' or set HULL"
command -v hyperfine >/dev/null || die "hyperfine not installed: apt-get install -y hyperfine (or scripts/deps.sh --bench)"
command -v jq >/dev/null || command -v python3 >/dev/null || die "need jq or python3 to read hyperfine's JSON"
for c in ip nft ss timeout setsid; do
	command -v "$c" >/dev/null || die "$c not found"
done
GO=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$GO" ] || die "go not found (needed to build bench/cmd/tcpbench)"
[ ${#WORK_BASE} -le 40 ] || die "WORK_BASE too long for the unix sockets under it: $WORK_BASE"
# Nothing may send the peers elsewhere than to the daemon and stores set up
# here.
unset DOCKER_CONTEXT CONTAINER_HOST CONTAINER_CONNECTION

# --- the host as it was ---------------------------------------------------------
links_now() { ip -br link | awk '{ sub(/@.*/, "", $1); print $1 }' | grep -E '^(hv|hull)' | sort -u || true; }
netns_now() { ip netns list | awk '{ print $1 }' | grep '^hull-' | sort -u || true; }
ports_now() { nft list table ip hull 2>/dev/null | grep -o 'comment "port:[^"]*"' | sed 's/^comment "//; s/"$//' | sort -u || true; }
LINKS_BEFORE=$(links_now)
NETNS_BEFORE=$(netns_now)
PORTS_BEFORE=$(ports_now)
declare -A SYSCTL_BEFORE=() EXISTED=()
for k in net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables; do
	v=$(sysctl -n "$k" 2>/dev/null) && SYSCTL_BEFORE[$k]=$v
done
NFT_TABLES_BEFORE=$(nft list tables 2>/dev/null || true)
for p in /run/docker /run/containerd /etc/docker/key.json /opt/containerd; do
	[ -e "$p" ] && EXISTED[$p]=1
done
for l in docker0 podman0; do
	ip link show "$l" >/dev/null 2>&1 && EXISTED[$l]=1
done
for c in /sys/fs/cgroup/*/docker /sys/fs/cgroup/*/libpod_parent; do
	[ -d "$c" ] && EXISTED[$c]=1
done

# --- work directory and cleanup -----------------------------------------------------
[ "$(stat -f -c %T "$WORK_BASE")" != tmpfs ] || say "warning: $WORK_BASE is a tmpfs: the store lives in RAM"
WORK=$(mktemp -d "$WORK_BASE/hull-network.XXXXXX")
chmod 711 "$WORK"
# hull-monitor binds RR/containers/<64-hex id>/attach.sock: a unix socket
# path has at most 107 bytes, so the runroot must be short.
RR=$(mktemp -d /run/hn-XXXXXX)
SINK=${RR##*/}-sink # also the name of its netns: hull-$SINK
H=("$HULL" --root "$WORK/hull" --runroot "$RR")
# h ARGS...: hull on this benchmark's store, untimed (time limit, no stdin).
# timeout --foreground leaves hull in this script's process group: Ctrl-C
# must reach it (and the script must see it die of it, or bash takes the
# signal as handled by the child and goes on).
h() { timeout --foreground -k 10 "$TMO" "${H[@]}" "$@" </dev/null; }
hstr() { printf '%q ' "${H[@]}"; }

HF_PID='' CONTAINERD_PID='' DOCKERD_PID='' SINK_ID='' NET_ID='' HULL_DONE=''
declare -A OK=() CLEAN=() R=()
notes=()
note() { notes+=("$*"); say "$*"; }
failmsg() { tail -n 3 "$1" 2>/dev/null | tr '\n' ' '; }

# pids_of COMM PATTERN: live processes named COMM whose command line
# contains PATTERN.
pids_of() {
	local comm=$1 pat=$2 d c
	for d in /proc/[0-9]*; do
		c=$(cat "$d/comm" 2>/dev/null) || continue
		[ "$c" = "$comm" ] || continue
		tr '\0' ' ' <"$d/cmdline" 2>/dev/null | grep -qF -- "$pat" || continue
		echo "${d#/proc/}"
	done
}
stop_hyperfine() {
	[ -n "$HF_PID" ] || return 0
	kill -TERM -- "-$HF_PID" 2>/dev/null
	wait "$HF_PID" 2>/dev/null
	for _ in $(seq 50); do
		kill -0 -- "-$HF_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$HF_PID" 2>/dev/null
	HF_PID=''
}

# hull_teardown: every container of this store, then whatever survived.
hull_teardown() {
	local ids p
	ids=$(h ps -aq 2>/dev/null) || true
	# shellcheck disable=SC2086
	[ -z "$ids" ] || h rm -f $ids >/dev/null 2>>"$WORK/rm-hull.log" || echo "network.sh: hull: could not remove every container: $(failmsg "$WORK/rm-hull.log")" >&2
	for p in $(pids_of hull-monitor "$RR/"); do kill -KILL "$p" 2>/dev/null; done
	if [ -d "$RR/runtime" ] && [ -x "$(dirname "$HULL")/hull-runc" ]; then
		for p in "$RR"/runtime/*/; do
			[ -d "$p" ] || continue
			timeout 20 "$(dirname "$HULL")/hull-runc" --root "$RR/runtime" delete --force "$(basename "$p")" >/dev/null 2>&1
		done
	fi
	return 0
}

# leak_check: what this run may have left, against the start. Sets LEAKS
# (this run's: a problem) and OTHERS (appeared meanwhile, someone else's).
LEAKS='' OTHERS='' CHECKED=''
leak_check() {
	local x mine=() other=()
	while read -r x; do
		[ -n "$x" ] || continue
		# A veth of this store's default network is hv<id7><network id4>.
		if [ -n "$NET_ID" ] && [[ $x == hv*"${NET_ID:0:4}" ]]; then
			mine+=("link $x")
		else
			other+=("link $x")
		fi
	done < <(comm -13 <(echo "$LINKS_BEFORE") <(links_now))
	while read -r x; do
		[ -n "$x" ] || continue
		if [ "$x" = "hull-$SINK" ]; then mine+=("netns $x"); else other+=("netns $x"); fi
	done < <(comm -13 <(echo "$NETNS_BEFORE") <(netns_now))
	while read -r x; do
		[ -n "$x" ] || continue
		if [ -n "$SINK_ID" ] && [[ $x == "port:$SINK_ID:"* ]]; then mine+=("nft rule $x"); else other+=("nft rule $x"); fi
	done < <(comm -13 <(echo "$PORTS_BEFORE") <(ports_now))
	LEAKS=${mine[*]:-}
	OTHERS=${other[*]:-}
	CHECKED=1
}
report_leaks() {
	if [ -n "$LEAKS" ]; then
		echo "network.sh: LEFT BEHIND by this run: $LEAKS" >&2
	fi
	[ -z "$OTHERS" ] || echo "network.sh: appeared during the run, not this run's (another hull on the host?): $OTHERS" >&2
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	stop_hyperfine
	say "cleaning up"
	[ -z "${PROXY_PID:-}" ] || kill "$PROXY_PID" 2>/dev/null
	[ -z "${PEERS_UP:-}" ] || stop_peers
	[ -n "$HULL_DONE" ] || hull_teardown
	if [ -n "${KEEP:-}" ]; then
		wipe "$RR" "$WORK/hull" "$WORK/docker/data" "$WORK/docker/exec" "$WORK/docker/containerd" "$WORK/podman/root" "$WORK/podman/run"
		echo "kept $WORK" >&2
	else
		wipe "$RR" "$WORK"
	fi
	if [ -z "$CHECKED" ]; then
		leak_check
		report_leaks
	fi
	hull_shared_restore "$HULL_SHARED"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "work directory $WORK, runroot $RR"

# --- hull, the image, the sink program -------------------------------------------
say "hull: bootstrapping busybox in $WORK/hull"
log=$WORK/hull-setup.log
if ! { h image bootstrap busybox >"$log" 2>&1 &&
	h run --rm --network none busybox true >>"$log" 2>&1 &&
	h run --rm busybox true >>"$log" 2>&1; }; then
	die "hull cannot run busybox: $(failmsg "$log")"
fi
NET_ID=$(h network inspect -f '{{.Id}}' bridge 2>/dev/null || true)
say "building bench/cmd/tcpbench (static)"
(cd "$REPO" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$WORK/tcpbench" ./bench/cmd/tcpbench) ||
	die "could not build bench/cmd/tcpbench"
versions=("hull $("$HULL" --version 2>/dev/null | awk '{ print $NF }')")

# --- the peers (PEERS=1) ------------------------------------------------------------
PEERS_UP=''
# The argv of a peer on this benchmark's store, in A.
argv_of() {
	case $1 in
	hull) A=("${H[@]}") ;;
	docker) A=("$DOCKER") ;;
	podman) A=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --tmpdir "$WORK/podman/tmp" --storage-driver overlay) ;;
	esac
}
tool() {
	local t=$1
	shift
	argv_of "$t"
	timeout --foreground -k 10 "$TMO" "${A[@]}" "$@" </dev/null
}
tstr() {
	argv_of "$1"
	printf '%q ' "${A[@]}"
}

start_docker() {
	local d=$WORK/docker c
	for c in dockerd containerd containerd-shim-runc-v2 runc "$DOCKER"; do
		command -v "$c" >/dev/null || { echo "$c not installed (apt-get install docker.io)" >"$d.log"; return 1; }
	done
	if [ -n "${EXISTED[docker0]:-}" ]; then
		echo "docker0 exists already (another Docker runs here): its network cannot be ours" >"$d.log"
		return 1
	fi
	if ip route | grep -q '^172\.17\.'; then
		echo "172.17.0.0/16, docker0's subnet, is routed here already" >"$d.log"
		return 1
	fi
	start_private_dockerd "$d"
}

PODMAN_SUBNET=''
setup_podman() {
	local d=$WORK/podman n
	command -v podman >/dev/null || { echo "podman not installed (apt-get install podman)" >"$d.log"; return 1; }
	if [ -n "${EXISTED[podman0]:-}" ]; then
		echo "podman0 exists already (another Podman's default network)" >"$d.log"
		return 1
	fi
	# Podman's stock default subnet, 10.88.0.0/16, is hull0's.
	for n in 87 86 85 84 83 82 81 80; do
		ip route | grep -q "^10\.$n\." && continue
		PODMAN_SUBNET=10.$n.0.0/16
		break
	done
	[ -n "$PODMAN_SUBNET" ] || { echo "no free 10.80-87.0.0/16 for Podman's default network" >"$d.log"; return 1; }
	mkdir -p "$d/networks"
	cat >"$d/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"

[network]
network_backend = "netavark"
network_config_dir = "$d/networks"
default_subnet = "$PODMAN_SUBNET"
EOF
	export CONTAINERS_CONF=$d/containers.conf
}

# undo_peer_net: what the peers' networking left on the host (chains, rules,
# bridges), for the parts that were not there before.
undo_peer_net() {
	local ipt fam table line chains c
	for ipt in iptables ip6tables; do
		command -v "$ipt" >/dev/null || continue
		[ "$ipt" = iptables ] && fam=ip || fam=ip6
		for table in filter nat; do
			# Only tables that exist: listing one with iptables may make it.
			nft list tables 2>/dev/null | grep -qx "table $fam $table" || continue
			"$ipt" -t "$table" -S 2>/dev/null |
				grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*(DOCKER|docker0|NETAVARK|podman0)' |
				while read -r line; do
					eval "\"$ipt\" -t $table -D ${line#-A }" 2>/dev/null || true
				done
			chains=$("$ipt" -t "$table" -S 2>/dev/null | awk '$1 == "-N" && ($2 ~ /^DOCKER/ || $2 ~ /^NETAVARK/) { print $2 }')
			for c in $chains; do "$ipt" -t "$table" -F "$c" 2>/dev/null || true; done
			for c in $chains; do "$ipt" -t "$table" -X "$c" 2>/dev/null || true; done
			# A table that was not there before and holds nothing now goes
			# (with any DROP policy set in it).
			if ! grep -qx "table $fam $table" <<<"$NFT_TABLES_BEFORE"; then
				[ "$table" = filter ] && "$ipt" -t filter -P FORWARD ACCEPT 2>/dev/null
				if ! "$ipt" -t "$table" -S 2>/dev/null | grep -qvE '^-P [A-Z]+ ACCEPT$'; then
					nft delete table "$fam" "$table" 2>/dev/null || true
				fi
			fi
		done
	done
	for l in docker0 podman0; do
		[ -z "${EXISTED[$l]:-}" ] && ip link show "$l" >/dev/null 2>&1 && ip link delete "$l" 2>/dev/null
	done
	return 0
}

# stop_peers: remove the peers' containers, stop Docker, undo their
# networking and traces.
stop_peers() {
	local t ids p k v
	for t in docker podman; do
		[ -n "${CLEAN[$t]:-}" ] || continue
		[ "$t" != docker ] || [ "${DOCKER_HOST:-}" = "unix://$WORK/docker/docker.sock" ] || continue
		ids=$(tool "$t" ps -aq 2>/dev/null)
		if [ -n "$ids" ]; then
			if [ "$t" = podman ]; then
				# shellcheck disable=SC2086
				tool podman rm -f -t 0 $ids >/dev/null 2>&1
			else
				# shellcheck disable=SC2086
				tool docker rm -f $ids >/dev/null 2>&1
			fi
		fi
	done
	[ -z "$DOCKERD_PID" ] || kill_wait "$DOCKERD_PID" 20
	[ -z "$CONTAINERD_PID" ] || kill_wait "$CONTAINERD_PID" 10
	DOCKERD_PID='' CONTAINERD_PID=''
	for p in $(pids_of conmon "$WORK/podman/") $(pids_of containerd-shim "$WORK/docker/containerd.sock"); do
		kill -KILL "$p" 2>/dev/null
	done
	undo_peer_net
	for p in /run/docker /run/containerd /opt/containerd; do
		[ -z "${EXISTED[$p]:-}" ] && [ -d "$p" ] && find "$p" -depth -type d -empty -delete 2>/dev/null
	done
	[ -z "${EXISTED[/etc/docker/key.json]:-}" ] && rm -f /etc/docker/key.json
	for p in /sys/fs/cgroup/*/docker /sys/fs/cgroup/*/libpod_parent; do
		[ -z "${EXISTED[$p]:-}" ] && [ -d "$p" ] && find "$p" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	for k in "${!SYSCTL_BEFORE[@]}"; do
		v=${SYSCTL_BEFORE[$k]}
		if [ "$(sysctl -n "$k" 2>/dev/null)" != "$v" ]; then
			sysctl -qw "$k=$v" && echo "network.sh: restored $k=$v" >&2
		fi
	done
	PEERS_UP=''
	unset DOCKER_HOST CONTAINERS_CONF
	return 0
}

OK[hull]=1
if [ "$PEERS" = 1 ]; then
	PEERS_UP=1
	h save busybox >"$WORK/busybox.tar" 2>>"$log" || note "hull save failed: the peers get no image"
	say "docker: starting containerd and dockerd under $WORK/docker (stock networking)"
	if start_docker; then
		CLEAN[docker]=1
		if tool docker load -i "$WORK/busybox.tar" >"$WORK/docker-load.log" 2>&1 &&
			tool docker run --rm busybox true >"$WORK/docker-try.log" 2>&1 &&
			tool docker run --rm --network none busybox true >>"$WORK/docker-try.log" 2>&1; then
			OK[docker]=1
			versions+=("Docker $("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null)")
		else
			note "docker: failed, not measured: $(failmsg "$WORK/docker-load.log") $(failmsg "$WORK/docker-try.log")"
		fi
	else
		note "docker: not measured: $(failmsg "$WORK/docker.log")"
	fi
	say "podman: store under $WORK/podman"
	if setup_podman; then
		CLEAN[podman]=1
		if tool podman load -i "$WORK/busybox.tar" >"$WORK/podman-load.log" 2>&1 &&
			tool podman run --rm busybox true >"$WORK/podman-try.log" 2>&1 &&
			tool podman run --rm --network none busybox true >>"$WORK/podman-try.log" 2>&1; then
			OK[podman]=1
			versions+=("Podman $(podman --version 2>/dev/null | awk '{ print $NF }') (default network $PODMAN_SUBNET)")
		else
			note "podman: failed, not measured: $(failmsg "$WORK/podman-load.log") $(failmsg "$WORK/podman-try.log")"
		fi
	else
		note "podman: not measured: $(failmsg "$WORK/podman.log")"
	fi
fi
versions+=("kernel $(uname -r)" "$(nproc) CPUs" "hull0 MTU $(cat /sys/class/net/hull0/mtu 2>/dev/null || echo '?')")

# --- 1. start cost --------------------------------------------------------------------
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
tools=()
for t in hull docker podman; do [ -n "${OK[$t]:-}" ] && tools+=("$t"); done
args=()
for t in "${tools[@]}"; do
	args+=(-n "$t default" "$(tstr "$t")run --rm busybox true")
	args+=(-n "$t none" "$(tstr "$t")run --rm --network none busybox true")
done
say "hyperfine: run --rm busybox true, default network and none, $RUNS runs each after $WARMUP (${tools[*]})"
# In its own session, so that Ctrl-C reaches only this script, whose trap
# then stops hyperfine and the command in flight as one process group.
setsid hyperfine -N --style basic --time-unit millisecond --runs "$RUNS" --warmup "$WARMUP" \
	--export-json "$WORK/start.json" "${args[@]}" </dev/null &
HF_PID=$!
wait "$HF_PID" || die "hyperfine failed (see above)"
HF_PID=''
[ -z "${JSON_DIR:-}" ] || { mkdir -p "$JSON_DIR" && cp "$WORK/start.json" "$JSON_DIR/network-start.json"; } || true
# R[TOOL:default], R[TOOL:none]: medians in ms; R[raw:...]: in s, as read.
while IFS=$'\t' read -r n m; do
	k=${n// /:}
	R[$k]=$(awk -v s="$m" 'BEGIN { printf "%.1f", s * 1000 }')
	R[raw:$k]=$m
done < <(medians "$WORK/start.json")
for t in "${tools[@]}"; do
	R[$t:added]=$(awk -v a="${R[raw:$t:default]}" -v b="${R[raw:$t:none]}" 'BEGIN { printf "%.1f", (a - b) * 1000 }')
done

if [ -n "$PEERS_UP" ]; then
	say "stopping the peers and undoing their networking before measure 2"
	stop_peers
fi

# --- 2. throughput --------------------------------------------------------------------
port_free() {
	[ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ] && ! nft list table ip hull 2>/dev/null | grep -q "dport $1 "
}
start_sink() {
	local p=$1
	h run -d --name "$SINK" -p "$p:$CPORT" -v "$WORK/tcpbench:/tcpbench:ro" busybox /tcpbench sink -l ":$CPORT" \
		>"$WORK/sink.id" 2>"$WORK/sink.log"
}
if [ -n "$HOSTPORT" ]; then
	start_sink "$HOSTPORT" || die "could not start the sink on port $HOSTPORT: $(failmsg "$WORK/sink.log")"
else
	HOSTPORT=25001
	while :; do
		if port_free "$HOSTPORT"; then
			start_sink "$HOSTPORT" && break
			grep -q 'already allocated' "$WORK/sink.log" || die "could not start the sink: $(failmsg "$WORK/sink.log")"
			h rm -f "$SINK" >/dev/null 2>&1 || true
		fi
		HOSTPORT=$((HOSTPORT + 1))
		[ "$HOSTPORT" -le 25200 ] || die "no free host port in 25001-25200"
	done
fi
SINK_ID=$(cat "$WORK/sink.id")
CIP=$(h inspect -f '{{.NetworkSettings.Networks.bridge.IPAddress}}' "$SINK")
[[ $CIP =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "no address for the sink: '$CIP'"
PUB=127.0.0.1:$HOSTPORT
DIRECT=$CIP:$CPORT
say "sink $SINK at $DIRECT, published on $PUB"
# The alternative to kernel NAT for 127.0.0.1: a userland proxy (as
# docker-proxy is), one process per published port copying both ways.
PROXYPORT=$((HOSTPORT + 1000))
"$WORK/tcpbench" proxy -l "127.0.0.1:$PROXYPORT" -to "$DIRECT" &
PROXY_PID=$!
PROXY=127.0.0.1:$PROXYPORT

# sink_count: transfers the sink has logged.
sink_count() { h logs "$SINK" 2>/dev/null | grep -c ' received ' || true; }
# sink_saw N: wait (2 s at most) until the sink has logged N transfers: it
# logs each one just after answering the sender.
sink_saw() {
	local i
	for i in $(seq 20); do
		[ "$(sink_count)" = "$1" ] && return 0
		sleep 0.1
	done
	return 1
}
# send ADDR BYTES [ARGS...]: one transfer; prints tcpbench's line. Its own
# -timeout bounds it (connect, transfer and answer).
send() {
	local addr=$1 n=$2
	shift 2
	"$WORK/tcpbench" send -addr "$addr" -bytes "$n" -timeout "${TMO}s" "$@" </dev/null
}
warm=$((BYTES < 268435456 ? BYTES : 268435456))
addr_of() { case $1 in published) echo "$PUB" ;; proxy) echo "$PROXY" ;; *) echo "$DIRECT" ;; esac; }
for path in published direct proxy; do
	a=$(addr_of $path)
	out=$(send "$a" "$warm" -retry 10s 2>&1) || die "untimed $path transfer to $a failed: $out"
	say "untimed $path transfer: $out"
done
sink_saw 3 || die "the sink logged $(sink_count) transfers, not 2: another listener at $DIRECT? sink log: $(h logs "$SINK" 2>&1 | tail -n 3 | tr '\n' ' ')"

declare -A MBPS=()
say "$TRIES transfers of $BYTES bytes per path, alternating"
for i in $(seq "$TRIES"); do
	for path in published direct proxy; do
		a=$(addr_of $path)
		out=$(send "$a" "$BYTES" 2>&1) || die "$path transfer $i to $a failed: $out"
		mbps=$(sed -n 's/.*MBps=\([0-9.]*\).*/\1/p' <<<"$out")
		secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' <<<"$out")
		[ -n "$mbps" ] || die "$path transfer $i: unexpected output: $out"
		MBPS[$path]+="$mbps "
		printf '%-9s %d/%d  %s -> %-21s %s bytes in %.3f s: %8.1f MB/s\n' "$path" "$i" "$TRIES" "host" "$a" "$BYTES" "$secs" "$mbps"
	done
done
sink_saw $((3 + 3 * TRIES)) || die "the sink logged $(sink_count) transfers, $((3 + 3 * TRIES)) were made"
kill "$PROXY_PID" 2>/dev/null || true
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
R[pub]=$(median "${MBPS[published]}")
R[direct]=$(median "${MBPS[direct]}")
R[proxy]=$(median "${MBPS[proxy]}")
R[ratio]=$(awk -v p="${R[pub]}" -v d="${R[direct]}" 'BEGIN { printf "%.1f", 100 * p / d }')

# --- teardown and check ------------------------------------------------------------
say "removing the containers, checking what is left"
hull_teardown
HULL_DONE=1
leak_check

# --- report ---------------------------------------------------------------------------
# Rows: measure<TAB>figure<TAB>target<TAB>result
met_ms=$(awk -v a="${R[raw:hull:default]}" -v b="${R[raw:hull:none]}" 'BEGIN { print ((a - b) * 1000 <= 5 ? "met" : "NOT met") }')
met_pct=$(awk -v p="${R[pub]}" -v d="${R[direct]}" 'BEGIN { print (100 * p / d >= 90 ? "met" : "NOT met") }')
rows=$(
	printf '%s\t%s\t\t\n' "hull run --rm busybox true, default network, median ms" "${R[hull:default]}"
	printf '%s\t%s\t\t\n' "hull run --rm --network none busybox true, median ms" "${R[hull:none]}"
	printf '%s\t%s\t%s\t%s\n' "hull: added by the network, ms" "${R[hull:added]}" "<= 5" "$met_ms"
	for t in docker podman; do
		[ -n "${OK[$t]:-}" ] || continue
		T=${t^}
		printf '%s\t%s\t\t\n' "$T run --rm busybox true, default network, median ms" "${R[$t:default]}"
		printf '%s\t%s\t\t\n' "$T run --rm --network none busybox true, median ms" "${R[$t:none]}"
		printf '%s\t%s\t\t\n' "$T: added by the network, ms" "${R[$t:added]}"
	done
	printf '%s\t%s\t\t\n' "TCP host -> container, published $PUB (DNAT), median MB/s" "${R[pub]}"
	printf '%s\t%s\t\t\n' "TCP host -> container, direct $DIRECT, median MB/s" "${R[direct]}"
	printf '%s\t%s\t\t\n' "TCP host -> container, userland proxy $PROXY, median MB/s" "${R[proxy]}"
	printf '%s\t%s\t%s\t%s\n' "published / direct, %" "${R[ratio]}" ">= 90" "$met_pct"
)

echo
vers=$(printf '%s, ' "${versions[@]}")
echo "network benchmark: ${vers%, }; busybox; RUNS=$RUNS WARMUP=$WARMUP; BYTES=$BYTES TRIES=$TRIES"
{
	printf 'measure\tfigure\ttarget\tresult\n'
	printf '%s\n' "$rows"
} | awk -F'\t' '{ printf "%-70s %9s %7s %8s\n", $1, $2, $3, $4 }'
for n in "${notes[@]}"; do echo "note: $n"; done
if [ -n "$LEAKS" ]; then
	echo "clean-up: LEFT BEHIND by this run: $LEAKS"
else
	echo "clean-up: nothing of this run left (hv*/hull* links, hull-* netns, nft \"port:\" rules compared with the start)"
fi
[ -z "$OTHERS" ] || echo "clean-up: appeared during the run, not this run's (another hull on the host?): $OTHERS"

echo
echo "| measure | figure | target | result |"
echo "| --- | ---: | ---: | --- |"
printf '%s\n' "$rows" | awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }'
echo
echo "target 1, network start cost: hull's default network adds ${R[hull:added]} ms to run --rm (median ${R[hull:default]} vs ${R[hull:none]} ms), target <= 5 ms: $met_ms"
echo "target 2, published-port throughput: ${R[pub]} MB/s through DNAT vs ${R[direct]} MB/s direct = ${R[ratio]} %, target >= 90 %: $met_pct"
[ -z "$LEAKS" ]
