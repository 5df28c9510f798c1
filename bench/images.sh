#!/usr/bin/env bash
# Image-load benchmark: how fast hull turns a `docker save` archive into a
# usable image, against podman and skopeo+umoci.
#
#   make build && sudo bench/images.sh
#   sudo ROUNDS=10 bench/images.sh
#
# What it measures
#   bench/cmd/mkimage writes a deterministic synthetic image (default
#   320 MiB of uncompressed layers in 12 layers: ~24,000 small files, a few
#   large ones, symlinks, hardlinks, whiteouts, an opaque directory) as a
#   docker-archive tar. Each tool then loads that tar into a new, empty
#   store of its own, ROUNDS times, timed by one hyperfine run (N is the
#   round):
#     hull          bin/hull --root W/hull.N --runroot W/hull-run.N load -i big.tar
#     podman        podman --root/--runroot/--tmpdir under W/podman.N,
#                   overlay driver, load -i big.tar
#     skopeo+umoci  skopeo copy docker-archive:big.tar oci:W/oci.N:big &&
#                   umoci unpack --image W/oci.N:big W/bundle.N
#                   (skopeo gzips the layers into the OCI layout; umoci
#                   then unpacks them into one flat rootfs)
#   Every round, of every tool, loads into a new, empty directory, and
#   nothing is deleted until the end: ext4 skips inodes freed in the last
#   half minute or so when it allocates new ones (recently_deleted()), and
#   with tens of thousands of files freed by wiping the previous round's
#   store, that scan took most of the time of the next load on these
#   machines, for every tool alike (perf: ext4_create -> recently_deleted).
#   Before each round hyperfine's prepare step runs `sync`, so no round pays
#   for the previous round's write-back, and reads the archive once. Caches
#   are NOT dropped: the archive is in the page cache for every round of
#   every tool (re-read because hosts with proactive reclaim, e.g. DAMON
#   pageout in small VMs, evict it within seconds), so the numbers are about
#   the tools' CPU and file-system work rather than the disk reading the
#   archive. Each tool is run once, untimed, before the benchmark: that
#   checks it works (a failing tool is left out with a
#   message) and warms the caches.
#
# How to read the output
#   hyperfine's own report comes first, then a table (also repeated as
#   markdown at the very end) with, per tool: the median wall time of the
#   rounds, the throughput (archive bytes / median, MB = 10^6 bytes) and
#   "vs podman" = podman median / tool median, so above 1 means faster than
#   podman. The work directory's `df` is printed first: a nearly full or
#   tmpfs file system skews everything.
#   After the table comes the disk use of 10 containers of the image, when
#   bench/cmd/rootfsdisk exists (it measures hull's store).
#
# Environment:
#   ROUNDS     timed rounds per tool (default 5)
#   HULL       hull binary (default <repo>/bin/hull; when absent, only the
#              peers are measured)
#   SIZE_MB    uncompressed layer size of the image (default 320)
#   LAYERS     number of layers (default 12)
#   WORK_BASE  parent of the work directory (default /var/tmp: /tmp is often
#              a tmpfs, which would measure RAM, not a file system)
#   JSON       also copy hyperfine's --export-json output there
#   KEEP=1     keep the work directory for inspection
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-5}
HULL=${HULL:-$REPO/bin/hull}
SIZE_MB=${SIZE_MB:-320}
LAYERS=${LAYERS:-12}
WORK_BASE=${WORK_BASE:-/var/tmp}
TAG=bench/big:latest

die() { echo "images.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (podman's rootful overlay store, umoci unpack keeping owners)"
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "ROUNDS must be a number >= 1"
command -v hyperfine >/dev/null || die "hyperfine not installed: run scripts/deps.sh --bench"
GO=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$GO" ] || die "go not found (needed to build the image generator)"

# --- work directory and cleanup --------------------------------------------
[ "$(stat -f -c %T "$WORK_BASE")" != tmpfs ] || say "warning: $WORK_BASE is a tmpfs: results measure RAM, set WORK_BASE"
WORK=$(mktemp -d "$WORK_BASE/hull-images.XXXXXX")

# $WORK/wipe DIR...: unmount whatever a tool left mounted under each DIR
# (deepest first; lazily if busy) and delete the DIR; used once, at the end.
# The rounds keep their stores until then (about 2 GB per round for the
# three tools together).
cat >"$WORK/wipe" <<'EOF'
#!/bin/sh
for d in "$@"; do
	awk -v p="$d" '$5 == p || index($5, p "/") == 1 { print $5 }' /proc/self/mountinfo |
		sort -r | while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m"
		done
	rm -rf "$d"
done
sync
EOF
# $WORK/next: start a new round in new directories (the commands name
# them with the round number in $WORK/round), sync, warm the archive.
cat >"$WORK/next" <<'EOF'
#!/bin/sh
w=$(dirname "$0")
n=$(cat "$w/round" 2>/dev/null || echo 0)
echo $((n + 1)) >"$w/round"
sync && cat "$w/big.tar" >/dev/null
EOF
chmod +x "$WORK/wipe" "$WORK/next"

HF_PID=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$HF_PID" ]; then
		# hyperfine runs in its own session (see below): stop it and the
		# load in flight, and wait for the whole group, not just
		# hyperfine, so nothing writes into $WORK while it is deleted.
		kill -TERM -- "-$HF_PID" 2>/dev/null || true
		wait "$HF_PID" 2>/dev/null || true
		local i
		for i in $(seq 100); do
			kill -0 -- "-$HF_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL -- "-$HF_PID" 2>/dev/null || true
		sleep 0.2
	fi
	if [ -n "${KEEP:-}" ]; then
		echo "kept $WORK" >&2
	else
		"$WORK/wipe" "$WORK" || true
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "work directory $WORK:"
df -h "$WORK" >&2

# --- the image --------------------------------------------------------------
say "generating the image (${SIZE_MB} MiB, $LAYERS layers)"
(cd "$REPO" && "$GO" run ./bench/cmd/mkimage -o "$WORK/big.tar" -size-mb "$SIZE_MB" -layers "$LAYERS" -tag "$TAG")
ARCHIVE_BYTES=$(stat -c %s "$WORK/big.tar")
say "archive: $ARCHIVE_BYTES bytes"

# --- the tools ----------------------------------------------------------------
q() { printf '%q' "$1"; }
W=$(q "$WORK")

# podman reads containers.conf; without the system one it gets a private one
# here rather than the script touching /etc.
if [ ! -e /etc/containers/containers.conf ] && [ -z "${CONTAINERS_CONF:-}" ]; then
	cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
	export CONTAINERS_CONF=$WORK/containers.conf
	say "no /etc/containers/containers.conf: podman uses $CONTAINERS_CONF"
fi
# skopeo refuses to copy without a signature policy; accept-anything is what
# the Debian default says too, and the source is a local file.
policy=()
if [ ! -e /etc/containers/policy.json ]; then
	echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$WORK/policy.json"
	policy=(--policy "$W/policy.json")
fi

names=() cmds=() preps=()
add() { names+=("$1"); cmds+=("$2"); preps+=("$3"); }
notes=()

if [ -x "$HULL" ]; then
	# --runroot too, like podman's: hull's default (/run/hull) may be in
	# use by another hull on the host.
	add hull "$(q "$HULL") --root $W/hull.\$(cat $W/round) --runroot $W/hull-run.\$(cat $W/round) load -i $W/big.tar" "$W/next"
else
	notes+=("hull: $HULL missing (run 'make build' or set HULL); measuring the peers only")
fi
if command -v podman >/dev/null; then
	# --tmpdir too: podman's default (/run/libpod) is shared with the
	# host's podman, and the benchmark must neither see nor change it.
	add podman "r=\$(cat $W/round); podman --root $W/podman.\$r/root --runroot $W/podman.\$r/run --tmpdir $W/podman.\$r/tmp --storage-driver overlay load -i $W/big.tar" "$W/next"
else
	notes+=("podman: not installed")
fi
if command -v skopeo >/dev/null && command -v umoci >/dev/null; then
	add skopeo+umoci "r=\$(cat $W/round); skopeo ${policy[*]} copy docker-archive:$W/big.tar oci:$W/oci.\$r:big && umoci unpack --image $W/oci.\$r:big $W/bundle.\$r" "$W/next"
else
	notes+=("skopeo+umoci: not installed")
fi
for n in "${notes[@]}"; do say "$n"; done

# --- one untimed run each: does the tool work? (also warms the caches) ----
ok_names=() ok_cmds=() ok_preps=()
for i in "${!names[@]}"; do
	say "untimed run: ${names[$i]}"
	log=$WORK/first-${names[$i]}.log
	if sh -c "${preps[$i]}" && sh -c "${cmds[$i]}" >"$log" 2>&1; then
		ok_names+=("${names[$i]}") ok_cmds+=("${cmds[$i]}") ok_preps+=("${preps[$i]}")
	else
		notes+=("${names[$i]}: failed, not measured: $(tail -n 3 "$log" | tr '\n' ' ')")
		say "${notes[-1]}"
	fi
done
[ ${#ok_names[@]} -gt 0 ] || die "no tool could load the image"

# --- the benchmark: one hyperfine run ----------------------------------------
args=()
for i in "${!ok_names[@]}"; do args+=(--prepare "${ok_preps[$i]}"); done
for i in "${!ok_names[@]}"; do args+=(-n "${ok_names[$i]}" "${ok_cmds[$i]}"); done
say "hyperfine: $ROUNDS rounds per tool, each from an empty store"
# In its own session, so that Ctrl-C reaches only this script, whose trap
# then stops hyperfine and the load it is running as one process group.
setsid hyperfine --style basic --runs "$ROUNDS" --time-unit second \
	--export-json "$WORK/images.json" "${args[@]}" &
HF_PID=$!
wait "$HF_PID"
HF_PID=
if [ -n "${JSON:-}" ]; then
	mkdir -p "$(dirname "$JSON")"
	cp "$WORK/images.json" "$JSON"
fi

# --- table --------------------------------------------------------------------
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
# Rows: tool, median, MB/s, ratio vs podman ("n/a" when podman was not
# measured).
rows=$(medians "$WORK/images.json" | awk -F'\t' -v bytes="$ARCHIVE_BYTES" '
	{ name[NR] = $1; med[NR] = $2; if ($1 == "podman") pod = $2 }
	END {
		for (i = 1; i <= NR; i++) {
			ratio = pod ? sprintf("%.2f", pod / med[i]) : "n/a"
			printf "%s\t%.3f\t%.1f\t%s\n", name[i], med[i], bytes / 1e6 / med[i], ratio
		}
	}')

echo
echo "image: $TAG, $(awk -v b="$ARCHIVE_BYTES" 'BEGIN { printf "%.1f MB", b / 1e6 }') docker-archive, $LAYERS layers; $ROUNDS rounds per tool, empty store each round, page cache warm"
{
	printf 'tool\tmedian s\tMB/s\tvs podman\n'
	printf '%s\n' "$rows"
} | awk -F'\t' '{ printf "%-14s %10s %8s %10s\n", $1, $2, $3, $4 }'
for n in "${notes[@]}"; do echo "$n"; done

# --- disk use of 10 containers of the image ---------------------------------
echo
if [ ! -d "$REPO/bench/cmd/rootfsdisk" ]; then
	echo "disk use: skipped: bench/cmd/rootfsdisk missing"
elif [[ " ${ok_names[*]} " != *" hull "* ]]; then
	echo "disk use: skipped: hull did not load the image"
else
	echo "disk use of 10 containers of $TAG in hull's store:"
	if ! { "$HULL" --root "$WORK/hull-disk" --runroot "$WORK/hull-disk-run" load -i "$WORK/big.tar" >/dev/null &&
		(cd "$REPO" && "$GO" run ./bench/cmd/rootfsdisk -root "$WORK/hull-disk" -image "$TAG" -n 10); }; then
		echo "disk use: failed (see above)"
	fi
fi

# --- markdown -----------------------------------------------------------------
echo
echo "| tool | median (s) | MB/s | vs podman |"
echo "| --- | ---: | ---: | ---: |"
printf '%s\n' "$rows" | awk -F'\t' '{ printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4 }'
