/* SPDX-License-Identifier: MIT */
/*
 * The daemon's control socket (`serve --control unix:PATH`) and its client
 * (`migrelay status`).
 *
 * Protocol: the client connects to the unix socket, sends one request, a
 * JSON object on one line ({"cmd":"status"} or {"cmd":"reload"}), and reads
 * one response line: {"ok":true,"status":{...}} or {"ok":true,"message":
 * "..."}, or {"ok":false,"error":"...","errno":N}. Then the server closes.
 * The socket is mode 0600 and the server answers only its own user and
 * root (SO_PEERCRED): whoever can talk to it can read every session's
 * identity and reload the daemon's credentials (SECURITY.md).
 *
 * The status object has a fixed shape, built only through the
 * gw_status_* helpers of status.h so that `migrelay status` and scripts can rely
 * on it (docs/OPERATIONS.md "Status"):
 *   "daemon":    {"pid","version","uptime_s","config_generation","last_reload":{"ok","message","age_s"}}
 *   "listeners": [{"kind","address"}]
 *   "limits":    [{"name","used","max","ratio"}]
 *   "sessions":  [{"id","identity","target","state","age_s","bytes_in","bytes_out","wire_in","wire_out",
 *                  "rate_in","rate_out","compression_ratio","connections_expected","connections_live",
 *                  "rejoins","connections":[{"index","live","rejoins","wire_in","wire_out"}],
 *                  "streams":{"open","verified","failed"},"error"}]
 * rate_in/rate_out (bytes/s) are filled in by the control server itself
 * from consecutive samples about a second apart.
 */
#ifndef MR_GATEWAY_CONTROL_H
#define MR_GATEWAY_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "status.h"
#include "stream/wire.h"

#define GW_CONTROL_DEFAULT_PATH "/run/migrelay/control.sock"

enum {
	GW_CONTROL_MAX_REQUEST = 4096, /* bytes of one request line, newline included */
	GW_CONTROL_DEADLINE_MS = 5000, /* per client: request in and response out */
	GW_CONTROL_SAMPLE_MS = 1000,   /* rate sampling period while idle */
	GW_CONTROL_MAX_TRACKED = 1024, /* sessions whose rates are tracked */
	GW_CONTROL_MAX_MESSAGE = 512,  /* bytes of a reload message */
};

enum gw_control_cmd { GW_CTL_NONE = 0, GW_CTL_STATUS = 1, GW_CTL_RELOAD = 2, GW_CTL_JOB = 3 };

/*
 * Job commands: what `migrelay ctl` asks a running `migrate` (served
 * through gw_control_ops.job). "arg" is a string of up to
 * GW_CONTROL_MAX_ARG bytes, required by set-speed and set-downtime and
 * refused with every other command.
 */
enum { GW_CONTROL_MAX_ARG = 63 };

struct gw_control_req {
	enum gw_control_cmd cmd;
	char name[16];                   /* GW_CTL_JOB: info, set-speed, set-downtime, postcopy, cancel */
	char arg[GW_CONTROL_MAX_ARG + 1]; /* "" when none */
};

/*
 * Parses one request line <buf,len> (white space, '\r' included, may
 * surround the object). Returns 0 with <req> set,
 * -EMSGSIZE (over GW_CONTROL_MAX_REQUEST), -EBADMSG (not one JSON object,
 * a NUL byte, a key other than "cmd", "cmd" missing or not a string) or
 * -EOPNOTSUPP (a command this server does not know); <why> gets a sentence.
 * Pure; any thread.
 */
MR_MUST_CHECK int gw_control_parse_request(const char *buf, size_t len, struct gw_control_req *req, char *why,
					   size_t whylen);

/*
 * What the daemon provides. Both callbacks run on the control thread, one
 * request at a time, and must not block for long (take the registry lock,
 * copy numbers out, let go). <status> gets an empty object to fill with
 * the gw_status_* helpers; <reload> re-reads the configuration (the same
 * function SIGHUP runs, so the daemon serializes the two) and returns 0 or
 * -errno, with a sentence in <msg> either way. <status> is also called
 * about once a second while no client is there (rates are measured from
 * those samples), so it must be cheap.
 */
struct gw_control_ops {
	int (*status)(void *ctx, struct json_object *status);
	int (*reload)(void *ctx, char *msg, size_t msglen);
	/*
	 * A job command (a running migrate's socket; NULL for the daemon's).
	 * <reply> is the response object, "ok":true already in it, for the
	 * callback to add to (e.g. "info"). Returns 0 or -errno, with a
	 * sentence in <msg> either way (it becomes "message" or "error").
	 * Control thread; may wait up to 3 s for the job to act.
	 */
	int (*job)(void *ctx, const struct gw_control_req *req, struct json_object *reply, char *msg, size_t msglen);
	void *ctx;
};

struct gw_control;

/*
 * Accepts "unix:PATH" or "PATH" (absolute or relative) and copies PATH to
 * <path>. Returns 0, -EINVAL (empty, another scheme) or -ENAMETOOLONG
 * (does not fit a unix socket address). Pure.
 */
MR_MUST_CHECK int gw_control_parse_path(const char *spec, char *path, size_t pathlen);

/*
 * Creates the socket at <path> (mode 0600 whatever the umask; its
 * directory is created 0700 if missing; a stale socket is replaced; a
 * live one or a file that is not a socket is an error) and starts the
 * control thread. Returns 0 with *out set, or -errno with a sentence in
 * <why>. Main thread. <ops> is copied.
 */
MR_MUST_CHECK int gw_control_start(struct gw_control **out, const char *path, const struct gw_control_ops *ops,
				   char *why, size_t whylen);
const char *gw_control_path(const struct gw_control *c);
/* Stops the thread, removes the socket (if it is still ours), frees. NULL-safe; the thread that started it. */
void gw_control_stop(struct gw_control *c);

/*
 * Client: sends {"cmd":<cmd>} to the socket at <path> and returns the
 * parsed response object in *reply (the caller puts it). Returns 0, or
 * -errno with a sentence in <why>: -ENOENT / -ECONNREFUSED / -EACCES /
 * -ENOTSOCK when the socket cannot be reached, -ETIMEDOUT, -EBADMSG for a
 * response that is not one JSON object. Any thread.
 */
MR_MUST_CHECK int gw_control_call(const char *path, const char *cmd, int timeout_ms, struct json_object **reply,
				  char *why, size_t whylen);
/* The same with "arg" (a job command's argument; NULL: none). */
MR_MUST_CHECK int gw_control_call_arg(const char *path, const char *cmd, const char *arg, int timeout_ms,
				      struct json_object **reply, char *why, size_t whylen);

#endif
