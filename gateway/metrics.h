/* SPDX-License-Identifier: MIT */
/*
 * Process-wide counters of the daemon, and their Prometheus text
 * exposition (`serve --metrics HOST:PORT`, GET /metrics).
 *
 * Every event function is lock-free (relaxed atomics) and may be called
 * from any thread at any time, also before gw_metrics_target_add and with
 * names that were never added: those count under the target label
 * "(other)", so a counter is never lost. Targets are added once at start
 * and again on each reload; there are at most GW_METRICS_MAX_TARGETS, and
 * a target once added stays (Prometheus counters do not vanish).
 */
#ifndef MR_GATEWAY_METRICS_H
#define MR_GATEWAY_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "stream/wire.h"

enum {
	GW_METRICS_MAX_TARGETS = 64,   /* serve's own cap on --target */
	GW_METRICS_MAX_REQUEST = 4096, /* bytes of an HTTP request head the metrics server reads */
	GW_METRICS_DEADLINE_MS = 2000, /* a scrape must send its request and take its answer within this */
};

/*
 * Why a session failed: its first failure's WIRE_E_* code, 0 for "closed"
 * (connections gone before the end), and one more slot for codes above
 * WIRE_E_MAX ("other").
 */
#define GW_METRICS_FAIL_REASONS (WIRE_E_MAX + 2)

/* Why a connection never became part of a session. */
enum gw_hs_reason {
	GW_HS_TLS = 0,	       /* the TLS handshake failed (certificate, CRL, PSK, version) */
	GW_HS_TIMEOUT = 1,     /* the handshake or HELLO/JOIN did not finish within --handshake-timeout */
	GW_HS_NO_SETUP = 2,    /* the connection closed before HELLO/JOIN */
	GW_HS_PROTOCOL = 3,    /* not a HELLO/JOIN, or a malformed one */
	GW_HS_NOT_ALLOWED = 4, /* identity not allowed for the target */
	GW_HS_NO_TARGET = 5,   /* unknown target */
	GW_HS_BAD_TOKEN = 6,   /* JOIN: unknown session or wrong token */
	GW_HS_IDENTITY = 7,    /* JOIN: another identity than the session's */
	GW_HS_UNSUPPORTED = 8, /* version or option not offered */
	GW_HS_TARGET = 9,      /* the target could not be prepared */
	GW_HS_OTHER = 10,
	GW_HS_NREASONS = 11,
};

/* Which limit refused a connection or session. */
enum gw_limit {
	GW_LIMIT_SESSIONS = 0,	  /* --max-sessions */
	GW_LIMIT_PENDING = 1,	  /* --max-pending handshakes */
	GW_LIMIT_CONNECTIONS = 2, /* --max-connections per session */
	GW_LIMIT_STREAMS = 3,	  /* --max-streams per session */
	GW_LIMIT_OTHER = 4,
	GW_LIMIT_NLIMITS = 5,
};

/*
 * Adds target <name> (1..WIRE_MAX_NAME bytes) to the labelled set; adding
 * a name again is a no-op. Returns 0, -EINVAL, or -ENOSPC when
 * GW_METRICS_MAX_TARGETS are there. Any thread (serialized inside).
 */
MR_MUST_CHECK int gw_metrics_target_add(const char *name);

/* A session for <target> was admitted (WELCOME sent). */
void gw_metrics_session_started(const char *target);
/* The session ended with every stream verified. */
void gw_metrics_session_done(const char *target);
/* The session ended otherwise; <wire_code> is its first WIRE_E_* failure, 0 when the connections went before the end.
 */
void gw_metrics_session_failed(const char *target, int wire_code);
/* Raw stream bytes received from the peer (<in>) and sent to it (<out>) since the last call for this target. */
void gw_metrics_bytes(const char *target, uint64_t in, uint64_t out);
/*
 * What one session's bytes already added to the counters, so that a
 * session's running totals can be fed in as they grow (a scrape during a
 * migration sees its progress) without counting anything twice.
 */
struct gw_metrics_flow {
	uint64_t in, out;
};
/*
 * Counts what the session's totals <in_total>/<out_total> (raw stream bytes,
 * as gw_session_stats gives them) add to what <f> (zeroed at the session's
 * start) counted so far, and remembers them. Call it every second or so and
 * once more when the session ends. One caller per <f> at a time.
 */
void gw_metrics_flow_update(struct gw_metrics_flow *f, const char *target, uint64_t in_total, uint64_t out_total);
/* A connection of a session on <target> rejoined. */
void gw_metrics_rejoin(const char *target);
/* A connection failed before it became part of a session. */
void gw_metrics_handshake_failed(enum gw_hs_reason reason);
/* The gw_hs_reason for a setup refusal carrying <wire_code> (WIRE_E_LIMIT is a refusal by limit, not this). */
enum gw_hs_reason gw_metrics_hs_reason_for_wire(int wire_code);
/* A connection or session was refused by <limit>. */
void gw_metrics_refused(enum gw_limit limit);
/* A reload (SIGHUP or the control socket) succeeded or was refused. */
void gw_metrics_reload(bool ok);

/* Writes every metric in the text exposition format 0.0.4 to <f>. Returns 0 or -EIO. Any thread. */
MR_MUST_CHECK int gw_metrics_render(FILE *f);
/* The same into a malloc'ed, NUL-terminated buffer the caller frees. Returns 0 or -ENOMEM. */
MR_MUST_CHECK int gw_metrics_render_alloc(char **out, size_t *len);

/*
 * Escapes <src> as a label value (backslash, double quote, newline) into
 * <dst> (<cap> bytes, NUL-terminated). Returns the length of the full
 * escaped string, as snprintf does; the output is cut if it is >= cap.
 */
size_t gw_prom_escape_label(char *dst, size_t cap, const char *src);

/* Resets every counter and forgets the targets. Tests only: nothing else may use the registry meanwhile. */
void gw_metrics_reset(void);

/*
 * The HTTP side. gw_http_parse_request looks at the request head in
 * <buf,len> (all of it that has arrived) and returns 0 while it needs more
 * bytes, or the HTTP status to answer: 200 (GET /metrics), 400 (malformed),
 * 404 (another path), 405 (another method), 431 (head over
 * GW_METRICS_MAX_REQUEST), 505 (not HTTP/1.x). Pure; any thread.
 */
int gw_http_parse_request(const char *buf, size_t len);

struct gw_metrics_http;

/*
 * Listens on <hostport> and answers scrapes from one thread of its own, one
 * connection at a time, each bounded by GW_METRICS_DEADLINE_MS, one
 * response per connection (HTTP/1.0, then close). Returns 0 with *out set,
 * or -errno with a sentence in <why>. Call from the daemon's main thread.
 */
MR_MUST_CHECK int gw_metrics_http_start(struct gw_metrics_http **out, const char *hostport, char *why, size_t whylen);
/* The address it listens on ("127.0.0.1:9464"; the port the kernel chose for port 0). */
const char *gw_metrics_http_address(const struct gw_metrics_http *m);
/* Stops the thread, closes the socket, frees. NULL-safe; the thread that started it. */
void gw_metrics_http_stop(struct gw_metrics_http *m);

#endif
