// Stage 2 of a container process: everything that must be done by the
// process itself (credentials, capabilities, seccomp, the controlling
// terminal, waiting for `start`) before it executes the container's program.
// The runtime does the rest (mounts, devices, pivot_root, hostname...) from a
// thread that has joined our namespaces, so no Go runtime ever starts here.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nsenter.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef KEYCTL_JOIN_SESSION_KEYRING
#define KEYCTL_JOIN_SESSION_KEYRING 1
#endif

static int sock = -1;
static int fifo = -1; // after start: where errors go
// Only a failed execve reports its errno to the runtime, which maps it to
// "not found"/"cannot execute"; other failures are plain errors.
static int at_execve;

struct buf {
	char *p;
	size_t len, off;
	int bad;
};

static uint32_t get_u32(struct buf *b)
{
	uint32_t v = 0;
	if (b->off + 4 > b->len) {
		b->bad = 1;
		return 0;
	}
	memcpy(&v, b->p + b->off, 4);
	b->off += 4;
	return v;
}

static uint64_t get_u64(struct buf *b)
{
	uint64_t v = 0;
	if (b->off + 8 > b->len) {
		b->bad = 1;
		return 0;
	}
	memcpy(&v, b->p + b->off, 8);
	b->off += 8;
	return v;
}

// get_str returns a NUL-terminated copy (the payload is not terminated).
static char *get_str(struct buf *b)
{
	uint32_t n = get_u32(b);
	if (b->bad || b->off + n > b->len) {
		b->bad = 1;
		return NULL;
	}
	char *s = malloc((size_t)n + 1);
	if (!s) {
		b->bad = 1;
		return NULL;
	}
	memcpy(s, b->p + b->off, n);
	s[n] = 0;
	b->off += n;
	return s;
}

static char **get_strv(struct buf *b)
{
	uint32_t n = get_u32(b);
	if (b->bad || n > 65536) {
		b->bad = 1;
		return NULL;
	}
	char **v = calloc((size_t)n + 1, sizeof(char *));
	if (!v) {
		b->bad = 1;
		return NULL;
	}
	for (uint32_t i = 0; i < n && !b->bad; i++)
		v[i] = get_str(b);
	return v;
}

// fail reports an error and exits. Before `start` it goes to the runtime
// over the socket; after, as JSON to the exec FIFO that `start` reads.
static void fail(int err, const char *fmt, const char *arg)
{
	char msg[1024];
	snprintf(msg, sizeof(msg), fmt, arg ? arg : "", strerror(err));
	if (fifo >= 0) {
		char out[2300];
		char esc[1100];
		size_t j = 0;
		for (size_t i = 0; msg[i] && j < sizeof(esc) - 2; i++) {
			if (msg[i] == '"' || msg[i] == '\\')
				esc[j++] = '\\';
			esc[j++] = (msg[i] == '\n') ? ' ' : msg[i];
		}
		esc[j] = 0;
		int n = snprintf(out, sizeof(out), "{\"type\":\"error\",\"error\":\"%s\",\"errno\":%d}", esc, at_execve ? err : 0);
		hull_write_full(fifo, out, (size_t)n);
	} else {
		hull_send_msg(HULL_MSG_ERROR, at_execve ? err : 0, msg);
	}
	_exit(1);
}

// recv_req reads one request and up to two descriptors.
static uint32_t recv_req(struct buf *b, int fds[2])
{
	struct hull_msg m;
	char cbuf[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = { .iov_base = &m, .iov_len = sizeof(m) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	fds[0] = fds[1] = -1;
	ssize_t n;
	do {
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
	} while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(m))
		_exit(HULL_NSENTER_EXIT); // the runtime went away
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(fds, CMSG_DATA(c), (k > 2 ? 2 : k) * sizeof(int));
		}
	}
	if (m.len > (64u << 20))
		_exit(HULL_NSENTER_EXIT);
	b->p = malloc((size_t)m.len + 1);
	b->len = m.len;
	b->off = 0;
	b->bad = !b->p;
	size_t got = 0;
	while (!b->bad && got < m.len) {
		ssize_t r = read(sock, b->p + got, m.len - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			_exit(HULL_NSENTER_EXIT);
		got += (size_t)r;
	}
	return m.type;
}

// run_hooks runs the startContainer hooks inside the container, each with
// the state on stdin and an optional timeout.
static void run_hooks(struct buf *b, const char *state)
{
	uint32_t n = get_u32(b);
	for (uint32_t i = 0; i < n && !b->bad; i++) {
		char *path = get_str(b);
		char **argv = get_strv(b);
		char **envp = get_strv(b);
		uint32_t timeout = get_u32(b);
		if (b->bad)
			break;
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0)
			fail(errno, "startContainer hook %s: pipe: %s", path);
		pid_t pid = fork();
		if (pid < 0)
			fail(errno, "startContainer hook %s: fork: %s", path);
		if (pid == 0) {
			if (p[0] == 0)
				fcntl(0, F_SETFD, 0); // stdin was closed: keep it open over exec
			else
				dup2(p[0], 0);
			execve(path, argv[0] ? argv : (char *[]){ path, NULL }, envp);
			_exit(127);
		}
		close(p[0]);
		hull_write_full(p[1], state, strlen(state));
		close(p[1]);
		struct timespec start, now;
		clock_gettime(CLOCK_MONOTONIC, &start);
		int status = 0;
		for (;;) {
			pid_t w = waitpid(pid, &status, timeout ? WNOHANG : 0);
			if (w == pid)
				break;
			if (w < 0 && errno != EINTR)
				fail(errno, "startContainer hook %s: wait: %s", path);
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (timeout && now.tv_sec - start.tv_sec >= (time_t)timeout) {
				kill(pid, SIGKILL);
				waitpid(pid, &status, 0);
				errno = ETIMEDOUT;
				fail(ETIMEDOUT, "startContainer hook %s: %s", path);
			}
			struct timespec ms = { 0, 1000000 };
			nanosleep(&ms, NULL);
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			char what[64];
			snprintf(what, sizeof(what), "exit status %d", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
			fail(0, "startContainer hook failed: %s%.0s", what);
		}
	}
}

static int load_seccomp(struct sock_fprog *prog, uint32_t flags)
{
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, prog) == 0)
		return 0;
	if (errno == ENOSYS && flags == 0)
		return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog, 0, 0);
	return -1;
}

static void run_plan(struct buf *b, int fds[2])
{
	uint32_t flags = get_u32(b);
	uint32_t uid = get_u32(b), gid = get_u32(b), umask_v = get_u32(b);
	uint32_t ngroups = get_u32(b);
	if (b->bad || ngroups > 65536)
		fail(EINVAL, "bad plan%s: %s", "");
	gid_t *groups = calloc(ngroups + 1, sizeof(gid_t));
	for (uint32_t i = 0; i < ngroups; i++)
		groups[i] = get_u32(b);
	uint64_t caps[5];
	for (int i = 0; i < 5; i++)
		caps[i] = get_u64(b);
	uint32_t persona = get_u32(b);
	uint32_t preserve = get_u32(b);
	uint32_t sflags = get_u32(b);
	uint32_t ninsns = get_u32(b);
	struct sock_filter *insns = NULL;
	if (!b->bad && ninsns) {
		if (ninsns > 65536 || b->off + (size_t)ninsns * 8 > b->len)
			fail(EINVAL, "bad seccomp program%s: %s", "");
		insns = malloc((size_t)ninsns * sizeof(*insns));
		memcpy(insns, b->p + b->off, (size_t)ninsns * 8);
		b->off += (size_t)ninsns * 8;
	}
	char *keyring = get_str(b);
	char *cwd = get_str(b);
	char *exe = get_str(b);
	char **argv = get_strv(b);
	char **envp = get_strv(b);
	char *state = get_str(b);
	char *apparmor = get_str(b);
	if (b->bad)
		fail(EINVAL, "bad plan%s: %s", "");

	int dirfd = -1, console = -1, k = 0;
	if (flags & HULL_PLAN_WAIT_FIFO)
		dirfd = fds[k++];
	if (flags & HULL_PLAN_CONSOLE)
		console = fds[k++];

	if (flags & HULL_PLAN_KEYRING) {
		// A fresh session keyring keeps the host's keys out of reach.
		if (syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, keyring) < 0 && errno != ENOSYS && errno != EDQUOT)
			fail(errno, "join session keyring%s: %s", "");
	}
	if (console >= 0) {
		if (setsid() < 0)
			fail(errno, "setsid%s: %s", "");
		if (ioctl(console, TIOCSCTTY, 0) < 0)
			fail(errno, "set controlling terminal%s: %s", "");
		for (int fd = 0; fd < 3; fd++)
			if (console != fd && dup3(console, fd, 0) < 0)
				fail(errno, "dup terminal%s: %s", "");
		if (console > 2)
			close(console);
	}

	if (flags & HULL_PLAN_WAIT_FIFO) {
		if (dirfd < 0)
			fail(EBADF, "no state directory%s: %s", "");
		hull_send_msg(HULL_MSG_OK, 0, NULL);
		// Block until `start` opens the FIFO for reading.
		int f;
		do {
			f = openat(dirfd, "exec.fifo", O_WRONLY | O_CLOEXEC);
		} while (f < 0 && errno == EINTR);
		if (f < 0)
			_exit(1);
		close(dirfd);
		fifo = f;
		if (hull_write_full(fifo, "0", 1) < 0)
			_exit(1);
		run_hooks(b, state);
	}

	if (flags & HULL_PLAN_NO_PROCESS)
		fail(EINVAL, "config.json has no process%s: %s", ": nothing to start");
	// Nothing but stdio and the preserved descriptors may reach the
	// container (CVE-2024-21626).
	if (syscall(SYS_close_range, 3 + preserve, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		fail(errno, "close descriptors%s: %s", "");
	// The working directory must be inside the container's root: a leaked
	// host directory would read back as "(unreachable)/...". Checked now,
	// before a seccomp filter might forbid getcwd.
	char wd[4096];
	if (chdir(cwd) == 0 && (!getcwd(wd, sizeof(wd)) || wd[0] != '/'))
		fail(EPERM, "working directory %s is outside the container: %s", cwd);
	struct sock_fprog prog = { .len = (unsigned short)ninsns, .filter = insns };
	// Without no_new_privs a filter needs CAP_SYS_ADMIN: load it while we
	// still have it. With it, load it last so it need not allow our setup.
	if ((flags & HULL_PLAN_SECCOMP) && !(flags & HULL_PLAN_NNP) && load_seccomp(&prog, sflags) < 0)
		fail(errno, "load seccomp filter%s: %s", "");
	if (flags & HULL_PLAN_CAPS) {
		for (int c = 0; c < 64; c++) {
			if (caps[0] & (1ULL << c))
				continue;
			if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
				fail(errno, "drop bounding capabilities%s: %s", "");
		}
	}
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
		fail(errno, "keep capabilities%s: %s", "");
	if ((flags & HULL_PLAN_SETGROUPS) && setgroups(ngroups, groups) < 0 && !(errno == EPERM && ngroups == 0))
		fail(errno, "setgroups%s: %s", "");
	if (syscall(SYS_setresgid, gid, gid, gid) < 0)
		fail(errno, "setgid%s: %s", "");
	if (syscall(SYS_setresuid, uid, uid, uid) < 0)
		fail(errno, "setuid%s: %s", "");
	umask(umask_v == 0xffffffffu ? 022 : (mode_t)umask_v);
	// Again as the container's user, whose permissions decide.
	if (chdir(cwd) < 0)
		fail(errno, "chdir to cwd %s set in config.json: %s", cwd);
	if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
		fail(errno, "clear keep capabilities%s: %s", "");
	if (flags & HULL_PLAN_CAPS) {
		struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
		struct __user_cap_data_struct d[2];
		for (int i = 0; i < 2; i++) {
			d[i].effective = (uint32_t)(caps[1] >> (32 * i));
			d[i].permitted = (uint32_t)(caps[2] >> (32 * i));
			d[i].inheritable = (uint32_t)(caps[3] >> (32 * i));
		}
		if (syscall(SYS_capset, &h, d) < 0)
			fail(errno, "capset%s: %s", "");
		prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
		for (int c = 0; c < 64; c++) {
			uint64_t bit = 1ULL << c;
			// The kernel only allows ambient capabilities that are also
			// permitted and inheritable; the default spec lists others.
			if ((caps[4] & bit) && (caps[2] & bit) && (caps[3] & bit) &&
			    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
				fail(errno, "raise ambient capability%s: %s", "");
		}
	}
	if (flags & HULL_PLAN_NNP) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
			fail(errno, "set no_new_privs%s: %s", "");
		if ((flags & HULL_PLAN_SECCOMP) && load_seccomp(&prog, sflags) < 0)
			fail(errno, "load seccomp filter%s: %s", "");
	}
	if ((flags & HULL_PLAN_PERSONALITY) && personality(persona) < 0)
		fail(errno, "set personality%s: %s", "");
	if (*apparmor) {
		// The profile takes effect at execve.
		char cmd[512];
		int n = snprintf(cmd, sizeof(cmd), "exec %s", apparmor);
		int fd = open("/proc/thread-self/attr/apparmor/exec", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			fd = open("/proc/thread-self/attr/exec", O_WRONLY | O_CLOEXEC);
		if (fd < 0 || hull_write_full(fd, cmd, (size_t)n) < 0)
			fail(errno, "apply AppArmor profile %s: %s", apparmor);
		close(fd);
	}
	execve(exe, argv, envp);
	at_execve = 1;
	fail(errno, "exec %s: %s", argv[0] ? argv[0] : exe);
}

void hull_stage2(int fd)
{
	sock = fd;
	for (;;) {
		struct buf b;
		int fds[2];
		uint32_t type = recv_req(&b, fds);
		switch (type) {
		case HULL_REQ_MOUNT_PROC: {
			uint64_t flags = get_u64(&b);
			char *data = get_str(&b);
			char target[64];
			if (b.bad || fds[0] < 0) {
				hull_send_msg(HULL_MSG_ERROR, EINVAL, "bad mount request");
				break;
			}
			// The host's /proc still names our descriptors at this point.
			snprintf(target, sizeof(target), "/proc/self/fd/%d", fds[0]);
			if (mount("proc", target, "proc", (unsigned long)flags, *data ? data : NULL) < 0)
				hull_send_msg(HULL_MSG_ERROR, errno, "mount proc");
			else
				hull_send_msg(HULL_MSG_OK, 0, NULL);
			close(fds[0]);
			free(data);
			break;
		}
		case HULL_REQ_UNSHARE: {
			uint32_t flags = get_u32(&b);
			if (b.bad || unshare((int)flags) < 0)
				hull_send_msg(HULL_MSG_ERROR, b.bad ? EINVAL : errno, "unshare");
			else
				hull_send_msg(HULL_MSG_OK, 0, NULL);
			break;
		}
		case HULL_REQ_CHDIR: {
			char *path = get_str(&b);
			if (b.bad || chdir(path) < 0)
				hull_send_msg(HULL_MSG_ERROR, b.bad ? EINVAL : errno, "chdir");
			else
				hull_send_msg(HULL_MSG_OK, 0, NULL);
			free(path);
			break;
		}
		case HULL_REQ_CHROOT:
			if (chroot(".") < 0 || chdir("/") < 0)
				hull_send_msg(HULL_MSG_ERROR, errno, "chroot");
			else
				hull_send_msg(HULL_MSG_OK, 0, NULL);
			break;
		case HULL_REQ_PLAN:
			run_plan(&b, fds); // does not return
			_exit(1);
		default:
			_exit(HULL_NSENTER_EXIT);
		}
		free(b.p);
	}
}
