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
