//go:build ignore

/*
 * hull-monitor: the per-container monitor. See main.c for the overview.
 *
 * The "go:build ignore" line above (and in every .c file here) keeps the
 * Go tool from treating this directory as a cgo package: without it,
 * `go build ./...` refuses C files in a directory that has Go files.
 */
#ifndef HULL_MONITOR_H
#define HULL_MONITOR_H

#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NS_PER_MS 1000000LL
#define NS_PER_SEC 1000000000LL

enum restart_policy { RESTART_NO, RESTART_ALWAYS, RESTART_UNLESS_STOPPED, RESTART_ON_FAILURE };

struct config {
	const char *id, *bundle, *dir, *runtime, *runtime_root;
	const char *log_path;
	int64_t log_max_size; /* 0: never rotate */
	int log_max_file;
	bool tty, stdin_open;
	enum restart_policy restart;
	int restart_max;
	char **health_argv; /* exec form, NULL-terminated; or NULL */
	const char *health_shell;
	int64_t health_interval, health_timeout, health_start_period;
	int health_retries;
	const char *oom_cgroup;
	int sync_fd;
	char **exit_argv; /* run once the container is gone for good; or NULL */
};

extern struct config cfg;

/* util.c */
void warnmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t realtime_ns(void);
int64_t monotime_ns(void);
#define TIME_LEN 96 /* room for any struct tm, to keep -Wformat-truncation quiet */
void fmt_time(char out[TIME_LEN], int64_t realtime);
void fmt_duration(char *out, size_t n, int64_t ns);
size_t json_escape(char *dst, const unsigned char *src, size_t n);
#define JSON_ESCAPED_MAX(n) ((n) * 6)

struct buf {
	char *p;
	size_t len, cap;
};
void buf_add(struct buf *b, const void *data, size_t n);
void buf_adds(struct buf *b, const char *s);
void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_add_json(struct buf *b, const char *s, size_t n); /* quoted */

int write_file_atomic(const char *path, const void *data, size_t n, bool sync);
char *path_in_dir(const char *name);
int set_nonblock(int fd);
pid_t spawn(char *const argv[], int in, int out, int err);
int wait_child(pid_t pid);
int exit_code_of(int status);
size_t drain_fd(int fd, char *dst, size_t cap);
void last_line(char *s);
extern int devnull;

/* logfile.c: the json-file writer runs in its own thread so that a slow
 * log disk stalls only logging, never the monitor's loop. */
#define LOG_CHUNK 4096
int logw_start(const char *path, int64_t max_size, int max_file);
bool logw_active(void);
bool logw_room(void);
int logw_eventfd(void);
void logw_push(int stream, int64_t ts, const char *data, size_t n);
void logw_eos(int stream);
void logw_stop(void);

/* health.c */
struct health_entry {
	int64_t start, end;
	int exit_code;
	size_t outlen;
	char out[4097];
};
#define HEALTH_LOG_MAX 5
#define HEALTH_OUT_MAX 4096
struct health_state {
	const char *status;
	int streak;
	int nlog;
	struct health_entry log[HEALTH_LOG_MAX];
};
extern struct health_state health;
bool health_configured(void);
void health_init(void);
void health_container_started(int64_t started_realtime);
void health_container_stopped(void);
int health_timer_fd(void);
int health_timeout_fd(void);
int health_output_fd(void);
pid_t health_pid(void);
void health_on_timer(void);
void health_on_timeout(void);
void health_on_output(void);
void health_on_exit(int status);

/* main.c */
void write_state(void);
bool container_running(void);

#endif
