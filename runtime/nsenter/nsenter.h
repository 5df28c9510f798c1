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
	HULL_MSG_PID = 2,     // value: pid of the process that continues in Go
	HULL_MSG_ERROR = 3,   // value: errno, followed by len bytes of text
};

struct hull_msg {
	uint32_t type;
	int32_t value;
	uint32_t len;
};
#endif
