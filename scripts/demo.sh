#!/usr/bin/env bash
# The hull-runc demo: a busybox container made from the host's static
# busybox (no registry, no internet), run through runc's command line.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
rt="$PWD/bin/hull-runc"
work="$(mktemp -d /tmp/hull-demo.XXXXXX)"
root="$work/state"
id="hull-demo-$$"
cleanup() {
	"$rt" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
	rm -rf "$work"
	# hull-runc's default parent cgroup, if the demo's were the last in it.
	rmdir /sys/fs/cgroup/*/hull-runc /sys/fs/cgroup/unified/hull-runc 2>/dev/null || true
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "bundle: busybox rootfs from the host's busybox-static, default config"
go run ./bench/cmd/mkbundle -writable "$work/bundle" sh -c '
echo "hostname:   $(hostname)"
echo "user:       $(id)"
echo "pid 1 is:   $(cat /proc/1/comm) (a new pid namespace)"
echo "processes:"; ps -o pid,comm
echo "memory cgroup limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
echo "capabilities: $(grep CapEff /proc/self/status)"
echo "network:    $(ls /sys/class/net | tr "\n" " ")(empty network namespace)"'
sed -i 's/"resources": {/"resources": {"memory": {"limit": 67108864}, "pids": {"limit": 64},/' "$work/bundle/config.json"
ls "$work/bundle"

step "hull-runc run (foreground): namespaces, cgroups, capabilities"
"$rt" --root "$root" run --bundle "$work/bundle" "$id"

step "create / start / exec / state / kill / delete"
go run ./bench/cmd/mkbundle -writable "$work/sleeper" sleep 300 >/dev/null
"$rt" --root "$root" create --bundle "$work/sleeper" "$id"
"$rt" --root "$root" list
"$rt" --root "$root" start "$id"
"$rt" --root "$root" exec "$id" sh -c 'echo "exec joined pid 1 = $(cat /proc/1/comm), my pid = $$"'
"$rt" --root "$root" state "$id"
"$rt" --root "$root" kill "$id" KILL
sleep 0.2
"$rt" --root "$root" delete "$id"
"$rt" --root "$root" list
echo
echo "done: every mount, cgroup and process of the demo is gone."
