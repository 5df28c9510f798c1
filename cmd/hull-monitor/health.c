//go:build ignore

/*
 * Health checks, with Docker's semantics: the first check runs one
 * interval after the container started and each next one an interval after
 * the previous one ended; one at a time; a success makes the container
 * healthy, and `retries` failures in a row unhealthy, except that failures
 * within the start period do not count while it is still "starting".
 */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

struct health_state health;

static int tfd = -1;  /* next check */
static int tofd = -1; /* the running check's timeout */
static int outfd = -1;
static pid_t hpid;
static bool timed_out;
static int64_t check_start, container_started;
static char obuf[HEALTH_OUT_MAX + 1];
static size_t olen;
static char *pidfile;

bool health_configured(void)
{
	return cfg.health_argv || cfg.health_shell;
}

int health_timer_fd(void) { return tfd; }
int health_timeout_fd(void) { return tofd; }
int health_output_fd(void) { return outfd; }
pid_t health_pid(void) { return hpid; }

static void arm(int fd, int64_t ns)
{
	struct itimerspec it = {0};
	if (ns > 0) {
		it.it_value.tv_sec = ns / NS_PER_SEC;
		it.it_value.tv_nsec = ns % NS_PER_SEC;
	}
	timerfd_settime(fd, 0, &it, NULL);
}

static void clear_timer(int fd)
{
	uint64_t n;
	ssize_t r = read(fd, &n, sizeof n);
	(void)r;
}

void health_init(void)
{
	if (!health_configured())
		return;
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	tofd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	pidfile = path_in_dir("health.pid");
	health.status = "starting";
}

/* Killing `runtime exec` alone would leave the checked command running
 * inside the container; the runtime tells us its pid through the pid
 * file. */
static void kill_check(void)
{
	if (hpid <= 0)
		return;
	FILE *f = fopen(pidfile, "re");
	if (f) {
		int pid = 0;
		if (fscanf(f, "%d", &pid) == 1 && pid > 0)
			kill(pid, SIGKILL);
		fclose(f);
	}
	kill(hpid, SIGKILL);
}

static void forget_check(void)
{
	kill_check();
	hpid = 0; /* reaped later as a stray child */
	if (outfd >= 0)
		close(outfd);
	outfd = -1;
	arm(tofd, 0);
}

void health_container_started(int64_t started)
{
	if (!health_configured())
		return;
	forget_check();
	health.status = "starting";
	health.streak = 0;
	container_started = started;
	arm(tfd, cfg.health_interval);
}

void health_container_stopped(void)
{
	if (!health_configured())
		return;
	forget_check();
	arm(tfd, 0);
}

static void record(int code, const char *out, size_t n, int64_t start, int64_t end)
{
	if (code == 0) {
		health.streak = 0;
		health.status = "healthy";
	} else if (!(strcmp(health.status, "starting") == 0 && start - container_started < cfg.health_start_period)) {
		health.streak++;
		if (health.streak >= cfg.health_retries)
			health.status = "unhealthy";
	}
	if (health.nlog == HEALTH_LOG_MAX) {
		memmove(&health.log[0], &health.log[1], sizeof health.log[0] * (HEALTH_LOG_MAX - 1));
		health.nlog--;
	}
	struct health_entry *e = &health.log[health.nlog++];
	e->start = start;
	e->end = end;
	e->exit_code = code;
	if (n > HEALTH_OUT_MAX)
		n = HEALTH_OUT_MAX;
	memcpy(e->out, out, n);
	e->out[n] = 0;
	e->outlen = n;
	write_state();
}

void health_on_timer(void)
{
	clear_timer(tfd);
	if (!container_running() || hpid > 0)
		return;
	char *argv[16 + 64];
	int n = 0;
	argv[n++] = (char *)cfg.runtime;
	argv[n++] = "--root";
	argv[n++] = (char *)cfg.runtime_root;
	argv[n++] = "exec";
	argv[n++] = "--pid-file";
	argv[n++] = pidfile;
	argv[n++] = (char *)cfg.id;
	char **full = argv;
	if (cfg.health_shell) {
		argv[n++] = "/bin/sh";
		argv[n++] = "-c";
		argv[n++] = (char *)cfg.health_shell;
		argv[n] = NULL;
	} else {
		size_t extra = 0;
		while (cfg.health_argv[extra])
			extra++;
		full = malloc(sizeof(char *) * ((size_t)n + extra + 1));
		if (!full)
			abort();
		memcpy(full, argv, sizeof(char *) * (size_t)n);
		memcpy(full + n, cfg.health_argv, sizeof(char *) * (extra + 1));
	}
	int p[2];
	int64_t start = realtime_ns();
	if (pipe2(p, O_CLOEXEC) < 0) {
		char msg[128];
		snprintf(msg, sizeof msg, "health check: pipe: %s", strerror(errno));
		record(-1, msg, strlen(msg), start, realtime_ns());
		arm(tfd, cfg.health_interval);
		goto out;
	}
	unlink(pidfile);
	hpid = spawn(full, devnull, p[1], p[1]);
	close(p[1]);
	if (hpid < 0) {
		char msg[128];
		snprintf(msg, sizeof msg, "health check: start %s: %s", cfg.runtime, strerror(errno));
		hpid = 0;
		close(p[0]);
		record(-1, msg, strlen(msg), start, realtime_ns());
		arm(tfd, cfg.health_interval);
		goto out;
	}
	outfd = p[0];
	set_nonblock(outfd);
	olen = 0;
	timed_out = false;
	check_start = start;
	arm(tofd, cfg.health_timeout);
out:
	if (full != argv)
		free(full);
}

/* Docker keeps the first 4096 bytes; the rest is read and thrown away so
 * a chatty check cannot block on a full pipe. */
void health_on_output(void)
{
	char tmp[4096];
	for (;;) {
		ssize_t n = read(outfd, tmp, sizeof tmp);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			close(outfd);
			outfd = -1;
			return;
		}
		size_t keep = (size_t)n;
		if (keep > HEALTH_OUT_MAX - olen)
			keep = HEALTH_OUT_MAX - olen;
		memcpy(obuf + olen, tmp, keep);
		olen += keep;
	}
}

void health_on_timeout(void)
{
	clear_timer(tofd);
	if (hpid <= 0)
		return;
	timed_out = true;
	kill_check();
}

void health_on_exit(int status)
{
	hpid = 0;
	arm(tofd, 0);
	if (outfd >= 0) {
		health_on_output();
		if (outfd >= 0)
			close(outfd);
		outfd = -1;
	}
	int64_t end = realtime_ns();
	if (timed_out) {
		char d[64], msg[128];
		fmt_duration(d, sizeof d, cfg.health_timeout);
		snprintf(msg, sizeof msg, "Health check exceeded timeout (%s)", d);
		record(-1, msg, strlen(msg), check_start, end);
	} else
		record(exit_code_of(status), obuf, olen, check_start, end);
	if (container_running())
		arm(tfd, cfg.health_interval);
}
