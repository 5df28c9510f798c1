#!/usr/bin/env bash
# Startup-cost benchmark of OCI runtimes: hull-runc against runc and crun.
#
#   sudo bench/runtime.sh            # see bench/README.md
#
# Environment:
#   HULL_RUNC  hull-runc binary (default <repo>/bin/hull-runc; when absent
#              only the peers are measured)
#   RUNC, CRUN peer binaries (default: runc, crun from PATH)
#   RUNS       timed runs per benchmark (default 100)
#   WARMUP     warm-up runs per benchmark (default 10)
#   MODE       auto (default): direct when crun runs the bundle as it is,
#              else wrap. direct: every runtime runs as it is, on the host's
#              own cgroup layout. wrap: every runtime runs through the same
#              `unshare -m sh -c '...'` wrapper that some crun builds need on
#              a hybrid-cgroup host (it hides the cgroup2 mount, so all run
#              on cgroup v1 only); subtract: runc and hull-runc run directly,
#              crun through the wrapper, and the wrapper's own median is
#              subtracted from crun's
#   JSON       hyperfine --export-json file (default bench/out/runtime.json)
#   KEEP=1     keep the work directory (bundle, runtime roots) for inspection
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-100}
WARMUP=${WARMUP:-10}
MODE=${MODE:-auto}
JSON=${JSON:-$REPO/bench/out/runtime.json}
HULL_RUNC=${HULL_RUNC:-$REPO/bin/hull-runc}

die() { echo "runtime.sh: $*" >&2; exit 1; }
say() { echo "== $*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (it creates real containers)"
case $MODE in auto|direct|wrap|subtract) ;; *) die "MODE must be auto, direct, wrap or subtract, not '$MODE'" ;; esac
[[ $RUNS =~ ^[0-9]+$ && $RUNS -ge 2 ]] || die "RUNS must be a number >= 2"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a number"

# --- packages (idempotent: only what is missing) ---------------------------
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
[ -n "${RUNC:-}" ] || command -v runc >/dev/null || missing+=(runc)
[ -n "${CRUN:-}" ] || command -v crun >/dev/null || missing+=(crun)
command -v unshare >/dev/null || missing+=(util-linux)
# testbundle copies the host's busybox into the rootfs: it must be static.
if [ -z "${HULL_BUSYBOX:-}" ] && ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed"; then
	missing+=(busybox-static)
fi
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "${missing[@]}" >/dev/null
fi
RUNC=$(command -v "${RUNC:-runc}") || die "runc not found"
CRUN=$(command -v "${CRUN:-crun}") || die "crun not found"
GO=$(command -v go || echo /usr/local/go/bin/go)
[ -x "$GO" ] || die "go not found (needed to build the bundle maker)"

# --- runtimes --------------------------------------------------------------
names=(runc crun)
declare -A bin=([runc]=$RUNC [crun]=$CRUN)
if [ -x "$HULL_RUNC" ]; then
	names=(hull-runc "${names[@]}")
	bin[hull-runc]=$(cd "$(dirname "$HULL_RUNC")" && pwd)/$(basename "$HULL_RUNC")
	hull_note="hull-runc: ${bin[hull-runc]}"
else
	hull_note="hull-runc NOT measured: $HULL_RUNC does not exist (run 'make build' or set HULL_RUNC); measuring the peers only"
fi

# On a hybrid host (cgroup v1 + v2 at /sys/fs/cgroup/unified) crun refuses to
# run; in a private mount namespace without the v2 mount it works.
if [ "$(stat -f -c %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
	unmount_v2='umount /sys/fs/cgroup/unified && '
else
	unmount_v2=''
fi
wrapped() { # runtime -> 0 if it goes through the unshare wrapper
	[ "$MODE" = wrap ] || { [ "$MODE" = subtract ] && [ "$1" = crun ]; }
}

# --- work directory, bundle, cleanup ---------------------------------------
WORK=$(mktemp -d /tmp/hull-bench.XXXXXX)
# Runtime state lives where runtimes keep it in production: /run (a tmpfs on
# most hosts; whatever it is here, every runtime gets the same).
STATE=$(mktemp -d /run/hull-bench-state.XXXXXX)
TAG=hb$$ # container ids: $TAG-<runtime>-<pid of the iteration's shell>
BUNDLE=$WORK/bundle

# rt_cmd RUNTIME: the runtime invocation prefix with its private state root.
rt_cmd() { printf '%s --root %s' "${bin[$1]}" "$STATE/root-$1"; }
# in_ns RUNTIME SCRIPT: SCRIPT as the runtime is run in the benchmark.
in_ns() {
	if wrapped "$1"; then
		printf "unshare -m sh -c '%s%s'" "$unmount_v2" "$2"
	else
		printf '%s' "$2"
	fi
}

cleanup() {
	local rc=$? rt id
	for rt in "${names[@]}"; do
		[ -d "$STATE/root-$rt" ] || continue
		for id in $(sh -c "$(in_ns "$rt" "$(rt_cmd "$rt") list -q")" 2>/dev/null | grep "^$TAG-" || true); do
			echo "cleanup: deleting leftover $rt container $id" >&2
			sh -c "$(in_ns "$rt" "$(rt_cmd "$rt") delete --force $id")" >/dev/null 2>&1 || true
		done
	done
	# crun, run without the cgroup2 mount, writes its "unified" cgroup as
	# plain directories into the /sys/fs/cgroup tmpfs, hidden under the
	# cgroup2 mount afterwards: remove them from a private mount namespace.
	if [ -n "$unmount_v2" ]; then
		unshare -m sh -c "umount /sys/fs/cgroup/unified && rm -rf /sys/fs/cgroup/unified/$TAG-*" 2>/dev/null || true
	fi
	if [ -n "${KEEP:-}" ]; then
		echo "kept $WORK and $STATE" >&2
	else
		rm -rf "$WORK" "$STATE"
	fi
	exit $rc
}
HF_PID=
on_signal() {
	# hyperfine treats SIGINT as "skip to the next benchmark": stop it, and
	# let the iteration in flight (well under a second) finish.
	if [ -n "$HF_PID" ]; then
		kill -TERM "$HF_PID" 2>/dev/null || true
		sleep 1
	fi
	exit 130
}
trap cleanup EXIT
trap on_signal INT TERM

say "building the bundle (busybox, args: true)"
(cd "$REPO" && "$GO" build -o "$WORK/mkbundle" ./bench/cmd/mkbundle \
	&& "$GO" build -o "$WORK/benchreport" ./bench/cmd/benchreport)
"$WORK/mkbundle" "$BUNDLE" true

# --- smoke test: each runtime runs the bundle once -------------------------
if [ "$MODE" = auto ]; then
	mkdir -p "$STATE/root-crun"
	if "$CRUN" --root "$STATE/root-crun" run --bundle "$BUNDLE" "$TAG-crun-probe" >/dev/null 2>&1; then
		MODE=direct
	else
		MODE=wrap
	fi
	say "mode auto: crun $([ $MODE = direct ] && echo runs || echo refuses) this host's cgroup layout as it is: mode $MODE"
fi
for rt in "${names[@]}"; do
	mkdir -p "$STATE/root-$rt"
	cmd=$(in_ns "$rt" "$(rt_cmd "$rt") run --bundle $BUNDLE $TAG-$rt-smoke")
	if ! out=$(sh -c "$cmd" 2>&1); then
		die "$rt cannot run the bundle: $cmd
$out"
	fi
done

# --- the benchmark: one hyperfine run -------------------------------------
# $$ is the pid of hyperfine's per-iteration shell: a fresh, unique id for
# each iteration (the container is gone before the pid can be reused).
args=()
for rt in "${names[@]}"; do
	r=$(rt_cmd "$rt")
	args+=(-n "run:$rt" "$(in_ns "$rt" "$r run --bundle $BUNDLE $TAG-$rt-\$\$")")
done
for rt in "${names[@]}"; do
	r=$(rt_cmd "$rt")
	id="$TAG-$rt-c\$\$"
	args+=(-n "lifecycle:$rt" "$(in_ns "$rt" "$r create --bundle $BUNDLE $id && $r start $id && $r delete --force $id")")
done
baseline="unshare -m sh -c '${unmount_v2}true'"
args+=(-n "$baseline" "$baseline")

mkdir -p "$(dirname "$JSON")"
say "$hull_note"
if [ "$MODE" = direct ]; then
	say "mode direct: every runtime is measured as it is; the wrapper row is for reference only"
elif [ "$MODE" = wrap ]; then
	say "mode wrap: every runtime is measured inside: unshare -m sh -c '${unmount_v2}RUNTIME ...'"
else
	say "mode subtract: runc/hull-runc measured directly; crun inside unshare -m sh -c '${unmount_v2}crun ...', minus the wrapper's median"
fi
say "hyperfine: $RUNS runs, $WARMUP warm-up runs per benchmark; JSON: $JSON"
# In the background so that the INT/TERM trap runs while hyperfine does.
hyperfine --style basic --warmup "$WARMUP" --runs "$RUNS" --export-json "$JSON" "${args[@]}" &
HF_PID=$!
wait "$HF_PID"
HF_PID=

echo
echo "run       = '<runtime> run' of 'true' (create+start+wait+delete in one call)"
echo "lifecycle = '<runtime> create' && '<runtime> start' && '<runtime> delete --force', one container id per iteration"
if [ "$MODE" = direct ]; then
	echo "every runtime ran directly (no wrapper)"
	"$WORK/benchreport" -baseline "$baseline" -ratio raw "$JSON"
elif [ "$MODE" = wrap ]; then
	echo "every runtime ran inside the wrapper; the wrapper row is its cost alone, net = median - wrapper median"
	"$WORK/benchreport" -baseline "$baseline" -wrapped "$(IFS=,; echo "${names[*]}")" -ratio raw "$JSON"
else
	echo "crun ran inside the wrapper, the others directly; net = median - wrapper median for crun"
	"$WORK/benchreport" -baseline "$baseline" -wrapped crun -ratio net "$JSON"
fi
echo "$hull_note"
