// The single-threaded half of hull's container setup. See nsenter.go for why
// this runs as a constructor before the Go runtime starts.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <grp.h>

#include "nsenter.h"

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

static int sync_fd = -1;

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int hull_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

void hull_send_msg(uint32_t type, int32_t value, const char *text)
{
	struct hull_msg m = { .type = type, .value = value, .len = 0 };
	if (text)
		m.len = (uint32_t)strlen(text);
	if (hull_write_full(sync_fd, &m, sizeof(m)) < 0 || (m.len && hull_write_full(sync_fd, text, m.len) < 0))
		_exit(HULL_NSENTER_EXIT);
}

// bail reports the failing step with errno to the parent and ends this
// process; the parent turns it into the user-visible error.
static void bail(const char *what, const char *arg)
{
	char buf[512];
	int saved = errno;
	snprintf(buf, sizeof(buf), "%s %s: %s", what, arg ? arg : "", strerror(saved));
	hull_send_msg(HULL_MSG_ERROR, saved, buf);
	_exit(HULL_NSENTER_EXIT);
}

static char *read_string(uint32_t len)
{
	char *s = calloc(1, (size_t)len + 1);
	if (!s)
		bail("allocate", "config");
	if (len && read_full(sync_fd, s, len) < 0)
		bail("read", "config");
	return s;
}

__attribute__((constructor)) static void hull_nsenter(void)
{
	const char *env = getenv(HULL_INITPIPE_ENV);
	if (!env || !*env)
		return;
	sync_fd = atoi(env);
	if (sync_fd <= 2)
		_exit(HULL_NSENTER_EXIT);
	// It came through exec without close-on-exec; hooks we fork must not
	// inherit it.
	fcntl(sync_fd, F_SETFD, FD_CLOEXEC);

	// Nothing in the container may inspect or ptrace us while we still
	// carry the runtime's privileges; execve restores dumpability.
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		bail("prctl", "PR_SET_DUMPABLE");

	struct hull_config_header h;
	if (read_full(sync_fd, &h, sizeof(h)) < 0)
		_exit(HULL_NSENTER_EXIT);
	if (h.magic != HULL_MAGIC) {
		errno = EINVAL;
		bail("bad magic in", "config");
	}
	if (h.njoin > 16) {
		errno = EINVAL;
		bail("too many namespaces in", "config");
	}

	// Open every namespace first: once we have joined the container's mount
	// namespace the host paths no longer resolve.
	int fds[16];
	uint32_t types[16];
	for (uint32_t i = 0; i < h.njoin; i++) {
		uint32_t hdr[2];
		if (read_full(sync_fd, hdr, sizeof(hdr)) < 0)
			bail("read", "config");
		char *path = read_string(hdr[1]);
		types[i] = hdr[0];
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			bail("open namespace", path);
		free(path);
	}
	char *timens = read_string(h.timens_len);

	// The user namespace comes first so that we hold capabilities over the
	// namespaces it owns when we join them.
	for (uint32_t i = 0; i < h.njoin; i++) {
		if (types[i] != CLONE_NEWUSER)
			continue;
		if (setns(fds[i], CLONE_NEWUSER) < 0)
			bail("setns", "user");
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
			bail("become root in", "user namespace");
	}
	for (uint32_t i = 0; i < h.njoin; i++) {
		if (types[i] == CLONE_NEWUSER)
			continue;
		if (setns(fds[i], (int)types[i]) < 0) {
			char name[32];
			snprintf(name, sizeof(name), "type 0x%x", types[i]);
			bail("setns", name);
		}
	}
	for (uint32_t i = 0; i < h.njoin; i++)
		close(fds[i]);

	if (h.cloneflags & CLONE_NEWUSER) {
		if (unshare(CLONE_NEWUSER) < 0)
			bail("unshare", "user namespace");
		// Only a privileged parent may write arbitrary id maps.
		hull_send_msg(HULL_MSG_USERMAP, getpid(), NULL);
		char ack;
		if (read_full(sync_fd, &ack, 1) < 0 || ack != 'A')
			_exit(HULL_NSENTER_EXIT);
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
			bail("become root in", "user namespace");
		if (setgroups(0, NULL) < 0 && errno != EPERM)
			bail("setgroups", "");
	}

	uint32_t rest = h.cloneflags & ~(uint32_t)CLONE_NEWUSER;
	if (rest && unshare((int)rest) < 0)
		bail("unshare", "namespaces");

	if (h.cloneflags & CLONE_NEWTIME && *timens) {
		int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
		if (fd < 0 || hull_write_full(fd, timens, strlen(timens)) < 0)
			bail("write", "/proc/self/timens_offsets");
		close(fd);
	}
	free(timens);

	// pid and time namespaces only apply to children: fork once more. With
	// CLONE_PARENT the child belongs to the runtime process, which can then
	// wait for it (or hand it to a subreaper when it exits).
	if (h.flags & HULL_FLAG_FORK) {
		pid_t child = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
		if (child < 0)
			bail("clone", "init");
		if (child > 0) {
			hull_send_msg(HULL_MSG_PID, child, NULL);
			_exit(0);
		}
	} else {
		hull_send_msg(HULL_MSG_PID, getpid(), NULL);
	}
	// The container process never starts the Go runtime: stage 2 takes
	// requests from the runtime and ends in execve.
	hull_stage2(sync_fd);
}
