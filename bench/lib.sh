# Shell helpers the benchmarks share; sourced, not run.

# wipe DIR...: unmount whatever is mounted under each DIR (deepest first,
# lazily if busy), then delete the DIR.
wipe() {
	local d m
	for d in "$@"; do
		[ -e "$d" ] || continue
		awk -v p="$d" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo |
			sort -r | while read -r m; do
				umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
			done
		rm -rf "$d" 2>/dev/null || { sleep 1 && rm -rf "$d"; } || echo "$(basename "$0"): could not delete all of $d" >&2
	done
}

# kill_wait PID SECONDS: SIGTERM, wait, then SIGKILL.
kill_wait() {
	local pid=$1 secs=$2 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq $((secs * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		# A zombie that its parent (this shell) has not reaped yet is gone.
		[ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# start_private_dockerd DIR [DOCKERD-ARGS...]: a containerd and a dockerd
# of their own under DIR (sockets, state, data, logs), so the peer runs the
# same whether or not the host has a Docker; sets CONTAINERD_PID,
# DOCKERD_PID and DOCKER_HOST. On failure it leaves the reason in DIR.log
# and returns 1. Needs $DOCKER (the client).
start_private_dockerd() {
	local d=$1 i
	shift
	mkdir -p "$d"
	# The same setup as dockerd's own managed containerd, but in our
	# directories.
	cat >"$d/containerd.toml" <<CONF
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"
CONF
	# dockerd 20.10 writes its trust key to /etc/docker/key.json unless
	# told otherwise; --config-file also keeps /etc/docker/daemon.json out.
	printf '{ "deprecated-key-path": "%s" }\n' "$d/key.json" >"$d/daemon.json"
	setsid containerd --config "$d/containerd.toml" >"$d/containerd.log" 2>&1 </dev/null &
	CONTAINERD_PID=$!
	for i in $(seq 100); do
		[ -S "$d/containerd.sock" ] && break
		kill -0 "$CONTAINERD_PID" 2>/dev/null || break
		sleep 0.1
	done
	[ -S "$d/containerd.sock" ] || { cp "$d/containerd.log" "$d.log"; return 1; }
	setsid dockerd --config-file "$d/daemon.json" --data-root "$d/data" --exec-root "$d/exec" \
		-H "unix://$d/docker.sock" --pidfile "$d/dockerd.pid" --containerd "$d/containerd.sock" \
		--default-ulimit nofile=20000:20000 "$@" >"$d/dockerd.log" 2>&1 </dev/null &
	DOCKERD_PID=$!
	export DOCKER_HOST=unix://$d/docker.sock
	for i in $(seq 300); do
		"$DOCKER" version >/dev/null 2>&1 && return 0
		kill -0 "$DOCKERD_PID" 2>/dev/null || break
		sleep 0.1
	done
	tail -n 5 "$d/dockerd.log" >"$d.log"
	return 1
}

# hull_shared_state prints what of hull's machine-wide networking exists
# (the default bridge, the nftables table), so a benchmark can remove at
# the end what it made and leave what was there before.
hull_shared_state() {
	ip link show hull0 >/dev/null 2>&1 && echo bridge
	nft list table ip hull >/dev/null 2>&1 && echo table
	true
}

# hull_shared_restore BEFORE: removes hull0 and the `ip hull` table unless
# BEFORE (hull_shared_state's output at the start) lists them.
hull_shared_restore() {
	case "$1" in *bridge*) ;; *)
		ip link del hull0 2>/dev/null
		# The bridge's (empty) directory of machine-wide address claims.
		rmdir /run/hull-ipam/hull0 /run/hull-ipam 2>/dev/null
		;;
	esac
	case "$1" in *table*) ;; *) nft delete table ip hull 2>/dev/null ;; esac
	true
}
