/* SPDX-License-Identifier: MIT */
/*
 * A running `migrelay migrate`'s control socket, for `migrelay ctl`
 * (the control server of control.h, with its job callback).
 *
 * Two threads meet here. The main loop owns the QMP socket: it publishes
 * a snapshot of the job (migctl_publish) on every look at QEMU, and takes
 * the one pending request (migctl_take), acts on it and answers
 * (migctl_answer). The control thread answers "info" from the last
 * snapshot, and hands set-speed, set-downtime, postcopy and cancel to the
 * main loop, waiting MIGCTL_WAIT_MS at most for the answer. Nothing here
 * talks to QEMU or holds the lock across I/O.
 */
#ifndef MR_GATEWAY_MIGCTL_H
#define MR_GATEWAY_MIGCTL_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "qemu.h"

enum { MIGCTL_WAIT_MS = 3000 };

enum migctl_op { MIGCTL_NONE = 0, MIGCTL_SPEED = 1, MIGCTL_DOWNTIME = 2, MIGCTL_POSTCOPY = 3, MIGCTL_CANCEL = 4 };

struct migctl_req {
	enum migctl_op op;
	uint64_t value; /* bytes/s for SPEED, ms for DOWNTIME */
};

/* What `ctl info` shows (virsh domjobinfo's fields where migrelay has them). */
struct migctl_info {
	const char *phase; /* "starting", "mirroring", "migrating", "verifying" (static strings) */
	double elapsed_s;
	struct qemu_mig_info mi;
	uint64_t stream_bytes, wire_bytes; /* what QEMU produced, what went on the wire */
	double rate_bps;		   /* stream bytes/s over the last second */
	int conns_expected, conns_live;
	bool zstd, postcopy, switched, auto_converge;
	uint64_t bandwidth;    /* the cap now, bytes/s; 0: none */
	int downtime_ms;       /* the limit now; -1: QEMU's default */
	uint64_t xbzrle_cache; /* bytes; 0: off */
};

struct migctl;

/*
 * Starts the control socket at <path> (mode 0600, control.c). Returns 0
 * with *out, or -errno with a sentence in <why>. Main thread.
 */
MR_MUST_CHECK int migctl_start(struct migctl **out, const char *path, char *why, size_t whylen);
const char *migctl_path(const struct migctl *c);
/* Main thread: the newest snapshot; <accepting>: requests may be taken now. */
void migctl_publish(struct migctl *c, const struct migctl_info *info, bool accepting);
/* Main thread: takes the pending request, if any. NULL-safe (false). */
bool migctl_take(struct migctl *c, struct migctl_req *req);
/* Main thread: the answer to the request taken last: r 0 or -errno, and a sentence. */
void migctl_answer(struct migctl *c, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Stops the server (waiting requests get an answer), removes the socket, frees. NULL-safe; main thread. */
void migctl_stop(struct migctl *c);

/* <info> as the object `ctl info --json` prints. Returns 0 or -ENOMEM. Pure. */
MR_MUST_CHECK int migctl_info_json(const struct migctl_info *info, struct json_object **out);

#endif
