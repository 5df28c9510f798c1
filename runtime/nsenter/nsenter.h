// Wire format between the runtime (Go, parent) and the nsenter constructor
// (C, child). Mirrored in nsenter.go; both sides are built together.
#ifndef HULL_NSENTER_H
#define HULL_NSENTER_H
#include <stdint.h>

#define HULL_INITPIPE_ENV "_HULL_INITPIPE"
#define HULL_MAGIC 0x4c4c5548u
#define HULL_NSENTER_EXIT 121
#define HULL_FLAG_FORK 1u

struct hull_config_header {
	uint32_t magic;
	uint32_t cloneflags; // namespaces to create
	uint32_t flags;
	uint32_t njoin;      // followed by njoin × {u32 type, u32 len, path}
	uint32_t timens_len; // then the timens_offsets text
};

enum {
	HULL_MSG_USERMAP = 1, // value: pid whose id maps the parent must write
	HULL_MSG_PID = 2,     // value: pid of the process that continues
	HULL_MSG_ERROR = 3,   // value: errno, followed by len bytes of text
	HULL_MSG_OK = 4,      // a request succeeded / the container is ready
};

// Requests from the runtime to the container process once its namespaces
// exist (stage 2). Each is a hull_msg header (value unused) followed by len
// bytes of payload; some carry descriptors (SCM_RIGHTS). Each is answered
// with HULL_MSG_OK or HULL_MSG_ERROR, except PLAN in exec mode, whose
// success is the socket closing on execve.
enum {
	HULL_REQ_MOUNT_PROC = 10, // u64 flags, data; fd: O_PATH target
	HULL_REQ_UNSHARE = 11,    // u32 clone flags (the cgroup namespace)
	HULL_REQ_CHDIR = 12,      // path (no-pivot)
	HULL_REQ_CHROOT = 13,     // (no-pivot) chroot(".")
	HULL_REQ_PLAN = 20,       // the process to run; fds: see plan flags
};

// Plan flags.
#define HULL_PLAN_WAIT_FIFO 0x1   // create: report ready, block on exec.fifo
#define HULL_PLAN_NNP 0x2         // set no_new_privs
#define HULL_PLAN_SECCOMP 0x4     // load the filter
#define HULL_PLAN_CAPS 0x8        // apply the five capability sets
#define HULL_PLAN_PERSONALITY 0x10
#define HULL_PLAN_CONSOLE 0x20    // an fd (pty slave) comes with the plan
#define HULL_PLAN_KEYRING 0x40    // join a new session keyring
#define HULL_PLAN_SETGROUPS 0x80  // call setgroups (not allowed in some user namespaces)
#define HULL_PLAN_NO_PROCESS 0x100 // config.json has no process: start must fail

struct hull_msg {
	uint32_t type;
	int32_t value;
	uint32_t len;
};

void hull_stage2(int fd);
// Shared by the constructor and stage 2 (both talk over the sync socket).
int hull_write_full(int fd, const void *buf, size_t len);
void hull_send_msg(uint32_t type, int32_t value, const char *text);
#endif
