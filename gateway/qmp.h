/* SPDX-License-Identifier: MIT */
/*
 * A QMP client for one QEMU monitor socket (unix), with json-c.
 *
 * One struct qmp per thread: the functions keep no global state, and a
 * struct qmp must not be used by two threads at once. All I/O blocks with a
 * poll() deadline; nothing waits longer than the timeout it was given.
 *
 * Replies are untrusted bytes: each message is capped at QMP_MAX_MSG bytes
 * and nesting depth QMP_MAX_DEPTH, and the reply parser (qmp_parser_*,
 * qmp_msg_classify) does no I/O so it can be fuzzed on its own.
 *
 * Errors are -errno. QEMU refusing a command is -EREMOTEIO with QEMU's own
 * "Class: description" text in err.
 */
#ifndef MR_GATEWAY_QMP_H
#define MR_GATEWAY_QMP_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "stream/wire.h"

enum qmp_limits {
	QMP_MAX_MSG = 16 << 20,		/* bytes of one message from QEMU */
	QMP_MAX_DEPTH = 64,		/* JSON nesting of one message */
	QMP_MAX_EVENTS = 1024,		/* queued events; older ones are dropped */
	QMP_DEFAULT_TIMEOUT_MS = 30000, /* per command, connect and greeting */
	QMP_ERR_MAX = 512,		/* suggested size of err buffers */
};

enum qmp_msg_kind {
	QMP_MSG_GREETING = 1, /* {"QMP": {...}} */
	QMP_MSG_RETURN = 2,   /* {"return": ..., "id": ...} */
	QMP_MSG_ERROR = 3,    /* {"error": {"class", "desc"}, "id": ...} */
	QMP_MSG_EVENT = 4,    /* {"event": "NAME", "data": ..., "timestamp": ...} */
};

/* Incremental splitter of a QMP byte stream into JSON objects. */
struct qmp_parser {
	struct json_tokener *tok;
	size_t msg_bytes; /* bytes fed into the message being parsed */
	size_t max_msg;	  /* cap on msg_bytes; QMP_MAX_MSG unless lowered (tests) */
};

/* Returns 0 or -ENOMEM. */
MR_MUST_CHECK int qmp_parser_init(struct qmp_parser *p);
/* NULL-safe; frees a partial message. */
void qmp_parser_fini(struct qmp_parser *p);
/*
 * Feeds up to <len> bytes of <buf>. Returns the number of bytes consumed
 * (>= 0): if *msg is set, that many bytes completed one JSON object, which
 * the caller now owns (json_object_put); if not, all bytes were consumed
 * and more are needed. Returns -EBADMSG for bytes that are not a stream of
 * JSON objects and -EMSGSIZE past QMP_MAX_MSG; after an error the parser is
 * reset, but the stream cannot be trusted to resynchronise. Leading
 * whitespace counts towards the message that follows it.
 */
MR_MUST_CHECK int qmp_parser_feed(struct qmp_parser *p, const char *buf, size_t len, struct json_object **msg);

/*
 * Classifies one message. Returns a qmp_msg_kind or -EBADMSG. For RETURN
 * and ERROR, *id gets the integer "id" or -1 when there is none (QEMU
 * leaves it out when it could not parse the command). For ERROR, err gets
 * "Class: description", bounded and with control characters replaced.
 * *id and err may be NULL.
 */
MR_MUST_CHECK int qmp_msg_classify(struct json_object *msg, int64_t *id, char *err, size_t errlen);

struct qmp;

/*
 * Connects to the QMP socket at <path>, retrying while it does not exist yet
 * or refuses, reads the greeting and negotiates qmp_capabilities, all within
 * <timeout_ms> (<= 0: QMP_DEFAULT_TIMEOUT_MS). The same value becomes the
 * command timeout. Returns 0 and *out, or -errno with a sentence in err.
 */
MR_MUST_CHECK int qmp_open(struct qmp **out, const char *path, int timeout_ms, char *err, size_t errlen);
/*
 * The same over a socket that is already connected to a QMP monitor (the
 * greeting not yet read). Takes ownership of <fd>, also on failure.
 */
MR_MUST_CHECK int qmp_open_fd(struct qmp **out, int fd, int timeout_ms, char *err, size_t errlen);
/* NULL-safe. Queued events are dropped. */
void qmp_close(struct qmp *q);
/* Timeout for each later command in ms (<= 0: QMP_DEFAULT_TIMEOUT_MS). */
void qmp_set_timeout(struct qmp *q, int timeout_ms);
/* The socket, e.g. to poll() on it for events; owned by q. */
int qmp_fd(const struct qmp *q);

/*
 * Runs <cmd> with <args> (a JSON object or NULL; borrowed). On success
 * returns 0 and, if ret is not NULL, *ret holds QEMU's "return" value (the
 * caller puts it). Events that arrive meanwhile are queued. Returns
 * -EREMOTEIO with QEMU's "Class: description" in err when QEMU refuses,
 * -ETIMEDOUT, -ECONNRESET when QEMU closes the monitor, -EBADMSG or
 * -EMSGSIZE for a reply that breaks the protocol, -ENOMEM.
 */
MR_MUST_CHECK int qmp_cmd(struct qmp *q, const char *cmd, struct json_object *args, struct json_object **ret, char *err,
			  size_t errlen);
/* Like qmp_cmd; args from a printf format giving a JSON object text, e.g. "{\"uri\": \"%s\"}". */
MR_MUST_CHECK int qmp_cmdf(struct qmp *q, const char *cmd, struct json_object **ret, char *err, size_t errlen,
			   const char *argfmt, ...) __attribute__((format(printf, 6, 7)));

/*
 * Runs <n> commands <cmd>, the i-th with args[i] (borrowed; NULL for none),
 * with up to a window of them in flight instead of one round trip each.
 * Returns 0 when every command got its reply: rcs[i] is then 0 with rets[i]
 * (QEMU's "return", put by the caller, may be NULL) or -EREMOTEIO when QEMU
 * refused that one. A failure of the monitor itself returns -errno as
 * qmp_cmd, with a sentence in err; rets[] then holds what had arrived.
 */
MR_MUST_CHECK int qmp_cmd_many(struct qmp *q, const char *cmd, size_t n, struct json_object *const *args,
			       struct json_object **rets, int *rcs, char *err, size_t errlen);

/*
 * Passes <fd> to QEMU over SCM_RIGHTS together with {"execute": "getfd",
 * "arguments": {"fdname": <name>}}. QEMU holds its own copy afterwards; the
 * caller still owns (and should close) <fd>. Returns as qmp_cmd.
 */
MR_MUST_CHECK int qmp_getfd(struct qmp *q, int fd, const char *name, char *err, size_t errlen);

/*
 * Takes the oldest queued event, reading the socket for up to <timeout_ms>
 * (0: only what is already there) if none is queued. Returns 0 with *ev (the
 * whole event object; the caller puts it), -ETIMEDOUT, or an error as
 * qmp_cmd.
 */
MR_MUST_CHECK int qmp_next_event(struct qmp *q, int timeout_ms, struct json_object **ev);
/* The "event" name of an event object, or "" (borrowed from ev). */
const char *qmp_event_name(struct json_object *ev);

#endif
