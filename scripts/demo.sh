#!/usr/bin/env bash
# The hull demo, no registry on the internet needed:
#  1. images: a busybox image made from the host's static busybox, listed,
#     inspected, saved and loaded, pushed to and pulled from a registry that
#     the demo starts on loopback;
#  2. layers: the image unpacked once and shared, mounted read-only, and ten
#     containers' root filesystems costing next to nothing;
#  3. containers: hull run with the default network, a published port,
#     a health check, exec, stats, logs;
#  4. the runtime: hull-runc runs a container whose root is the mounted
#     image, then goes through create / start / exec / kill / delete.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
hull="$PWD/bin/hull"
rt="$PWD/bin/hull-runc"
work="$(mktemp -d /tmp/hull-demo.XXXXXX)"
store="$work/store"
runroot="$(mktemp -d /run/hull-demo.XXXXXX)"
state="$work/runc-state"
id="hull-demo-$$"
registry_pid=""
# The default bridge, hull's nftables table and IP forwarding belong to the
# machine and stay while hull is in use, as docker0 does; the demo takes
# them away again when it was the one that brought them.
had_bridge="$(ip link show hull0 >/dev/null 2>&1 && echo yes || true)"
had_table="$(nft list table ip hull >/dev/null 2>&1 && echo yes || true)"
ip_forward="$(cat /proc/sys/net/ipv4/ip_forward)"
cleanup() {
	"$rt" --root "$state" delete --force "$id" >/dev/null 2>&1 || true
	"$rt" --root "$state" delete --force "$id-image" >/dev/null 2>&1 || true
	"$hull" --root "$store" --runroot "$runroot" rm -f web >/dev/null 2>&1 || true
	"$hull" --root "$store" image unmount busybox >/dev/null 2>&1 || true
	if [[ -n "$registry_pid" ]]; then
		kill "$registry_pid" 2>/dev/null || true
		wait "$registry_pid" 2>/dev/null || true
	fi
	umount -R -l "$work" 2>/dev/null || true
	rm -rf "$work" "$runroot"
	# hull-runc's default parent cgroup, if the demo's were the last in it.
	rmdir /sys/fs/cgroup/*/hull-runc /sys/fs/cgroup/unified/hull-runc 2>/dev/null || true
	[[ -n "$had_bridge" ]] || { ip link del hull0; rmdir /run/hull-ipam/hull0 /run/hull-ipam; } 2>/dev/null || true
	[[ -n "$had_table" ]] || nft delete table ip hull 2>/dev/null || true
	echo "$ip_forward" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
H() { run hull --root "$store" --runroot "$runroot" "$@"; }
hull() { "$hull" "$@"; }

step "an image from the host's busybox-static: bootstrap, images, history, inspect"
H image bootstrap busybox
H images
H image history busybox
H image inspect --format 'ID {{.Id}}  Cmd {{.Config.Cmd}}  layers {{.RootFS.Layers}}' busybox

step "save and load: the same image ID in a second store"
H save -o "$work/busybox.tar" busybox
run hull --root "$work/store2" load -i "$work/busybox.tar"
run hull --root "$work/store2" images --no-trunc

step "push and pull through a registry on loopback (Debian's docker-registry)"
port=$((20000 + RANDOM % 20000))
mkdir -p "$work/registry"
cat >"$work/registry/config.yml" <<EOF
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry/data}}
http: {addr: 127.0.0.1:$port}
EOF
/usr/bin/docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
	sleep 0.1
done
H tag busybox "127.0.0.1:$port/demo/busybox:1"
H push "127.0.0.1:$port/demo/busybox:1"
run hull --root "$work/store3" pull "127.0.0.1:$port/demo/busybox:1"
run hull --root "$work/store3" images --digests

step "layers: unpacked once, mounted read-only, shared by ten containers"
mnt="$("$hull" --root "$store" image mount busybox)"
printf '\033[2m$ hull image mount busybox\033[0m\n%s\n' "$mnt"
run go run ./bench/cmd/rootfsdisk -root "$store" -image busybox -n 10
H system df

step "hull run: containers from the image, a network, a published port, no daemon"
H run --rm busybox sh -c 'echo "hello from $(hostname): $(ip -o -4 addr show eth0 | awk "{print \$4}")"'
port=$((30000 + RANDOM % 20000))
H run -d --name web -p "$port:80" --memory 64m --health-cmd 'wget -q -O /dev/null http://127.0.0.1/hostname' --health-interval 1s \
	busybox httpd -f -p 80 -h /etc
sleep 1.5
printf '\033[2m$ busybox wget -q -O - http://127.0.0.1:%s/hostname\033[0m\n' "$port"
busybox wget -q -O - "http://127.0.0.1:$port/hostname"
H ps
run ip netns exec hull-web ip -br addr show eth0
H exec web ps
H stats --no-stream web
H stop web
H logs web | tail -n 3
H rm web
H run --rm --network none busybox true

step "hull-runc runs a container whose root filesystem is the mounted image"
mkdir -p "$work/bundle"
(cd "$work/bundle" && "$rt" spec)
sed -i -e 's|"path": "rootfs"|"path": "'"$mnt"'"|' -e 's|"terminal": true|"terminal": false|' \
	-e 's|^\t\t\t"sh"$|\t\t\t"sh", "-c", "echo \\"root: overlay of the image, read-only\\"; grep \\" / \\" /proc/self/mounts; echo \\"user: $(id)\\"; echo \\"pid 1: $(cat /proc/1/comm)\\"; touch /x 2>\&1 \|\| true"|' \
	"$work/bundle/config.json"
"$rt" --root "$state" run --bundle "$work/bundle" "$id-image"

step "hull-runc: namespaces, cgroups, capabilities of a writable busybox bundle"
go run ./bench/cmd/mkbundle -writable "$work/rwbundle" sh -c '
echo "hostname:   $(hostname)"
echo "processes:"; ps -o pid,comm
echo "memory cgroup limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"
echo "capabilities: $(grep CapEff /proc/self/status)"
echo "network:    $(ls /sys/class/net | tr "\n" " ")(empty network namespace)"'
sed -i 's/"resources": {/"resources": {"memory": {"limit": 67108864}, "pids": {"limit": 64},/' "$work/rwbundle/config.json"
"$rt" --root "$state" run --bundle "$work/rwbundle" "$id"

step "create / start / exec / state / kill / delete"
go run ./bench/cmd/mkbundle -writable "$work/sleeper" sleep 300 >/dev/null
"$rt" --root "$state" create --bundle "$work/sleeper" "$id"
"$rt" --root "$state" start "$id"
"$rt" --root "$state" exec "$id" sh -c 'echo "exec joined pid 1 = $(cat /proc/1/comm), my pid = $$"'
"$rt" --root "$state" list
"$rt" --root "$state" kill "$id" KILL
sleep 0.2
"$rt" --root "$state" delete "$id"

step "clean up"
H image unmount busybox
echo
echo "done: every mount, cgroup, process and file of the demo, and the bridge and nftables table it brought up, are removed on exit."
