#!/usr/bin/env bash
# Makes the cgroup v1 controllers the kernel offers but nobody mounted
# available as v1 hierarchies (as Debian's cgroupfs-mount does at boot), so
# that the tests exercise them: on these hybrid machines net_cls, net_prio
# and hugetlb are compiled in but not mounted. Idempotent; run as root.
# Only acts on a v1 or hybrid host (a /sys/fs/cgroup tmpfs).
set -euo pipefail
[[ "$(stat -f -c %T /sys/fs/cgroup)" == "tmpfs" ]] || exit 0
while read -r name hier _ enabled; do
	[[ "$name" == \#* || "$enabled" != 1 || "$hier" != 0 ]] && continue
	case "$name" in net_cls | net_prio | hugetlb) ;; *) continue ;; esac
	if [[ "$name" == hugetlb && -f /sys/fs/cgroup/unified/cgroup.subtree_control ]]; then
		# A controller enabled in the v2 tree cannot be mounted as v1;
		# it is enabled only where hull enabled it, and nothing uses it.
		find /sys/fs/cgroup/unified -name cgroup.subtree_control -print0 |
			sort -rz | xargs -0 -I{} sh -c 'grep -qw hugetlb "{}" && echo -hugetlb > "{}" || true'
	fi
	mkdir -p "/sys/fs/cgroup/$name"
	if mount -t cgroup -o "$name" cgroup "/sys/fs/cgroup/$name" 2>/dev/null; then
		echo "mounted cgroup v1 $name"
	else
		rmdir "/sys/fs/cgroup/$name" 2>/dev/null || true
		echo "note: cgroup v1 $name could not be mounted; its tests will report the kernel limit" >&2
	fi
done < /proc/cgroups
