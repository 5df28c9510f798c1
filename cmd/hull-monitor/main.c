//go:build ignore

/*
 * hull-monitor is the small process that stays with a detached container
 * after the hull command that started it has exited, as conmon does for
 * Podman. It is a child subreaper, so the container's init, orphaned when
 * the runtime's `create` exits, becomes its child: it alone learns the
 * exit status. It also owns the container's stdio (pipes, or the pty
 * master received over the console socket), writes the json-file log,
 * serves attach clients, runs health checks and applies the restart
 * policy. Everything it knows is in STATEDIR/state.json.
 *
 * It is written in C with plain libc because one runs per container for
 * the container's whole life: a Go program would cost several megabytes
 * of resident memory each.
 *
 * Build: gcc -O2 -Wall -Wextra -static -o bin/hull-monitor with every .c
 * file here. Static, because with glibc linked in an idle monitor has about
 * half the resident memory (0.9 MB instead of 1.8 MB): the dynamic loader
 * and all of libc's touched pages are gone.
 */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

struct config cfg = {
	.log_max_file = 1,
	.sync_fd = -1,
};

/* What state.json says. */
static struct {
	const char *status;
	pid_t pid;
	int64_t started, finished;
	int exit_code;
	bool oom;
	int restart_count;
	char error[512];
} st = {.status = "created"};

static bool running;    /* the container's init is alive */
static bool restarting; /* waiting out the restart back-off */
static bool stop_requested;
static int64_t started_mono, backoff;
static long oom_before = -1;

static int sigfd = -1, ctlfd = -1, attachfd = -1, consolefd = -1, restartfd = -1;
static int out_r = -1, out_w = -1, err_r = -1, err_w = -1, in_r = -1, in_w = -1;
static int pty = -1;
static bool pty_hup;
static char *pid_path, *state_path, *attach_path, *ctl_path, *console_path, *console_arg;
static char ctlbuf[256];
static size_t ctllen;
static struct winsize winsz;
static bool have_winsz;

/* Input from attach clients not yet taken by the container. Clients are
 * read only while it is empty, so a container that does not read its
 * stdin holds back the clients, not the monitor. */
static char pend[4096];
static size_t pendlen, pendoff;

#define MAX_CLIENTS 64
static struct client {
	int fd;
	bool in_closed;
} clients[MAX_CLIENTS];
static int nclients;

static void fatal_usage(const char *fmt, const char *arg);

/* ---- command line ---- */

static int64_t parse_int(const char *name, const char *v)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < 0)
		fatal_usage("invalid value for --%s", name);
	return n;
}

/* The monitor changes to / so that it does not keep a directory (and its
 * mount) busy for the container's lifetime; relative paths given by the
 * caller are made absolute first. */
static const char *absolute(const char *p)
{
	if (!p || p[0] == '/')
		return p;
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		return p;
	size_t n = strlen(cwd) + strlen(p) + 2;
	char *r = malloc(n);
	if (!r)
		abort();
	snprintf(r, n, "%s/%s", cwd, p);
	return r;
}

static void parse_args(int argc, char **argv)
{
	size_t nhealth = 0, nexit = 0;
	cfg.restart = RESTART_NO;
	/* Find the sync fd first, so that even a usage error reaches the
	 * caller through it. */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--sync-fd") && i + 1 < argc)
			cfg.sync_fd = atoi(argv[i + 1]);
		else if (!strncmp(argv[i], "--sync-fd=", 10))
			cfg.sync_fd = atoi(argv[i] + 10);
	}
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (strncmp(a, "--", 2) != 0)
			fatal_usage("unexpected argument %s", a);
		char *name = a + 2, *val = NULL;
		char *eq = strchr(name, '=');
		if (eq) {
			*eq = 0;
			val = eq + 1;
		}
		if (!strcmp(name, "tty") || !strcmp(name, "stdin")) {
			if (val)
				fatal_usage("--%s takes no value", name);
			if (!strcmp(name, "tty"))
				cfg.tty = true;
			else
				cfg.stdin_open = true;
			continue;
		}
		if (!val) {
			if (i + 1 >= argc)
				fatal_usage("--%s needs a value", name);
			val = argv[++i];
		}
		if (!strcmp(name, "id"))
			cfg.id = val;
		else if (!strcmp(name, "bundle"))
			cfg.bundle = val;
		else if (!strcmp(name, "dir"))
			cfg.dir = val;
		else if (!strcmp(name, "runtime"))
			cfg.runtime = val;
		else if (!strcmp(name, "runtime-root"))
			cfg.runtime_root = val;
		else if (!strcmp(name, "log-path"))
			cfg.log_path = val;
		else if (!strcmp(name, "log-max-size"))
			cfg.log_max_size = parse_int(name, val);
		else if (!strcmp(name, "log-max-file"))
			cfg.log_max_file = (int)parse_int(name, val);
		else if (!strcmp(name, "restart")) {
			if (!strcmp(val, "no"))
				cfg.restart = RESTART_NO;
			else if (!strcmp(val, "always"))
				cfg.restart = RESTART_ALWAYS;
			else if (!strcmp(val, "unless-stopped"))
				cfg.restart = RESTART_UNLESS_STOPPED;
			else if (!strcmp(val, "on-failure"))
				cfg.restart = RESTART_ON_FAILURE;
			else if (!strncmp(val, "on-failure:", 11)) {
				cfg.restart = RESTART_ON_FAILURE;
				cfg.restart_max = (int)parse_int(name, val + 11);
			} else
				fatal_usage("unknown restart policy %s", val);
		} else if (!strcmp(name, "restart-max"))
			cfg.restart_max = (int)parse_int(name, val);
		else if (!strcmp(name, "health-cmd")) {
			cfg.health_argv = realloc(cfg.health_argv, sizeof(char *) * (nhealth + 2));
			if (!cfg.health_argv)
				abort();
			cfg.health_argv[nhealth++] = val;
			cfg.health_argv[nhealth] = NULL;
		} else if (!strcmp(name, "exit-command")) {
			cfg.exit_argv = realloc(cfg.exit_argv, sizeof(char *) * (nexit + 2));
			if (!cfg.exit_argv)
				abort();
			cfg.exit_argv[nexit++] = val;
			cfg.exit_argv[nexit] = NULL;
		} else if (!strcmp(name, "health-shell"))
			cfg.health_shell = val;
		else if (!strcmp(name, "health-interval"))
			cfg.health_interval = parse_int(name, val);
		else if (!strcmp(name, "health-timeout"))
			cfg.health_timeout = parse_int(name, val);
		else if (!strcmp(name, "health-retries"))
			cfg.health_retries = (int)parse_int(name, val);
		else if (!strcmp(name, "health-start-period"))
			cfg.health_start_period = parse_int(name, val);
		else if (!strcmp(name, "oom-cgroup"))
			cfg.oom_cgroup = val;
		else if (!strcmp(name, "sync-fd"))
			cfg.sync_fd = (int)parse_int(name, val);
		else
			fatal_usage("unknown option --%s", name);
	}
	if (!cfg.id || !cfg.bundle || !cfg.dir || !cfg.runtime || !cfg.runtime_root)
		fatal_usage("%s", "--id, --bundle, --dir, --runtime and --runtime-root are required");
	if (cfg.health_argv && cfg.health_shell)
		fatal_usage("%s", "--health-cmd and --health-shell exclude each other");
	/* Docker's defaults: 0 means "not set". */
	if (cfg.health_interval == 0)
		cfg.health_interval = 30 * NS_PER_SEC;
	if (cfg.health_timeout == 0)
		cfg.health_timeout = 30 * NS_PER_SEC;
	if (cfg.health_retries == 0)
		cfg.health_retries = 3;
	if (cfg.log_max_file < 1)
		cfg.log_max_file = 1;
	cfg.bundle = absolute(cfg.bundle);
	cfg.dir = absolute(cfg.dir);
	cfg.runtime_root = absolute(cfg.runtime_root);
	cfg.log_path = absolute(cfg.log_path);
	cfg.oom_cgroup = absolute(cfg.oom_cgroup);
	if (strchr(cfg.runtime, '/'))
		cfg.runtime = absolute(cfg.runtime);
}

/* ---- the sync fd: how the caller learns that the container runs ---- */

static void sync_send(const char *key, const char *msg, int pid)
{
	if (cfg.sync_fd < 0)
		return;
	struct buf b = {0};
	if (key) {
		buf_addf(&b, "{\"%s\":", key);
		buf_add_json(&b, msg, strlen(msg));
		buf_adds(&b, "}\n");
	} else
		buf_addf(&b, "{\"pid\":%d}\n", pid);
	ssize_t w = write(cfg.sync_fd, b.p, b.len);
	(void)w;
	free(b.p);
	close(cfg.sync_fd);
	cfg.sync_fd = -1;
}

static void fatal_usage(const char *fmt, const char *arg)
{
	char msg[512];
	snprintf(msg, sizeof msg, fmt, arg);
	warnmsg("%s", msg);
	sync_send("error", msg, 0);
	exit(2);
}

/* ---- state.json ---- */

bool container_running(void)
{
	return running;
}

void write_state(void)
{
	struct buf b = {0};
	char t1[TIME_LEN], t2[TIME_LEN];
	fmt_time(t1, st.started);
	fmt_time(t2, st.finished);
	buf_addf(&b, "{\"status\":\"%s\",\"pid\":%d,\"startedAt\":\"%s\",\"finishedAt\":\"%s\",\"exitCode\":%d,", st.status,
		 (int)st.pid, t1, t2, st.exit_code);
	buf_addf(&b, "\"oomKilled\":%s,\"restartCount\":%d", st.oom ? "true" : "false", st.restart_count);
	if (st.error[0]) {
		buf_adds(&b, ",\"error\":");
		buf_add_json(&b, st.error, strlen(st.error));
	}
	if (health_configured()) {
		buf_addf(&b, ",\"health\":{\"status\":\"%s\",\"failingStreak\":%d,\"log\":[", health.status, health.streak);
		for (int i = 0; i < health.nlog; i++) {
			struct health_entry *e = &health.log[i];
			fmt_time(t1, e->start);
			fmt_time(t2, e->end);
			buf_addf(&b, "%s{\"start\":\"%s\",\"end\":\"%s\",\"exitCode\":%d,\"output\":", i ? "," : "", t1, t2,
				 e->exit_code);
			buf_add_json(&b, e->out, e->outlen);
			buf_adds(&b, "}");
		}
		buf_adds(&b, "]}");
	}
	buf_adds(&b, "}\n");
	write_file_atomic(state_path, b.p, b.len, true);
	free(b.p);
}

/* ---- running the runtime ---- */

/* Runs a runtime command to completion with its output captured; returns
 * its exit code and, on failure, its last line of output in err. */
static int run_runtime(char *const argv[], char *err, size_t errlen)
{
	int cap[2];
	if (pipe2(cap, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	pid_t pid = spawn(argv, devnull, cap[1], cap[1]);
	close(cap[1]);
	if (pid < 0) {
		snprintf(err, errlen, "run %s: %s", argv[0], strerror(errno));
		close(cap[0]);
		return -1;
	}
	int status = wait_child(pid);
	set_nonblock(cap[0]);
	drain_fd(cap[0], err, errlen);
	close(cap[0]);
	int code = exit_code_of(status);
	if (code == 0)
		err[0] = 0;
	else {
		last_line(err);
		if (!err[0])
			snprintf(err, errlen, "%s %s exited with status %d", argv[0], argv[3], code);
	}
	return code;
}

static void runtime_delete(bool force)
{
	char err[512];
	char *argv[] = {(char *)cfg.runtime, "--root", (char *)cfg.runtime_root, "delete", force ? "--force" : (char *)cfg.id,
			force ? (char *)cfg.id : NULL, NULL};
	if (run_runtime(argv, err, sizeof err) != 0) {
		warnmsg("delete: %s", err);
		if (!force)
			runtime_delete(true);
	}
}

static long read_oom_kills(void)
{
	static const char *files[] = {"memory.events", "memory.oom_control"};
	if (!cfg.oom_cgroup)
		return -1;
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		char path[PATH_MAX], line[128];
		snprintf(path, sizeof path, "%s/%s", cfg.oom_cgroup, files[i]);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		long v = -1;
		while (fgets(line, sizeof line, f))
			if (!strncmp(line, "oom_kill ", 9)) {
				v = strtol(line + 9, NULL, 10);
				break;
			}
		fclose(f);
		if (v >= 0)
			return v;
	}
	return -1;
}

/* The runtime connects to the console socket and sends the pty master
 * during `create`, so by the time create has succeeded it is waiting. */
static int receive_pty(char *err, size_t errlen)
{
	struct pollfd p = {.fd = consolefd, .events = POLLIN};
	if (poll(&p, 1, 5000) <= 0) {
		snprintf(err, errlen, "the runtime did not connect to the console socket (is process.terminal set?)");
		return -1;
	}
	int conn = accept4(consolefd, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0) {
		snprintf(err, errlen, "accept console socket: %s", strerror(errno));
		return -1;
	}
	char data[64];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
	p.fd = conn;
	ssize_t n = -1;
	if (poll(&p, 1, 5000) > 0)
		n = recvmsg(conn, &m, MSG_CMSG_CLOEXEC);
	close(conn);
	struct cmsghdr *c = n >= 0 ? CMSG_FIRSTHDR(&m) : NULL;
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
		snprintf(err, errlen, "no pty master received on the console socket");
		return -1;
	}
	memcpy(&pty, CMSG_DATA(c), sizeof(int));
	set_nonblock(pty);
	pty_hup = false;
	if (have_winsz)
		ioctl(pty, TIOCSWINSZ, &winsz);
	return 0;
}

/* create + start. On failure the container is deleted again and err
 * says why. */
static int start_container(char *err, size_t errlen)
{
	char *argv[16];
	int n = 0;
	argv[n++] = (char *)cfg.runtime;
	argv[n++] = "--root";
	argv[n++] = (char *)cfg.runtime_root;
	argv[n++] = "create";
	argv[n++] = "--bundle";
	argv[n++] = (char *)cfg.bundle;
	argv[n++] = "--pid-file";
	argv[n++] = pid_path;
	if (cfg.tty) {
		argv[n++] = "--console-socket";
		argv[n++] = console_arg;
	}
	argv[n++] = (char *)cfg.id;
	argv[n] = NULL;

	unlink(pid_path);
	/* The runtime hands its own stdio to the container. With a terminal
	 * the container gets the pty instead, and the runtime's output only
	 * matters as an error message. Without one, an error lands in the
	 * container's stderr pipe, from which it is taken back below. */
	int cap[2] = {-1, -1}, fd0 = devnull, fd1 = out_w, fd2 = err_w;
	if (cfg.tty) {
		if (pipe2(cap, O_CLOEXEC) < 0) {
			snprintf(err, errlen, "pipe: %s", strerror(errno));
			return -1;
		}
		fd1 = fd2 = cap[1];
	} else if (cfg.stdin_open)
		fd0 = in_r;
	pid_t pid = spawn(argv, fd0, fd1, fd2);
	if (cap[1] >= 0)
		close(cap[1]);
	if (pid < 0) {
		snprintf(err, errlen, "run %s: %s", cfg.runtime, strerror(errno));
		if (cap[0] >= 0)
			close(cap[0]);
		return -1;
	}
	int code = exit_code_of(wait_child(pid));
	if (code != 0) {
		if (cap[0] >= 0) {
			set_nonblock(cap[0]);
			drain_fd(cap[0], err, errlen);
		} else
			drain_fd(err_r, err, errlen);
		last_line(err);
		if (!err[0])
			snprintf(err, errlen, "%s create exited with status %d", cfg.runtime, code);
		if (cap[0] >= 0)
			close(cap[0]);
		runtime_delete(true);
		return -1;
	}
	if (cap[0] >= 0)
		close(cap[0]);
	if (cfg.tty && receive_pty(err, errlen) < 0)
		goto fail;
	FILE *f = fopen(pid_path, "re");
	int pidv = 0;
	if (f) {
		if (fscanf(f, "%d", &pidv) != 1)
			pidv = 0;
		fclose(f);
	}
	if (pidv <= 0) {
		snprintf(err, errlen, "the runtime wrote no pid to %s", pid_path);
		goto fail;
	}
	/* The counter only ever grows: an OOM kill is a difference. */
	oom_before = read_oom_kills();
	char *sargv[] = {(char *)cfg.runtime, "--root", (char *)cfg.runtime_root, "start", (char *)cfg.id, NULL};
	if (run_runtime(sargv, err, errlen) != 0)
		goto fail;
	/* Docker clears the last run's result when a new one starts. */
	st.pid = pidv;
	st.status = "running";
	st.error[0] = 0;
	st.exit_code = 0;
	st.oom = false;
	st.started = realtime_ns();
	started_mono = monotime_ns();
	running = true;
	health_container_started(st.started);
	return 0;
fail:
	if (pty >= 0)
		close(pty);
	pty = -1;
	runtime_delete(true);
	return -1;
}

/* ---- attach clients and the container's stdio ---- */

static int stdin_target(void)
{
	if (cfg.tty)
		return cfg.stdin_open ? pty : -1;
	return in_w;
}

static void drop_client(int i)
{
	if (clients[i].fd >= 0)
		close(clients[i].fd);
	clients[i].fd = -1;
}

static void close_clients(void)
{
	for (int i = 0; i < nclients; i++)
		drop_client(i);
	nclients = 0;
}

/* Docker's stdcopy framing. A client that cannot take a whole frame now
 * is dropped: waiting for it would stall the container's output and a
 * partial frame would corrupt its stream. */
static void broadcast(int stream, const char *data, size_t n)
{
	unsigned char hdr[8] = {(unsigned char)stream, 0, 0, 0, (unsigned char)(n >> 24), (unsigned char)(n >> 16),
				(unsigned char)(n >> 8), (unsigned char)n};
	struct iovec iov[2] = {{hdr, 8}, {(void *)data, n}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
	for (int i = 0; i < nclients; i++) {
		if (clients[i].fd < 0)
			continue;
		ssize_t w = sendmsg(clients[i].fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (w != (ssize_t)(n + 8))
			drop_client(i);
	}
}

static void deliver(int stream, const char *data, size_t n)
{
	logw_push(stream, realtime_ns(), data, n);
	broadcast(stream, data, n);
}

/* One read per wake-up, so that one busy stream cannot starve the other
 * or the rest of the loop. Returns false when the stream has nothing more
 * for now. Only the final drain may wait for the log queue; the loop
 * leaves the data in the pipe instead. */
static bool read_output(int fd, int stream, bool may_wait)
{
	char buf[LOG_CHUNK];
	if (!may_wait && !logw_room())
		return false;
	ssize_t n = read(fd, buf, sizeof buf);
	if (n > 0) {
		deliver(stream, buf, (size_t)n);
		return true;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return false;
	/* A pty master reads EIO (and polls POLLHUP) once the last slave fd
	 * is closed: stop watching it until the container's exit. */
	if (fd == pty)
		pty_hup = true;
	return false;
}

static void drain_outputs(void)
{
	if (cfg.tty) {
		while (pty >= 0 && read_output(pty, 1, true))
			;
		return;
	}
	while (read_output(out_r, 1, true))
		;
	while (read_output(err_r, 2, true))
		;
}

static void flush_stdin(void)
{
	int fd = stdin_target();
	if (fd < 0) {
		pendlen = pendoff = 0;
		return;
	}
	while (pendoff < pendlen) {
		ssize_t w = write(fd, pend + pendoff, pendlen - pendoff);
		if (w > 0)
			pendoff += (size_t)w;
		else if (w < 0 && errno == EINTR)
			continue;
		else if (w < 0 && errno == EAGAIN)
			return;
		else
			break; /* the container closed its stdin: drop the input */
	}
	pendlen = pendoff = 0;
}

static void client_event(int i, short rev)
{
	struct client *c = &clients[i];
	if (rev & POLLIN) {
		/* An earlier client this round left input pending. */
		if (pendoff < pendlen)
			return;
		ssize_t n = read(c->fd, pend, sizeof pend);
		if (n > 0) {
			pendoff = 0;
			pendlen = (size_t)n;
			flush_stdin();
			return;
		}
		if (n == 0) {
			/* Half-closed: the client has no more input but
			 * may still want output. */
			c->in_closed = true;
			return;
		}
		if (errno == EAGAIN || errno == EINTR)
			return;
		drop_client(i);
		return;
	}
	if (rev & (POLLHUP | POLLERR | POLLNVAL))
		drop_client(i);
}

static void accept_clients(void)
{
	for (;;) {
		int fd = accept4(attachfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0)
			return;
		if (nclients == MAX_CLIENTS) {
			close(fd);
			continue;
		}
		clients[nclients].fd = fd;
		clients[nclients].in_closed = false;
		nclients++;
	}
}

static void compact_clients(void)
{
	int j = 0;
	for (int i = 0; i < nclients; i++)
		if (clients[i].fd >= 0)
			clients[j++] = clients[i];
	nclients = j;
}

/* ---- the container's life ---- */

static void arm_timer(int fd, int64_t ns)
{
	struct itimerspec it = {0};
	it.it_value.tv_sec = ns / NS_PER_SEC;
	it.it_value.tv_nsec = ns % NS_PER_SEC;
	timerfd_settime(fd, 0, &it, NULL);
}

static void cleanup_files(void)
{
	unlink(attach_path);
	unlink(ctl_path);
	if (cfg.tty)
		unlink(console_path);
	char *hp = path_in_dir("health.pid");
	unlink(hp);
	free(hp);
}

static __attribute__((noreturn)) void finish(void)
{
	st.status = "exited";
	st.pid = 0;
	running = restarting = false;
	close_clients();
	/* The log is complete before state.json says "exited", so whoever
	 * waits for that can read the whole log. */
	logw_stop();
	write_state();
	cleanup_files();
	/* The engine's clean-up (unmount the root filesystem, remove a --rm
	 * container), as conmon's exit command does for podman. */
	if (cfg.exit_argv) {
		pid_t pid = spawn(cfg.exit_argv, devnull, devnull, devnull);
		if (pid > 0)
			wait_child(pid);
	}
	exit(0);
}

/* Docker's exit codes for a container that could not be started. */
static int start_error_code(const char *e)
{
	if (strstr(e, "permission denied"))
		return 126;
	if (strstr(e, "executable file not found") || strstr(e, "no such file or directory"))
		return 127;
	return 128;
}

static void read_ctl(void);

static void on_container_exit(int status)
{
	running = false;
	health_container_stopped();
	/* Every process of the container is gone (the init of a pid
	 * namespace is reported last), so all output is in the pipes. */
	drain_outputs();
	logw_eos(1);
	logw_eos(2);
	st.finished = realtime_ns();
	st.exit_code = exit_code_of(status);
	long oom_after = read_oom_kills();
	st.oom = oom_before >= 0 && oom_after > oom_before;
	st.pid = 0;
	close_clients();
	if (pty >= 0)
		close(pty);
	pty = -1;
	flush_stdin();
	/* `hull stop` writes "stop" before it signals the container: make
	 * sure it has been read before deciding on a restart. */
	read_ctl();
	runtime_delete(false);

	bool again = false;
	if (!stop_requested) {
		switch (cfg.restart) {
		case RESTART_ALWAYS:
		case RESTART_UNLESS_STOPPED:
			again = true;
			break;
		case RESTART_ON_FAILURE:
			again = st.exit_code != 0 && (cfg.restart_max == 0 || st.restart_count < cfg.restart_max);
			break;
		case RESTART_NO:
			break;
		}
	}
	if (!again)
		finish();
	/* Docker's back-off: 100 ms, doubled for each restart in a row, at
	 * most a minute; a run of 10 s or more starts over. */
	int64_t ran = monotime_ns() - started_mono;
	if (backoff == 0 || ran >= 10 * NS_PER_SEC)
		backoff = 100 * NS_PER_MS;
	else if ((backoff *= 2) > 60 * NS_PER_SEC)
		backoff = 60 * NS_PER_SEC;
	restarting = true;
	st.status = "restarting";
	write_state();
	arm_timer(restartfd, backoff);
}

static void on_restart_timer(void)
{
	uint64_t v;
	ssize_t r = read(restartfd, &v, sizeof v);
	(void)r;
	if (!restarting)
		return;
	restarting = false;
	st.restart_count++;
	char err[512];
	if (start_container(err, sizeof err) < 0) {
		warnmsg("restart: %s", err);
		snprintf(st.error, sizeof st.error, "%s", err);
		st.exit_code = start_error_code(err);
		st.finished = realtime_ns();
		finish();
	}
	write_state();
}

/* The user stopped the container (hull stop/kill, or SIGTERM to us): no
 * restart afterwards, whatever the policy. */
static void stop(void)
{
	stop_requested = true;
	if (restarting)
		finish();
}

static void ctl_command(char *line)
{
	unsigned rows, cols;
	if (!strcmp(line, "stop"))
		stop();
	else if (sscanf(line, "resize %u %u", &rows, &cols) == 2) {
		winsz.ws_row = (unsigned short)rows;
		winsz.ws_col = (unsigned short)cols;
		have_winsz = true;
		if (pty >= 0)
			ioctl(pty, TIOCSWINSZ, &winsz);
	} else if (line[0])
		warnmsg("ctl: unknown command %s", line);
}

static void read_ctl(void)
{
	for (;;) {
		ssize_t n = read(ctlfd, ctlbuf + ctllen, sizeof ctlbuf - 1 - ctllen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		ctllen += (size_t)n;
		char *nl;
		while ((nl = memchr(ctlbuf, '\n', ctllen))) {
			*nl = 0;
			ctl_command(ctlbuf);
			size_t used = (size_t)(nl - ctlbuf) + 1;
			memmove(ctlbuf, nl + 1, ctllen - used);
			ctllen -= used;
		}
		if (ctllen == sizeof ctlbuf - 1)
			ctllen = 0; /* no command is that long */
	}
}

static void reap(void)
{
	for (;;) {
		int status;
		pid_t p = waitpid(-1, &status, WNOHANG);
		if (p <= 0)
			return;
		if (running && p == st.pid)
			on_container_exit(status);
		else if (p == health_pid() && p > 0)
			health_on_exit(status);
		/* Anything else is a process orphaned to us: reaping it is
		 * all a subreaper owes it. */
	}
}

static void read_signals(void)
{
	struct signalfd_siginfo si;
	bool chld = false;
	while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGCHLD)
			chld = true;
		else if (si.ssi_signo == SIGTERM) {
			stop();
			if (running)
				kill(st.pid, SIGTERM);
		}
		/* SIGINT and SIGHUP: we are detached, they are not for us. */
	}
	if (chld)
		reap();
}

/* ---- set-up ---- */

/* A socket address holds at most 107 bytes of path, less than a deep
 * state dir needs. Then the socket is bound through a descriptor of the
 * dir: the kernel resolves /proc/self/fd/N/NAME to the same place.
 * Clients of such a socket must do the same. */
static int statedir_fd = -1;

static bool short_name(const char *path, const char *name, pid_t pid, char *out, size_t n)
{
	if (strlen(path) < n) {
		strcpy(out, path);
		return true;
	}
	if (statedir_fd < 0)
		statedir_fd = open(cfg.dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (statedir_fd < 0)
		return false;
	if (pid)
		snprintf(out, n, "/proc/%d/fd/%d/%s", (int)pid, statedir_fd, name);
	else
		snprintf(out, n, "/proc/self/fd/%d/%s", statedir_fd, name);
	return true;
}

static int listen_unix(const char *path, const char *name, char *err, size_t errlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (!short_name(path, name, 0, sa.sun_path, sizeof sa.sun_path)) {
		snprintf(err, errlen, "open %s: %s", cfg.dir, strerror(errno));
		return -1;
	}
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* Only root may attach: the socket is created 0600. */
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (rc < 0 || listen(fd, 16) < 0) {
		snprintf(err, errlen, "listen on %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int setup(char *err, size_t errlen)
{
	if (cfg.tty) {
		if ((consolefd = listen_unix(console_path, "console.sock", err, errlen)) < 0)
			return -1;
		/* The runtime connects from its own process: it reaches our
		 * descriptor of the dir through our pid. */
		char arg[sizeof(((struct sockaddr_un *)0)->sun_path)];
		if (!short_name(console_path, "console.sock", getpid(), arg, sizeof arg))
			goto syserr;
		console_arg = strdup(arg);
	} else {
		int p[2];
		/* The monitor keeps both ends for the container's whole
		 * life, restarts included: the read ends never see EOF, so
		 * draining stops at "nothing more now" (EAGAIN). */
		if (pipe2(p, O_CLOEXEC) < 0)
			goto syserr;
		out_r = p[0], out_w = p[1];
		if (pipe2(p, O_CLOEXEC) < 0)
			goto syserr;
		err_r = p[0], err_w = p[1];
		set_nonblock(out_r);
		set_nonblock(err_r);
		if (cfg.stdin_open) {
			if (pipe2(p, O_CLOEXEC) < 0)
				goto syserr;
			in_r = p[0], in_w = p[1];
			set_nonblock(in_w);
		}
	}
	unlink(ctl_path);
	if (mkfifo(ctl_path, 0600) < 0) {
		snprintf(err, errlen, "mkfifo %s: %s", ctl_path, strerror(errno));
		return -1;
	}
	/* Opened for writing too, so that it never reads EOF when a writer
	 * goes away. */
	if ((ctlfd = open(ctl_path, O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0)
		goto syserr;
	if ((attachfd = listen_unix(attach_path, "attach.sock", err, errlen)) < 0)
		return -1;
	if ((restartfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK)) < 0)
		goto syserr;
	health_init();
	if (cfg.log_path && logw_start(cfg.log_path, cfg.log_max_size, cfg.log_max_file) < 0) {
		snprintf(err, errlen, "open log %s: %s", cfg.log_path, strerror(errno));
		return -1;
	}
	return 0;
syserr:
	snprintf(err, errlen, "set-up: %s", strerror(errno));
	return -1;
}

static void daemonize(void)
{
	/* Pipes and sockets created later must not land on 0-2. */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
			exit(1);
	/* Nothing we inherited but stdio may reach the runtime and the
	 * container (the sync fd included: the container must not hold the
	 * caller's pipe open). */
	close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
	if (getsid(0) != getpid())
		setsid();
	/* Signals are read from a signalfd; they must be blocked before the
	 * log thread exists, or one could be delivered to it instead. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	if (chdir("/") < 0)
		warnmsg("chdir /: %s", strerror(errno));
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
}

static void startup_failed(const char *msg)
{
	warnmsg("%s", msg);
	sync_send("error", msg, 0);
	logw_stop();
	cleanup_files();
	exit(1);
}

/* ---- the loop ---- */

enum { P_SIG, P_CTL, P_ATTACH, P_OUT, P_ERR, P_STDIN, P_LOGW, P_RESTART, P_HTIMER, P_HTIMEOUT, P_HOUT, P_CLIENT };

static void loop(void)
{
	struct pollfd pfd[16 + MAX_CLIENTS];
	int kind[16 + MAX_CLIENTS], idx[16 + MAX_CLIENTS];
	reap();
	for (;;) {
		int n = 0;
#define ADD(f, ev, k, i) (pfd[n].fd = (f), pfd[n].events = (ev), pfd[n].revents = 0, kind[n] = (k), idx[n] = (i), n++)
		compact_clients();
		ADD(sigfd, POLLIN, P_SIG, 0);
		ADD(ctlfd, POLLIN, P_CTL, 0);
		ADD(attachfd, POLLIN, P_ATTACH, 0);
		if (logw_room()) {
			if (cfg.tty) {
				if (pty >= 0 && !pty_hup)
					ADD(pty, POLLIN, P_OUT, 0);
			} else {
				ADD(out_r, POLLIN, P_OUT, 0);
				ADD(err_r, POLLIN, P_ERR, 0);
			}
		} else
			ADD(logw_eventfd(), POLLIN, P_LOGW, 0);
		if (pendoff < pendlen && stdin_target() >= 0)
			ADD(stdin_target(), POLLOUT, P_STDIN, 0);
		ADD(restartfd, POLLIN, P_RESTART, 0);
		if (health_configured()) {
			ADD(health_timer_fd(), POLLIN, P_HTIMER, 0);
			ADD(health_timeout_fd(), POLLIN, P_HTIMEOUT, 0);
			if (health_output_fd() >= 0)
				ADD(health_output_fd(), POLLIN, P_HOUT, 0);
		}
		for (int i = 0; i < nclients; i++)
			ADD(clients[i].fd, clients[i].in_closed || pendoff < pendlen ? 0 : POLLIN, P_CLIENT, i);
#undef ADD
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			warnmsg("poll: %s", strerror(errno));
			sleep(1);
			continue;
		}
		/* Control input first: a "stop" must be known before the exit
		 * it precedes is handled. Handlers may close fds that later
		 * entries name, so each entry is checked against the current
		 * fd before use. */
		for (int i = 0; i < n; i++) {
			short rev = pfd[i].revents;
			if (!rev)
				continue;
			int fd = pfd[i].fd;
			switch (kind[i]) {
			case P_CTL:
				read_ctl();
				break;
			case P_SIG:
				read_signals();
				break;
			case P_OUT:
				if (fd == (cfg.tty ? pty : out_r))
					read_output(fd, 1, false);
				break;
			case P_ERR:
				read_output(fd, 2, false);
				break;
			case P_STDIN:
				if (fd == stdin_target())
					flush_stdin();
				break;
			case P_LOGW:
				break; /* room again: the next round reads */
			case P_RESTART:
				on_restart_timer();
				break;
			case P_HTIMER:
				health_on_timer();
				break;
			case P_HTIMEOUT:
				health_on_timeout();
				break;
			case P_HOUT:
				if (fd == health_output_fd())
					health_on_output();
				break;
			case P_CLIENT:
				if (idx[i] < nclients && clients[idx[i]].fd == fd)
					client_event(idx[i], rev);
				break;
			case P_ATTACH:
				break; /* below, after the existing clients */
			}
		}
		if (pfd[2].revents)
			accept_clients();
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	daemonize();
	if (mkdir(cfg.dir, 0700) < 0 && errno != EEXIST) {
		char msg[PATH_MAX + 64];
		snprintf(msg, sizeof msg, "create %s: %s", cfg.dir, strerror(errno));
		startup_failed(msg);
	}
	pid_path = path_in_dir("pid");
	state_path = path_in_dir("state.json");
	attach_path = path_in_dir("attach.sock");
	ctl_path = path_in_dir("ctl");
	console_path = path_in_dir("console.sock");
	char *mpid = path_in_dir("monitor.pid");
	char num[32];
	int len = snprintf(num, sizeof num, "%d", (int)getpid());
	if (write_file_atomic(mpid, num, (size_t)len, false) < 0)
		startup_failed("cannot write monitor.pid");
	free(mpid);

	char err[512];
	if (setup(err, sizeof err) < 0)
		startup_failed(err);
	if (start_container(err, sizeof err) < 0)
		startup_failed(err);
	write_state();
	sync_send(NULL, NULL, st.pid);
	loop();
	return 0;
}
