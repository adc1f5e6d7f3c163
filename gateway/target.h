/* SPDX-License-Identifier: MIT */
/* Destination targets: what a stream is connected to at the serving end (README.md "Targets"). */
#ifndef MR_GATEWAY_TARGET_H
#define MR_GATEWAY_TARGET_H

#include <stdbool.h>

#include "crypto/authz.h"
#include "session.h"

enum gw_target_kind { GW_TGT_DISCARD = 1, GW_TGT_FILE = 2, GW_TGT_UNIX = 3, GW_TGT_QMP = 4 };

struct gw_target {
	char name[WIRE_MAX_NAME + 1];
	enum gw_target_kind kind;
	char path[4096];
	char log[4096];          /* qmp: QEMU's log file, read for QEMU's reason when it fails */
	struct authz_list allow; /* per-target patterns (--allow-for NAME=PATTERN) */
};

/*
 * file: targets: removes the temporary files ("PATH.migrelay-XXXXXX") a
 * serve killed mid-stream left beside PATH. Only at start, before any
 * session: a running session's own temporary file has that name too.
 * Returns how many were removed, or -errno.
 */
int gw_target_remove_stale(const struct gw_target *t);

/*
 * Parses "NAME=SPEC" (SPEC: discard, file:PATH, unix:PATH, qmp:PATH). For
 * file:, PATH's directory must exist and be writable now. Returns 0, or
 * -EINVAL (bad form) or -errno (file: directory) with <why> set.
 */
MR_MUST_CHECK int gw_target_parse(struct gw_target *t, const char *arg, char *why, size_t whylen);

/*
 * Server on_open: connects stream <st> to the session's target (s->ctx is
 * the struct gw_target). Returns 0, or -errno with <why> set.
 */
MR_MUST_CHECK int gw_target_open(struct gw_session *s, struct gw_stream *st, char *why, size_t whylen);

/*
 * Server, at HELLO: prepares the session for target <t> (for qmp: checks the
 * QEMU, starts its NBD server and multifd listener as the HELLO asks) and
 * sets s->ctx, s->on_open and s->ctx_free. Returns 0, or -errno with <why>
 * naming the problem (QEMU's own text where QEMU refused).
 */
MR_MUST_CHECK int gw_target_session_init(struct gw_session *s, struct gw_target *t, char *why, size_t whylen);

/* The sink ops of a plain socket: half-close after the verified END, close at the end. */
extern const struct gw_sink_ops gw_sock_ops;

#endif
