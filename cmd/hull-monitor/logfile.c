//go:build ignore

/*
 * The json-file log, as Docker writes it: one JSON object per line of
 * output, rotated by size.
 *
 * The main loop only copies raw chunks into a small queue; a writer thread
 * splits lines, formats, rotates and writes. A regular file cannot be
 * written without blocking, so a stalled log disk would otherwise stall
 * reaping, health checks, attach clients and stop requests. When the queue
 * is full the loop stops reading the container's pipes, so a slow disk
 * slows the container's writes (Docker's "blocking" log mode) but not the
 * monitor. The queue is small so that an idle monitor stays small.
 */
#include "monitor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define NSLOT 16
#define LINE_MAX_BYTES (16 * 1024) /* Docker splits longer lines the same way */
#define OUT_CAP (64 * 1024)
#define REC_CAP (JSON_ESCAPED_MAX(LINE_MAX_BYTES) + 128)

enum { SLOT_DATA, SLOT_EOS, SLOT_QUIT };

struct slot {
	int kind, stream;
	int64_t ts;
	size_t len;
	char data[LOG_CHUNK];
};

static struct slot slots[NSLOT];
static unsigned qhead, qtail; /* qtail-qhead slots are queued */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv_data = PTHREAD_COND_INITIALIZER, cv_space = PTHREAD_COND_INITIALIZER;
static pthread_t writer;
static bool active, throttled;
static int efd = -1;

/* Writer-thread state only. */
static const char *path;
static int64_t max_size;
static int max_file;
static int fd = -1;
static int64_t file_size;
static struct {
	size_t len;
	char buf[LINE_MAX_BYTES];
} lines[3];
static char out[OUT_CAP];
static size_t outlen;
/* Static, so the writer thread never mallocs (which would give it a malloc
 * arena of its own); untouched pages of .bss cost no memory. */
static char rec[REC_CAP];

static void open_log(void)
{
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0) {
		warnmsg("open log %s: %s", path, strerror(errno));
		return;
	}
	struct stat st;
	file_size = fstat(fd, &st) == 0 ? st.st_size : 0;
}

static void write_all(const char *p, size_t n)
{
	if (fd < 0)
		open_log();
	if (fd < 0)
		return; /* reported by open_log; the data is dropped */
	file_size += (int64_t)n;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			warnmsg("write log %s: %s", path, strerror(errno));
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

static void flush_out(void)
{
	if (outlen > 0)
		write_all(out, outlen);
	outlen = 0;
}

/* FILE -> FILE.1 -> ... -> FILE.(max_file-1); with a single file it is
 * emptied instead, as Docker does for max-file=1. */
static void rotate(void)
{
	if (max_file <= 1) {
		if (fd >= 0 && ftruncate(fd, 0) < 0)
			warnmsg("truncate log %s: %s", path, strerror(errno));
		file_size = 0;
		return;
	}
	char from[PATH_MAX + 16], to[PATH_MAX + 16];
	for (int i = max_file - 1; i >= 1; i--) {
		if (i == 1)
			snprintf(from, sizeof from, "%s", path);
		else
			snprintf(from, sizeof from, "%s.%d", path, i - 1);
		snprintf(to, sizeof to, "%s.%d", path, i);
		if (rename(from, to) < 0 && errno != ENOENT)
			warnmsg("rotate log %s: %s", from, strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	fd = -1;
	open_log();
	file_size = 0;
}

static void emit(int stream, int64_t ts, const char *line, size_t n)
{
	char when[TIME_LEN];
	fmt_time(when, ts);
	size_t len = 0;
	memcpy(rec, "{\"log\":\"", 8);
	len = 8;
	len += json_escape(rec + len, (const unsigned char *)line, n);
	len += (size_t)snprintf(rec + len, REC_CAP - len, "\",\"stream\":\"%s\",\"time\":\"%s\"}\n",
				stream == 2 ? "stderr" : "stdout", when);
	/* Rotate before a record that would take the file past the limit,
	 * never leaving an empty file behind. */
	if (max_size > 0 && file_size + (int64_t)(outlen + len) > max_size && file_size + (int64_t)outlen > 0) {
		flush_out();
		rotate();
	}
	if (outlen + len > OUT_CAP)
		flush_out();
	if (len > OUT_CAP) {
		write_all(rec, len);
		return;
	}
	memcpy(out + outlen, rec, len);
	outlen += len;
}

static void handle_data(int stream, int64_t ts, const char *p, size_t n)
{
	typeof(&lines[0]) lb = &lines[stream];
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t take = nl ? (size_t)(nl - p) + 1 : n;
		size_t space = LINE_MAX_BYTES - lb->len;
		if (take > space)
			take = space;
		memcpy(lb->buf + lb->len, p, take);
		lb->len += take;
		p += take;
		n -= take;
		if (lb->buf[lb->len - 1] == '\n' || lb->len == LINE_MAX_BYTES) {
			emit(stream, ts, lb->buf, lb->len);
			lb->len = 0;
		}
	}
}

static void *writer_main(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&mu);
		while (qhead == qtail)
			pthread_cond_wait(&cv_data, &mu);
		struct slot *s = &slots[qhead % NSLOT];
		pthread_mutex_unlock(&mu);

		int kind = s->kind;
		if (kind == SLOT_DATA)
			handle_data(s->stream, s->ts, s->data, s->len);
		else if (kind == SLOT_EOS && lines[s->stream].len > 0) {
			/* The stream ended without a newline: Docker logs
			 * what there is as it is. */
			emit(s->stream, s->ts, lines[s->stream].buf, lines[s->stream].len);
			lines[s->stream].len = 0;
		}

		pthread_mutex_lock(&mu);
		bool was_full = qtail - qhead == NSLOT;
		qhead++;
		bool empty = qhead == qtail;
		pthread_cond_signal(&cv_space);
		pthread_mutex_unlock(&mu);
		if (was_full) {
			uint64_t one = 1;
			ssize_t w = write(efd, &one, sizeof one);
			(void)w;
		}
		/* Batch while the container is busy; write out as soon as
		 * there is nothing more, so the log is never behind for
		 * long. */
		if (empty || kind == SLOT_QUIT)
			flush_out();
		if (kind == SLOT_QUIT)
			break;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

int logw_start(const char *p, int64_t size, int files)
{
	path = p;
	max_size = size;
	max_file = files > 0 ? files : 1;
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return -1;
	open_log();
	if (fd < 0)
		return -1;
	pthread_attr_t at;
	pthread_attr_init(&at);
	/* It needs little stack: its buffers are static. */
	pthread_attr_setstacksize(&at, 64 * 1024);
	int rc = pthread_create(&writer, &at, writer_main, NULL);
	pthread_attr_destroy(&at);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	active = true;
	return 0;
}

bool logw_active(void)
{
	return active;
}

bool logw_room(void)
{
	if (!active)
		return true;
	pthread_mutex_lock(&mu);
	bool room = qtail - qhead < NSLOT;
	pthread_mutex_unlock(&mu);
	if (!room) {
		throttled = true;
		return false;
	}
	if (throttled) {
		/* Consume the wake-up, or poll would keep reporting it. */
		uint64_t v;
		ssize_t r = read(efd, &v, sizeof v);
		(void)r;
		throttled = false;
	}
	return true;
}

int logw_eventfd(void)
{
	return efd;
}

static void push(int kind, int stream, int64_t ts, const char *data, size_t n)
{
	pthread_mutex_lock(&mu);
	/* Only when draining a stopped container's pipes (the loop does not
	 * read while the queue is full): wait for the disk then. */
	while (qtail - qhead == NSLOT)
		pthread_cond_wait(&cv_space, &mu);
	struct slot *s = &slots[qtail % NSLOT];
	s->kind = kind;
	s->stream = stream;
	s->ts = ts;
	s->len = n;
	if (n)
		memcpy(s->data, data, n);
	qtail++;
	pthread_cond_signal(&cv_data);
	pthread_mutex_unlock(&mu);
}

void logw_push(int stream, int64_t ts, const char *data, size_t n)
{
	if (!active)
		return;
	while (n > 0) {
		size_t take = n > LOG_CHUNK ? LOG_CHUNK : n;
		push(SLOT_DATA, stream, ts, data, take);
		data += take;
		n -= take;
	}
}

void logw_eos(int stream)
{
	if (active)
		push(SLOT_EOS, stream, realtime_ns(), NULL, 0);
}

/* Writes out everything queued and ends the writer. */
void logw_stop(void)
{
	if (!active)
		return;
	push(SLOT_QUIT, 0, 0, NULL, 0);
	pthread_join(writer, NULL);
	active = false;
}
