//go:build ignore

/* Small helpers: time and duration formatting, JSON escaping, growable
 * buffers, atomic files and spawning the runtime. */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

int devnull = -1;

/* Our stderr is normally /dev/null; the caller may point it at a file
 * when it wants to know why a monitor misbehaved. */
void warnmsg(const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n = snprintf(line, sizeof line, "hull-monitor[%d]: ", (int)getpid());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	size_t len = strlen(line);
	if (len < sizeof line - 1)
		line[len++] = '\n';
	ssize_t w = write(2, line, len);
	(void)w;
}

int64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

int64_t monotime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

/* RFC 3339 in UTC with nanoseconds, as Go's time.RFC3339Nano parses it;
 * 0 is Go's zero time, which is what Docker shows for "never". */
void fmt_time(char out[TIME_LEN], int64_t t)
{
	if (t == 0) {
		strcpy(out, "0001-01-01T00:00:00Z");
		return;
	}
	time_t sec = (time_t)(t / NS_PER_SEC);
	long ns = (long)(t % NS_PER_SEC);
	struct tm tm;
	gmtime_r(&sec, &tm);
	snprintf(out, TIME_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ns);
}

/* whole.fraction of u in units of unit (a power of ten), trailing zeros
 * dropped, as Go's Duration.String prints it. */
static int fmt_frac(char *out, size_t n, uint64_t u, uint64_t unit)
{
	int len = snprintf(out, n, "%llu", (unsigned long long)(u / unit));
	uint64_t f = u % unit;
	if (f == 0)
		return len;
	int digits = 0;
	for (uint64_t x = unit; x > 1; x /= 10)
		digits++;
	while (f % 10 == 0) {
		f /= 10;
		digits--;
	}
	return len + snprintf(out + len, n - (size_t)len, ".%0*llu", digits, (unsigned long long)f);
}

/* Go's time.Duration.String, which Docker uses in the health check
 * timeout message ("Health check exceeded timeout (30s)"). */
void fmt_duration(char *out, size_t n, int64_t d)
{
	if (d == 0) {
		snprintf(out, n, "0s");
		return;
	}
	size_t pos = 0;
	uint64_t u = (uint64_t)d;
	if (d < 0) {
		out[pos++] = '-';
		u = (uint64_t)0 - u;
	}
	if (u < (uint64_t)NS_PER_SEC) {
		if (u < 1000)
			snprintf(out + pos, n - pos, "%lluns", (unsigned long long)u);
		else if (u < 1000000) {
			pos += (size_t)fmt_frac(out + pos, n - pos, u, 1000);
			snprintf(out + pos, n - pos, "\xc2\xb5s");
		} else {
			pos += (size_t)fmt_frac(out + pos, n - pos, u, 1000000);
			snprintf(out + pos, n - pos, "ms");
		}
		return;
	}
	uint64_t secs = u / NS_PER_SEC;
	uint64_t h = secs / 3600, m = secs / 60 % 60;
	if (h > 0)
		pos += (size_t)snprintf(out + pos, n - pos, "%lluh%llum", (unsigned long long)h, (unsigned long long)m);
	else if (m > 0)
		pos += (size_t)snprintf(out + pos, n - pos, "%llum", (unsigned long long)m);
	pos += (size_t)fmt_frac(out + pos, n - pos, u % (60 * (uint64_t)NS_PER_SEC), NS_PER_SEC);
	snprintf(out + pos, n - pos, "s");
}

/* Length of the valid UTF-8 sequence at s, or 0 when the byte there does
 * not start one (overlong forms, surrogates and values past U+10FFFF are
 * invalid, as in Go's unicode/utf8). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	unsigned lo = 0x80, hi = 0xBF;
	size_t need;
	if (c >= 0xC2 && c <= 0xDF)
		need = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		need = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else
		return 0;
	if (n < need || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return need;
}

/* Writes the JSON string body for src (no quotes) to dst, which must have
 * room for JSON_ESCAPED_MAX(n) bytes. Each invalid UTF-8 byte becomes
 * U+FFFD, as Go's encoding/json does, so readers in Go see the same text
 * Docker's own json-file logs would give them. */
size_t json_escape(char *dst, const unsigned char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	char *d = dst;
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		if (c < 0x80) {
			i++;
			switch (c) {
			case '"':
				*d++ = '\\', *d++ = '"';
				break;
			case '\\':
				*d++ = '\\', *d++ = '\\';
				break;
			case '\n':
				*d++ = '\\', *d++ = 'n';
				break;
			case '\r':
				*d++ = '\\', *d++ = 'r';
				break;
			case '\t':
				*d++ = '\\', *d++ = 't';
				break;
			default:
				if (c < 0x20) {
					memcpy(d, "\\u00", 4);
					d[4] = hex[c >> 4];
					d[5] = hex[c & 15];
					d += 6;
				} else
					*d++ = (char)c;
			}
			continue;
		}
		size_t len = utf8_len(s + i, n - i);
		if (len == 0) {
			memcpy(d, "\\ufffd", 6);
			d += 6;
			i++;
		} else {
			memcpy(d, s + i, len);
			d += len;
			i += len;
		}
	}
	return (size_t)(d - dst);
}

static void buf_reserve(struct buf *b, size_t n)
{
	if (b->len + n <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		warnmsg("out of memory");
		abort();
	}
	b->p = p;
	b->cap = cap;
}

void buf_add(struct buf *b, const void *data, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

void buf_adds(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void buf_addf(struct buf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof tmp) {
		buf_add(b, tmp, (size_t)n);
		return;
	}
	buf_reserve(b, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void buf_add_json(struct buf *b, const char *s, size_t n)
{
	buf_reserve(b, JSON_ESCAPED_MAX(n) + 2);
	b->p[b->len++] = '"';
	b->len += json_escape(b->p + b->len, (const unsigned char *)s, n);
	b->p[b->len++] = '"';
}

/* Readers (hull) must never see a half-written file: write a temporary
 * beside it and rename it over, after an fsync when it must survive a
 * crash too. */
int write_file_atomic(const char *path, const void *data, size_t n, bool sync)
{
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 5);
	if (!tmp)
		return -1;
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		warnmsg("create %s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	const char *p = data;
	size_t left = n;
	int err = 0;
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			break;
		}
		p += w;
		left -= (size_t)w;
	}
	if (!err && sync && fsync(fd) < 0)
		err = errno;
	if (close(fd) < 0 && !err)
		err = errno;
	if (!err && rename(tmp, path) < 0)
		err = errno;
	if (err) {
		warnmsg("write %s: %s", path, strerror(err));
		unlink(tmp);
	}
	free(tmp);
	return err ? -1 : 0;
}

char *path_in_dir(const char *name)
{
	size_t dl = strlen(cfg.dir), nl = strlen(name);
	char *p = malloc(dl + nl + 2);
	if (!p)
		abort();
	memcpy(p, cfg.dir, dl);
	p[dl] = '/';
	memcpy(p + dl + 1, name, nl + 1);
	return p;
}

int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Starts argv[0] with the given stdio. posix_spawn (vfork-like in glibc)
 * is cheap and safe with the log thread running. The child gets an empty
 * signal mask and default dispositions: the monitor blocks the signals
 * it reads through its signalfd and ignores SIGPIPE, and both would
 * otherwise be inherited by the runtime and through it by the container. */
pid_t spawn(char *const argv[], int in, int out, int err)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	pid_t pid = -1;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in, 0);
	posix_spawn_file_actions_adddup2(&fa, out, 1);
	posix_spawn_file_actions_adddup2(&fa, err, 2);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGCHLD);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGHUP);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setsigdefault(&at, &dfl);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	int rc = posix_spawn(&pid, argv[0], &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	return pid;
}

int wait_child(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return st;
}

/* Docker's convention: a process killed by signal N exited with 128+N. */
int exit_code_of(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

/* Reads what is there now from a non-blocking fd, keeping the first
 * cap-1 bytes as a string. */
size_t drain_fd(int fd, char *dst, size_t cap)
{
	size_t len = 0;
	char tmp[4096];
	for (;;) {
		ssize_t n = read(fd, tmp, sizeof tmp);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t keep = (size_t)n;
		if (keep > cap - 1 - len)
			keep = cap - 1 - len;
		memcpy(dst + len, tmp, keep);
		len += keep;
	}
	dst[len] = 0;
	return len;
}

/* Keeps only the last non-empty line of s: the runtime prints its error
 * last, possibly after warnings. */
void last_line(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		n--;
	s[n] = 0;
	char *nl = strrchr(s, '\n');
	if (nl)
		memmove(s, nl + 1, strlen(nl + 1) + 1);
}
